"""The README's examples work as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_script_example_runs_as_a_plain_script(scene_template, tmp_path):
    text = README.read_text(encoding="utf-8")
    block = re.search(r"<!-- script example.*?-->\s*```python\n(.*?)```", text, re.S).group(1)
    assert 'if __name__ == "__main__":' in block
    scene = tmp_path / "scene"
    import shutil

    shutil.copytree(scene_template.parent, scene, ignore=shutil.ignore_patterns("run"))
    script = tmp_path / "example.py"
    script.write_text(block.replace("geoclass-demo/config.yaml", str(scene / "config.yaml")))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    oa = float(re.search(r"overall accuracy ([0-9.]+)", done.stdout).group(1))
    assert 0.4 < oa <= 1.0  # 5 classes; a number, not a dict

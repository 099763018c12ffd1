"""The example notebook runs from top to bottom (a Jupyter kernel, nbclient), so it never rots;
and it is what examples/make_demo_notebook.py writes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "demo.ipynb"
sys.path.insert(0, str(ROOT / "examples"))
import make_demo_notebook  # noqa: E402


def test_the_notebook_is_what_its_script_writes():
    committed = nbformat.read(NOTEBOOK, as_version=4)
    assert [c.source for c in committed.cells] == \
        [c.source for c in make_demo_notebook.notebook().cells], \
        "run python examples/make_demo_notebook.py"
    assert not any(c.get("outputs") for c in committed.cells)


def test_the_demo_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("GEOCLASS_NOTEBOOK_DIR", str(tmp_path))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend: PNGs
    # the kernel imports this checkout's geoclass, whatever is installed
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [
        str(ROOT), os.environ.get("PYTHONPATH")])))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
    except Exception as err:  # the failing cell's traceback in the message
        pytest.fail(f"the notebook failed: {err}")
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # the NDVI profiles and the map
    text = "".join(o.get("text", "") for o in outputs)
    assert "overall accuracy" in text
    assert (tmp_path / "scene" / "run" / "final" / "Classif_Seed_0.tif").exists()

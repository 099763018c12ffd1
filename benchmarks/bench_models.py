"""Accuracy of each candidate default classifier on generated scenes (issue 18: the default is
chosen by measurement, with bench_otb.py's speeds on the OTB anchor stack).

    python benchmarks/bench_models.py                       # the demo scene and a noisy one
    python benchmarks/bench_models.py --models extra_trees xgboost --scenes demo
    python benchmarks/bench_models.py --models lightgbm lightgbm:n_estimators=100,num_leaves=15

Each scene is generated once (`geoclass.testing.synth.synth`; `demo`: the demo's scene, 2
tiles x 256 px, 12 dates, 8 classes, 2 regions, 2 runs; `noisy`: the same with pixel noise 0.25
and 40 % cloud cover; `large`: 1 tile x 1024 px, 24 dates, 10 classes), its cube and samples
built once, then `geoclass run` retrains and reclassifies with each model (same samples). It
prints the mean overall accuracy over the runs (validation polygons) and the wall time of the
train + classify steps of each model."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import model_spec

from geoclass.testing.synth import synth

SCENES = {
    "demo": dict(tiles=2, size=256, dates=12, classes=8, regions=2),
    "noisy": dict(tiles=2, size=256, dates=12, classes=8, regions=2, noise=0.25,
                  cloud_cover=0.4),
    "large": dict(tiles=1, size=1024, dates=24, classes=10, regions=2),
}
MODELS = {
    "extra_trees": {},
    "random_forest": {"n_estimators": 100, "max_depth": 25, "min_samples_leaf": 1,
                      "min_samples_split": 6},
    "xgboost": {},
    "lightgbm": {},
}


def run(config: Path, model: str, runs: int) -> tuple[float, float]:
    data = yaml.safe_load(config.read_text())
    data["chain"]["runs"] = runs
    classifier, params = model_spec(model, MODELS)
    data["models"] = {"classifier": classifier, "params": params}
    config.write_text(yaml.safe_dump(data, sort_keys=False))  # same run: cubes, samples kept
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "geoclass.cli", "run", str(config),
                           "--workers", "1", "--threads-per-worker", "2"],
                          capture_output=True, text=True,
                          env={**os.environ, "GEOCLASS_PROGRESS": "0"})
    if proc.returncode:
        raise SystemExit(f"{model}: geoclass run failed\n{proc.stderr[-2000:]}")
    wall = time.perf_counter() - start
    metrics = json.loads((config.parent / data["chain"]["output_path"] / "final" /
                          "metrics.json").read_text())
    oa = [r["scores"]["overall_accuracy"] for r in metrics["runs"]]
    return sum(oa) / len(oa), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", nargs="+", default=["demo", "noisy"], choices=SCENES)
    parser.add_argument("--models", nargs="+", default=list(MODELS),
                        help="short names, or NAME:key=value,... (e.g. lightgbm:num_leaves=15)")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_models_"))
    try:
        print(f"{'scene':<8}{'model':<44}{'mean OA':>9}{'train+classify s':>18}")
        for scene in args.scenes:
            config = synth(root / scene, seed=1, **SCENES[scene])
            for i, model in enumerate(args.models):
                oa, wall = run(config, model, args.runs)
                note = " (includes the cube and samples)" if i == 0 else ""
                print(f"{scene:<8}{model:<44}{oa:>9.4f}{wall:>18.1f}{note}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

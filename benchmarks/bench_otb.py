"""Whole commands against OTB (issue 18): `geoclass classify` vs `otbcli_ImageClassifier
-confmap` on the OTB anchor stack, wall time of both commands, side by side in one run.

    python benchmarks/bench_otb.py                                 # 2000 px, 156 features
    python benchmarks/bench_otb.py --size 800 --models extra_trees --rounds 1   # quick

1. The anchor stack (benchmarks/featstack.py: 2000 x 2000 px, 156 float32 features, 10 classes,
   a truth raster) is generated; geoclass builds its cube, draws its 20000 learning pixels and
   trains each model (`geoclass train`, not timed); OTB's random forest (100 trees, max depth
   25, `rf.min` 5) is trained on the same pixels by `otbcli_TrainVectorClassifier` (not timed).
2. In turn, `--rounds` times: `otbcli_ImageClassifier -in stack.tif -model rf.yml -out
   class.tif uint8 -confmap conf.tif` (2 threads, -ram 512), then for each model
   `geoclass classify CONFIG --force --workers 1 --threads-per-worker 2` (the tile maps, the
   mosaic, the validity and the class / confidence COGs; the model trained beforehand). Each
   is a whole command in a fresh process: imports, cluster start-up and writing included.
3. Per command: the median wall time of the rounds, the overall accuracy of its class map on
   every truth pixel, and the ratio OTB / geoclass.
Models (`--models`): the geoclass default (`default`), `random_forest` with OTB's settings
(100 trees, depth 25, `min_samples_split` 6 = OTB's `rf.min 5`), `extra_trees`, `xgboost`,
`lightgbm`, any short name of `geoclass.models.CLASSIFIERS`, or NAME:key=value,... for other
parameters (e.g. `lightgbm:n_estimators=100,num_leaves=15`)."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from bench_classify import otb_available, otb_env, otb_train
from classify_step import generate, load_average, machine, output_dir, overall_accuracy, train
from common import model_spec

SETTINGS = {  # parameters of a model named alone (`default`: the config names no model)
    "random_forest": {"n_estimators": 100, "max_depth": 25, "min_samples_leaf": 1,
                      "min_samples_split": 6},
}


def with_model(config: Path, name: str) -> Path:
    """A copy of the config (same output folder: cube and samples shared) for one model, its
    own output folder for the maps and model."""
    data = yaml.safe_load(config.read_text())
    if name == "default":
        data.pop("models", None)
    else:
        classifier, params = model_spec(name, SETTINGS)
        data["models"] = {"classifier": classifier, "params": params}
    base = output_dir(config)
    label = re.sub(r"[^A-Za-z0-9_.=-]+", "_", name)
    out = base.with_name(f"{base.name}_{label}")
    if not out.exists() and base.exists():
        shutil.copytree(base, out, ignore=shutil.ignore_patterns("model", "classif", "mosaic",
                                                                  "final", "manifests"))
    data["chain"]["output_path"] = out.name
    variant = config.with_name(f"config_{label}.yml")
    variant.write_text(yaml.safe_dump(data, sort_keys=False))
    return variant


def timed(cmd: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env={**os.environ, "GEOCLASS_PROGRESS": "0", **(env or {})})
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd[:3])} failed:\n{proc.stdout[-2000:]}\n"
                         f"{proc.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--features", type=int, default=156)
    parser.add_argument("--models", nargs="+", default=["default", "random_forest"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ram", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    if not otb_available():
        sys.exit("OTB is missing: apt-get install -y otb-bin")
    folder = args.workdir or Path(tempfile.mkdtemp(prefix="bench_otb_"))
    try:
        config = folder / "config.yml"
        if not config.exists():
            config, _ = generate(folder, args.size, args.features, 10, 512, args.seed)
        train(with_model(config, args.models[0]), 1, args.threads)  # cube + samples, shared
        variants = {}
        for name in args.models:
            variants[name] = with_model(config, name)
            train(variants[name], 1, args.threads)
        stack = next((folder / "userfeat").rglob("*.tif"))
        model, _ = otb_train(variants[args.models[0]], folder, args)
        otb_cmd = ["otbcli_ImageClassifier", "-in", str(stack), "-model", str(model), "-out",
                   str(folder / "otb_class.tif"), "uint8", "-confmap",
                   str(folder / "otb_conf.tif"), "-ram", str(args.ram)]
        walls = {"otb": [], **{name: [] for name in args.models}}
        for _ in range(args.rounds):
            walls["otb"].append(timed(otb_cmd, otb_env(args.threads, args.ram)))
            for name, variant in variants.items():
                walls[name].append(timed(
                    [sys.executable, "-m", "geoclass.cli", "classify", str(variant), "--force",
                     "--workers", "1", "--threads-per-worker", str(args.threads)]))
        truth = folder / "truth.tif"
        oa = {"otb": overall_accuracy(truth, folder / "otb_class.tif")}
        for name, variant in variants.items():
            oa[name] = overall_accuracy(truth, output_dir(variant) / "final" /
                                        "Classif_Seed_0.tif")
        otb = statistics.median(walls["otb"])
        print(f"machine: {machine()}")
        print(f"stack {args.size} x {args.size} px x {args.features} features; {args.rounds} "
              f"round(s), median wall time of whole commands; {args.threads} threads each")
        print(f"{'command':<60}{'wall s':>9}{'OA':>8}{'OTB / this':>12}")
        print(f"{'otbcli_ImageClassifier -confmap (RF)':<60}{otb:>9.1f}{oa['otb']:>8.4f}"
              f"{1.0:>12.2f}")
        for name in args.models:
            wall = statistics.median(walls[name])
            label = f"geoclass classify ({name})"
            print(f"{label:<60}{wall:>9.1f}{oa[name]:>8.4f}{otb / wall:>12.2f}")
        print(f"load average after: {load_average()}")
    finally:
        if args.workdir is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Benchmark: deep temporal models and auto-context against the forests on the same samples
(issue 7).

One generated scene (2 tiles, 2 regions, 12 dates, 8 classes, `--noise` pixel noise); the
cubes and samples are built once, then for each candidate the models are trained and the maps
made on the same samples, and the chain's validation gives the OA. Prints OA, kappa, training
and classification wall times, per candidate: random forest, extra trees (the default),
TempCNN, LightTAE, and extra trees with auto-context (3 iterations).

    python benchmarks/bench_deep.py                    # 2 tiles of 192 px
    python benchmarks/bench_deep.py --size 128 --epochs 20 --only random_forest tempcnn
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml


def _set_models(config_path: Path, classifier: str, params: dict, chain: dict) -> None:
    data = yaml.safe_load(config_path.read_text())
    data["models"] = {"classifier": classifier, "params": params}
    data["chain"] = {**data["chain"], "enable_autocontext": False, **chain}
    config_path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=0.08, help="pixel noise (0.08)")
    parser.add_argument("--only", nargs="+", help="candidates to run (default: all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("GEOCLASS_PROGRESS", "0")
    from geoclass.api import assess, mosaic, sample, train
    from geoclass.cluster import dask_client
    from geoclass.io.configfile import load_config
    from geoclass.testing.synth import synth

    root = Path(tempfile.mkdtemp(prefix="bench_deep_"))
    context = {"enable_autocontext": True, "autocontext_iterations": 3}
    candidates = [  # (name, classifier, params, chain keys)
        ("random_forest", "random_forest", {}, {}),
        ("extra_trees", "extra_trees", {}, {}),
        ("tempcnn", "tempcnn", {"epochs": args.epochs, "verbose": False}, {}),
        ("lighttae", "lighttae", {"epochs": args.epochs, "verbose": False}, {}),
        ("extra_trees+autocontext", "extra_trees", {}, context),
    ]
    candidates = [c for c in candidates if not args.only or c[0] in args.only]
    print(f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}; "
          f"scene 2 tiles x {args.size} px, 12 dates, 8 classes, noise {args.noise}",
          flush=True)
    config_path = synth(root / "scene", tiles=2, size=args.size, dates=12, classes=8,
                        regions=2, seed=args.seed, noise=args.noise)
    rows = []
    try:
        with dask_client(load_config(config_path).dask, workers=1, threads_per_worker=2):
            sample(load_config(config_path))
            for name, classifier, params, chain in candidates:
                _set_models(config_path, classifier, params, chain)
                config = load_config(config_path)
                start = time.perf_counter()
                train(config)
                trained = time.perf_counter()
                mosaic(config)
                mapped = time.perf_counter()
                scores = assess(config)["runs"][0]["scores"]
                rows.append((name, scores["overall_accuracy"], scores["kappa"],
                             trained - start, mapped - trained, scores["n_samples"]))
                print(f"{name}: OA {rows[-1][1]:.3f}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("\n| classifier | OA | kappa | training (s) | classification + maps (s) "
          "| validation pixels |\n|---|---:|---:|---:|---:|---:|")
    for name, oa, kappa, fit, predict, n in rows:
        print(f"| {name} | {oa:.3f} | {kappa:.3f} | {fit:.1f} | {predict:.1f} | {n} |")
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")
    print(json.dumps({r[0]: r[1] for r in rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

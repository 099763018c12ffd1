"""Spatial smoothing on a generated scene with added pixel noise (issue 15): isolated pixels
(pixels whose 8 neighbours all have another class) and overall accuracy of the unsmoothed map,
of the Bayesian-smoothed map (sits_smooth) and of the majority filter (OTB's
ClassificationMapRegularization), and the smoothing's throughput.

    python benchmarks/bench_smoothing.py                     # 2 tiles of 256 px, noise 0.3
    python benchmarks/bench_smoothing.py --size 128 --noise 0.2 --runs 2

The whole chain runs once with `classification.smoothing.method: bayes` (and the entropy
uncertainty), on a LocalCluster of --workers x --threads; then with `majority` (radius 1 and
2), which redoes only the mosaic, validation and report. OA is measured on the validation
pixels (held-out polygons), the same pixels for every map of a run. The smoothing alone is
then timed on the stored mosaic (labels of the smoothed probabilities, or the filtered class
map, computed block by block on the cluster, nothing written)."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from geoclass import lazy
from geoclass.io.configfile import load_config
from geoclass.kernels.smoothing import bayes_smooth, labels_from_probabilities, majority_filter
from geoclass.pipeline import run_chain
from geoclass.store import RunStore
from geoclass.testing.synth import synth
from geoclass.views import maps as views


def _config(scene: Path, runs: int, trees: int, smoothing: dict) -> Path:
    path = scene / "config.yaml"
    data = yaml.safe_load(path.read_text())
    data["chain"]["runs"] = runs
    data.setdefault("models", {})["params"] = {"n_estimators": trees}
    data["classification"] = {"uncertainty": ["entropy"], "smoothing": smoothing}
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def _rows(metrics: dict, label: str) -> list[dict]:
    rows = []
    for raw, smooth in zip(metrics["runs"], metrics["smoothed"]["runs"]):
        rows.append({"run": raw["run"], "method": label,
                     "isolated": raw["isolated_pixels"],
                     "isolated_smoothed": smooth["isolated_pixels"],
                     "oa": raw["scores"]["overall_accuracy"],
                     "oa_smoothed": smooth["scores"]["overall_accuracy"],
                     "kappa": raw["scores"]["kappa"],
                     "kappa_smoothed": smooth["scores"]["kappa"],
                     "n": raw["scores"]["n_samples"]})
    return rows


def _throughput(store: RunStore, codes: list[int], repeats: int = 2) -> dict:
    """Mpx/s of the Bayesian smoothing (+ labels) and of the majority filter on run 0."""
    proba = lazy.read_zarr(store.mosaic(0), "probabilities")
    classes = lazy.read_zarr(store.mosaic(0), "classification")
    pixels = classes.shape[0] * classes.shape[1]
    out = {}
    for name, array in (("bayes (window 9)",
                         views.labels_of(views.bayes_smoothed(proba, 9, 0.5, 20.0), codes)),
                        ("majority (radius 1)", views.majority_smoothed(classes, 1)),
                        ("majority (radius 2)", views.majority_smoothed(classes, 2))):
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            lazy.compute_all([array], label=name)
            best = min(best, time.perf_counter() - start)
        out[name] = (best, pixels / best / 1e6)
    return out


def _kernel_cpu(store: RunStore, codes: list[int]) -> dict:
    """CPU seconds per million pixels of the kernels alone, in this process, on run 0's
    first block (padded as the chunked computation pads it): what a core costs, whatever the
    machine's load."""
    proba = np.asarray(lazy.read_zarr(store.mosaic(0), "probabilities").blocks[0, 0, 0])
    classes = np.asarray(lazy.read_zarr(store.mosaic(0), "classification").blocks[0, 0])
    out = {}
    for name, call in (
            ("bayes (window 9)", lambda: labels_from_probabilities(bayes_smooth(np.pad(
                proba, ((0, 0), (4, 4), (4, 4)), constant_values=65535)), codes)),
            ("majority (radius 1)", lambda: majority_filter(np.pad(classes, 1), 1)),
            ("majority (radius 2)", lambda: majority_filter(np.pad(classes, 2), 2))):
        call()
        start = time.process_time()
        call()
        out[name] = (time.process_time() - start) / classes.size * 1e6
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--tiles", type=int, default=2)
    parser.add_argument("--dates", type=int, default=12)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--regions", type=int, default=1)
    parser.add_argument("--noise", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--trees", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="folder for the scene (default: a temporary "
                        "one, deleted at the end)")
    args = parser.parse_args()

    from distributed import Client, LocalCluster

    with tempfile.TemporaryDirectory() as tmp:
        scene = args.out or Path(tmp) / "scene"
        synth(scene, tiles=args.tiles, size=args.size, dates=args.dates, classes=args.classes,
              regions=args.regions, seed=args.seed, noise=args.noise)
        path = _config(scene, args.runs, args.trees, {"method": "bayes"})
        rows = []
        with LocalCluster(n_workers=args.workers, threads_per_worker=args.threads,
                          dashboard_address=":0") as cluster, Client(cluster):
            start = time.perf_counter()
            rows += _rows(run_chain(load_config(path)), "bayes (window 9, smoothness 20)")
            chain = time.perf_counter() - start
            for radius in (1, 2):
                _config(scene, args.runs, args.trees, {"method": "majority", "radius": radius})
                rows += _rows(run_chain(load_config(path)), f"majority (radius {radius})")
            config = load_config(path)
            store = RunStore(config.chain.output_path)
            speed = _throughput(store, store.class_table().codes)
            cpu = _kernel_cpu(store, store.class_table().codes)
    print(f"scene: {args.tiles} tiles of {args.size} px, {args.dates} dates, {args.classes} "
          f"classes, pixel noise {args.noise}, seed {args.seed}; {args.runs} runs, extra trees "
          f"({args.trees}); {args.workers} worker(s) x {args.threads} threads; whole chain "
          f"with Bayesian smoothing {chain:.0f} s\n")
    print("| run | smoothing | isolated pixels | smoothed | OA | OA smoothed | kappa | "
          "kappa smoothed | validation pixels |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['run']} | {r['method']} | {r['isolated']} | {r['isolated_smoothed']} | "
              f"{r['oa']:.4f} | {r['oa_smoothed']:.4f} | {r['kappa']:.4f} | "
              f"{r['kappa_smoothed']:.4f} | {r['n']} |")
    print("\n| smoothing alone (run 0's mosaic) | wall on the cluster (s) | Mpx/s | kernel CPU "
          "s per Mpx (one core) |\n|---|---:|---:|---:|")
    for name, (wall, mpx) in speed.items():
        print(f"| {name} | {wall:.2f} | {mpx:.3f} | {cpu[name]:.1f} |")


if __name__ == "__main__":
    main()

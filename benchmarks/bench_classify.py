"""Benchmark: classifying a tile and writing the final maps is chunk-bound in memory (issue 4).

For each tile size, a one-tile, two-region synthetic scene is generated, its cube, samples and
models are built (not timed), then the maps step is timed on a fresh LocalCluster: block-wise
prediction of every pixel by its region's model (random forest) with boundary fusion and
probabilities, the per-tile zarr, the mosaic zarr and the COGs (classification, confidence,
probabilities, validity). The RSS of the whole process tree (this driver with the scheduler,
the nanny and the worker) is sampled meanwhile; what came before ran in another process.

If nothing holds a whole tile in memory, peak RSS stays about flat when the tile area grows 4x.

    python benchmarks/bench_classify.py                   # defaults: 1024 and 2048 px
    python benchmarks/bench_classify.py --sizes 256 512   # quick run
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml
from bench_cube import MiB, TreeSampler, generate_scene, tune_config


def _configure(path: Path, args) -> None:
    tune_config(path, args.chunk, args.out_dates)
    data = yaml.safe_load(path.read_text())
    data["models"] = {"params": {"n_estimators": args.trees}}
    data["classification"] = {"enable_probability_map": True,
                              "boundary_fusion": {"enable": True}}
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def run_size(args, size: int, root: Path) -> dict:
    from geoclass.cluster import dask_client
    from geoclass.config import load_config
    from geoclass.maps import mosaic

    folder = root / f"scene_{size}"
    print(f"[{size} px] generating the scene ...", flush=True)
    config_path, _, _ = generate_scene(folder, size, args.dates, args.seed, args.interval)
    _configure(config_path, args)
    config = load_config(config_path)
    print(f"[{size} px] cube, samples, models (not timed, in a subprocess) ...", flush=True)
    subprocess.run([sys.executable, "-m", "geoclass.cli", "train", str(config_path),
                    "--workers", str(args.workers)], check=True, capture_output=True)
    with dask_client(config.dask, workers=args.workers, threads_per_worker=args.threads,
                     memory_limit=args.memory_limit) as client:
        client.wait_for_workers(args.workers)
        time.sleep(1.0)
        idle = sum(TreeSampler(os.getpid()).sample())
        print(f"[{size} px] classifying and writing the maps ...", flush=True)
        with TreeSampler(os.getpid(), args.interval) as sampler:
            start = time.perf_counter()
            mosaic(config, force=True)
            wall = time.perf_counter() - start
    result = {"size": size, "pixels": size * size, "wall": wall, "idle": idle,
              "peak": sampler.peak.total, "driver": sampler.peak.root,
              "workers": sampler.peak.children}
    print(f"[{size} px] {wall:.1f} s, {size * size / wall / 1e3:.0f} kpx/s, peak RSS "
          f"{result['peak'] / MiB:.0f} MiB", flush=True)
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return result


def report(results: list[dict], args) -> str:
    lines = ["| size (px) | pixels | wall (s) | kpx/s | peak RSS tree (MiB) | driver (MiB) "
             "| workers (MiB) | idle tree (MiB) |", "|" + "---:|" * 8]
    for r in results:
        lines.append(f"| {r['size']} | {r['pixels'] / 1e6:.2f} M | {r['wall']:.1f} "
                     f"| {r['pixels'] / r['wall'] / 1e3:.0f} | {r['peak'] / MiB:.0f} "
                     f"| {r['driver'] / MiB:.0f} | {r['workers'] / MiB:.0f} "
                     f"| {r['idle'] / MiB:.0f} |")
    if len(results) > 1:
        small, big = results[0], results[-1]
        lines += ["", f"area ratio: {big['pixels'] / small['pixels']:.1f}x",
                  f"peak RSS ratio: {big['peak'] / small['peak']:.2f}",
                  f"pixels/s ratio: {(big['pixels'] / big['wall']) / (small['pixels'] / small['wall']):.2f}",  # noqa: E501
                  f"(chunk {args.chunk} px, {args.trees} trees, {args.workers} worker(s) x "
                  f"{args.threads} thread(s))"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--dates", type=int, default=6)
    parser.add_argument("--out-dates", type=int, default=6)
    parser.add_argument("--chunk", type=int, default=512)
    parser.add_argument("--trees", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-limit", default="auto")
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("GEOCLASS_PROGRESS", "0")
    root = Path(tempfile.mkdtemp(prefix="bench_classify_"))
    print(f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 1024**3:.1f} GiB;"
          f" load average {os.getloadavg()[0]:.2f}", flush=True)
    try:
        results = [run_size(args, size, root) for size in args.sizes]
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print(report(results, args))
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The smallest per-worker memory limit that completes `geoclass run` on a generated scene, and
the peak resident memory of the worker processes at each limit tried.

    python benchmarks/bench_memory.py --size 256            # the demo scene
    python benchmarks/bench_memory.py --size 1024 --dates 12

Each limit runs the whole chain from scratch (a fresh output folder) with `--workers 1
--threads-per-worker 2`, while this script samples the resident memory of every process the
command started (the driver, the nanny, the worker) every 0.2 s. A limit is bisected between
--low and --high (MB) to --step. The scene's own config is kept (its dask.chunk_size)."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

from geoclass.testing.synth import synth


def run_with_limit(config: Path, limit_mb: int, workers: int, threads: int) -> dict:
    """One whole run; returns rc, wall time, what it said, and peak RSS per process kind."""
    out = config.parent / f"run_{limit_mb}"
    shutil.rmtree(out, ignore_errors=True)
    data = yaml.safe_load(config.read_text())
    data["chain"]["output_path"] = out.name
    variant = config.parent / f"config_{limit_mb}.yaml"
    variant.write_text(yaml.safe_dump(data))
    cmd = [sys.executable, "-m", "geoclass.cli", "run", str(variant), "--workers", str(workers),
           "--threads-per-worker", str(threads), "--memory-limit", f"{limit_mb}MB"]
    start = time.monotonic()
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(process.pid)
    peak = {"driver": 0, "worker": 0}
    while process.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
            for p in procs:
                rss = p.memory_info().rss
                kind = "driver" if p.pid == root.pid else "worker"
                peak[kind] = max(peak[kind], rss)
        except psutil.Error:
            pass
        time.sleep(0.2)
    stdout, stderr = process.communicate()
    shutil.rmtree(out, ignore_errors=True)
    said = (stderr.strip().splitlines() or [""])[-1]
    return {"limit": limit_mb, "rc": process.returncode, "wall": time.monotonic() - start,
            "peak_worker": peak["worker"] / 2**20, "peak_driver": peak["driver"] / 2**20,
            "said": said[:160], "oa": next((line for line in stdout.splitlines()
                                            if line.startswith("overall accuracy")), "")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--tiles", type=int, default=2)
    parser.add_argument("--dates", type=int, default=12)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--low", type=int, default=400, help="MB")
    parser.add_argument("--high", type=int, default=3000, help="MB")
    parser.add_argument("--step", type=int, default=50, help="MB")
    parser.add_argument("--keep", type=Path, help="folder for the scene (default: temporary)")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench_memory_"))
    config = folder / "config.yaml"
    if not config.exists():
        synth(folder, tiles=args.tiles, size=args.size, dates=args.dates)
    chunk = yaml.safe_load(config.read_text())["dask"]["chunk_size"]
    print(f"scene: {args.tiles} tiles of {args.size} px, {args.dates} dates, chunk {chunk}; "
          f"{args.workers} worker(s) x {args.threads} thread(s)")
    print(f"{'limit MB':>9} {'rc':>3} {'wall s':>7} {'worker MiB':>11} {'driver MiB':>11}  said")
    low, high, best = args.low, args.high, None
    first = run_with_limit(config, high, args.workers, args.threads)
    _show(first)
    if first["rc"] != 0:
        sys.exit(f"the chain does not complete even with {high} MB")
    best = first
    while high - low > args.step:
        middle = (low + high) // 2
        result = run_with_limit(config, middle, args.workers, args.threads)
        _show(result)
        if result["rc"] == 0:
            high, best = middle, result
        else:
            low = middle
    print(f"smallest per-worker limit that completes: {best['limit']} MB (to {args.step} MB); "
          f"peak worker RSS there {best['peak_worker']:.0f} MiB; {best['oa']}")


def _show(r: dict) -> None:
    print(f"{r['limit']:>9} {r['rc']:>3} {r['wall']:>7.1f} {r['peak_worker']:>11.0f} "
          f"{r['peak_driver']:>11.0f}  {r['said']}", flush=True)


if __name__ == "__main__":
    main()

"""Shared parts of bench_classify.py and bench_scaling.py (issue 8).

- `prepare`: a generated feature stack (benchmarks/featstack.py) read by geoclass as user
  features; cube, samples and model built by `geoclass train` in a subprocess (not timed).
- `measure`: run a command in a fresh process and sample the RSS of its whole process tree
  (the process, and for geoclass the dask nanny and worker processes), every 0.2 s.
- `python classify_step.py CONFIG ...` (what `measure` runs for geoclass): geoclass's
  classification step on a fresh LocalCluster, i.e. `classify(config, force=True)` (every tile
  classified block by block into `classif/<TILE>_seed_0.zarr`) then `mosaic(config,
  force=True)` (mosaic zarr, pixel validity, class and confidence COGs). Only that is timed:
  the cluster is started and the worker's libraries imported before. It prints one JSON line:
  wall time, the split classify / maps, and per phase (up-to-date checks, tiles to zarr,
  mosaic zarr, validity, each COG) the duration, the driver's RSS at its start and end and the
  peaks of the driver (this process: client + scheduler + the GDAL COG writes) and of the
  workers; with --tracemalloc, the driver's Python allocations that grew the most per phase.
- `overall_accuracy`: a map (GeoTIFF or zarr array) against the truth raster, by blocks.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import yaml
from common import MiB, TreeSampler

HERE = Path(__file__).resolve().parent
ENV = {"GEOCLASS_PROGRESS": "0", "PYTHONWARNINGS": "ignore"}


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def machine() -> str:
    return (f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 1024**3:.1f} GiB; "
            f"load average (1, 5, 15 min) {load_average()}")


def run_quiet(cmd: list[str], env: dict | None = None) -> float:
    """Run a command to completion (output kept for errors only); its wall time in s."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **ENV,
                                                                      **(env or {})})
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}):\n"
                         f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def generate(folder: Path, size: int, features: int, classes: int, chunk: int,
             seed: int) -> tuple[Path, float]:
    """Write the stack, truth, ground truth and config (in a subprocess); (config, seconds)."""
    seconds = run_quiet([sys.executable, str(HERE / "featstack.py"), str(folder), "--size",
                         str(size), "--features", str(features), "--classes", str(classes),
                         "--chunk", str(chunk), "--seed", str(seed)])
    return folder / "config.yml", seconds


def set_model(config: Path, classifier: str, params: dict) -> None:
    data = yaml.safe_load(config.read_text())
    data["models"] = {"classifier": classifier, "params": params}
    config.write_text(yaml.safe_dump(data, sort_keys=False))


def train(config: Path, workers: int = 1, threads: int = 2) -> float:
    """`geoclass train` (cube, samples and model as needed) in a subprocess; seconds."""
    return run_quiet([sys.executable, "-m", "geoclass.cli", "train", str(config), "--workers",
                      str(workers), "--threads-per-worker", str(threads)])


def output_dir(config: Path) -> Path:
    return config.parent / yaml.safe_load(config.read_text())["chain"]["output_path"]


def measure(cmd: list[str], env: dict | None = None, interval: float = 0.2) -> dict:
    """Run `cmd` in a fresh process, sampling its process tree's RSS; the JSON of its last
    output line (if any) plus `wall_process` and `peak_process` (the tree's peak RSS)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **ENV, **(env or {})})
    with TreeSampler(proc.pid, interval) as sampler:
        out, err = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}):\n"
                         f"{out[-3000:]}\n{err[-3000:]}")
    result = {}
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if lines:
        result = json.loads(lines[-1])
    result.update(wall_process=wall, peak_process=sampler.peak.total)
    return result


def geoclass_step(config: Path, workers: int = 1, threads: int = 2, fast: bool = True,
                  tracemalloc: bool = False, memory_limit: str = "auto") -> dict:
    """geoclass's classification step of `config` in a fresh process (see the module doc)."""
    cmd = [sys.executable, str(HERE / "classify_step.py"), str(config), "--workers",
           str(workers), "--threads", str(threads), "--memory-limit", memory_limit]
    if tracemalloc:
        cmd.append("--tracemalloc")
    return measure(cmd, {"GEOCLASS_FASTFOREST": "1" if fast else "0"})


# --- accuracy -------------------------------------------------------------------------------


def overall_accuracy(truth: Path, predicted, rows: int = 512) -> float:
    """Share of the truth's pixels (code > 0) whose predicted class is the same. `predicted`:
    a GeoTIFF path or a 2-D array-like (zarr) on the same grid."""
    import rasterio
    from rasterio.windows import Window

    good = total = 0
    with rasterio.open(truth) as src:
        other = rasterio.open(predicted) if isinstance(predicted, (str, Path)) else None
        try:
            for row in range(0, src.height, rows):
                window = Window(0, row, src.width, min(rows, src.height - row))
                expected = src.read(1, window=window)
                got = other.read(1, window=window) if other is not None else \
                    np.asarray(predicted[row:row + int(window.height), :])
                valid = expected > 0
                good += int((got[valid] == expected[valid]).sum())
                total += int(valid.sum())
        finally:
            if other is not None:
                other.close()
    return good / total


# --- the child: geoclass's classification step with per-phase RSS ---------------------------


class PhaseSampler(TreeSampler):
    """A TreeSampler that also keeps, per phase label, the peaks of the driver and workers."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.phase = "start"
        self.phases: dict[str, dict] = {}
        self._me = psutil.Process(self.pid)

    def driver_rss(self) -> int:
        return self._me.memory_info().rss

    def _record(self) -> None:
        root, children = self.sample()
        peak = self.peak
        if peak.samples == 0:
            peak.first_total = root + children
        peak.samples += 1
        peak.total = max(peak.total, root + children)
        peak.root = max(peak.root, root)
        peak.children = max(peak.children, children)
        entry = self.phases.setdefault(self.phase, {"driver_peak": 0, "workers_peak": 0})
        entry["driver_peak"] = max(entry["driver_peak"], root)
        entry["workers_peak"] = max(entry["workers_peak"], children)

    def enter(self, label: str) -> tuple[str, float]:
        previous, self.phase = self.phase, label
        entry = self.phases.setdefault(label, {"driver_peak": 0, "workers_peak": 0})
        entry.setdefault("driver_start", self.driver_rss())
        entry.setdefault("seconds", 0.0)
        return previous, time.perf_counter()

    def leave(self, label: str, token: tuple[str, float]) -> None:
        previous, start = token
        entry = self.phases[label]
        entry["seconds"] += time.perf_counter() - start
        entry["driver_end"] = self.driver_rss()
        entry["driver_peak"] = max(entry["driver_peak"], entry["driver_end"])
        self.phase = previous


def _instrument(sampler: PhaseSampler, snapshots: list | None) -> None:
    """Wrap the functions of the classify and mosaic steps (and of the lazy layer they write
    through) so that each call is a phase of `sampler` (looked up at call time)."""
    import importlib

    classify_module = importlib.import_module("geoclass.steps.classify")
    maps_module = importlib.import_module("geoclass.steps.mosaic")
    lazy_module = importlib.import_module("geoclass.lazy")

    def wrap(module, name, label_of):
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            label = label_of(*args, **kwargs)
            token = sampler.enter(label)
            try:
                return original(*args, **kwargs)
            finally:
                sampler.leave(label, token)
                if snapshots is not None:
                    import tracemalloc

                    snapshots.append((label, tracemalloc.take_snapshot()))

        setattr(module, name, wrapper)

    wrap(classify_module, "tile_maps", lambda *a, **k: "classify: lazy tile maps")
    wrap(lazy_module, "write_dataset", lambda data, path, label, *a: f"{label} -> zarr")
    wrap(lazy_module, "write_zarr", lambda arrays, path, label, *a, **k: f"maps: {label} -> zarr")
    wrap(maps_module, "write_cog", lambda path, *a, **k: f"maps: COG {Path(path).name}")


def _import_libraries() -> None:
    """Run on the workers before timing: the libraries the tasks use."""
    import zarr  # noqa: F401

    import geoclass.kernels.fastforest  # noqa: F401
    import geoclass.steps.mosaic  # noqa: F401
    import geoclass.views.maps  # noqa: F401


def _malloc_trim() -> int:
    """Give freed heap memory back to the OS (glibc); the bytes of RSS it released."""
    before = psutil.Process().memory_info().rss
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        return 0
    return before - psutil.Process().memory_info().rss


def child(argv=None) -> int:
    parser = argparse.ArgumentParser(description="geoclass's classification step, timed")
    parser.add_argument("config", type=Path)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-limit", default="auto")
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--tracemalloc", action="store_true")
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    from geoclass.api import classify, mosaic
    from geoclass.cluster import dask_client
    from geoclass.io.configfile import load_config

    config = load_config(args.config)
    snapshots = None
    with dask_client(config.dask, workers=args.workers, threads_per_worker=args.threads,
                     memory_limit=args.memory_limit) as client:
        client.wait_for_workers(args.workers)
        client.run(_import_libraries)
        time.sleep(1.0)
        sampler = PhaseSampler(os.getpid(), args.interval)
        idle_driver, idle_workers = sampler.sample()
        if args.tracemalloc:
            import tracemalloc

            tracemalloc.start(8)
            snapshots = [("start", tracemalloc.take_snapshot())]
        _instrument(sampler, snapshots)
        with sampler:
            start = time.perf_counter()
            token = sampler.enter("classify (rest: graph, manifests)")
            classify(config, force=True)
            sampler.leave("classify (rest: graph, manifests)", token)
            middle = time.perf_counter()
            token = sampler.enter("maps (rest: grids, graph, manifests)")
            mosaic(config, force=True)
            sampler.leave("maps (rest: grids, graph, manifests)", token)
            end = time.perf_counter()
        after_driver = sampler.driver_rss()
    trimmed = _malloc_trim()
    peak = sampler.peak
    result = {"wall": end - start, "classify_s": middle - start, "maps_s": end - middle,
              "peak": peak.total, "driver_peak": peak.root, "workers_peak": peak.children,
              "idle_driver": idle_driver, "idle_workers": idle_workers,
              "driver_after": after_driver, "driver_trimmed": trimmed,
              "phases": sampler.phases, "workers": args.workers, "threads": args.threads}
    if snapshots is not None:
        result["tracemalloc"] = _top_growth(snapshots)
    print(json.dumps(result))
    return 0


def _top_growth(snapshots, top: int = 4) -> dict:
    """Per phase: the current traced size and the source lines whose allocations grew most."""
    out = {}
    for (_, before), (label, after) in zip(snapshots, snapshots[1:]):
        stats = after.compare_to(before, "lineno")
        out[label] = {"traced_mib": round(sum(s.size for s in after.statistics("filename"))
                                          / MiB, 1),
                      "top": [f"{s.size_diff / MiB:+.1f} MiB {s.traceback[0].filename.split('site-packages/')[-1]}:"  # noqa: E501
                              f"{s.traceback[0].lineno}" for s in stats[:top]]}
    return out


def phase_table(result: dict) -> str:
    """The per-phase lines of a geoclass_step result, as a markdown table."""
    lines = ["| phase | s | driver RSS start -> end (MiB) | driver peak (MiB) "
             "| workers peak (MiB) |", "|---|---:|---:|---:|---:|"]
    for label, p in result["phases"].items():
        if label == "start" or "seconds" not in p:
            continue
        lines.append(f"| {label} | {p['seconds']:.1f} | {p['driver_start'] / MiB:.0f} -> "
                     f"{p['driver_end'] / MiB:.0f} | {p['driver_peak'] / MiB:.0f} "
                     f"| {p['workers_peak'] / MiB:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(child())

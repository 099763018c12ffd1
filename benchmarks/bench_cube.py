"""Benchmark: building a tile's feature cube is chunk-bound in memory (issue 2).

For each tile size, a one-tile synthetic Sentinel-2 scene is generated (not timed, in a
subprocess whose peak RSS is reported too), then `geoclass.cube.build_cubes` (ingest +
gap-filling + features, written to zarr block by block) is timed on a fresh LocalCluster.
While it runs, the RSS of the whole process tree (this driver, the nanny and the dask
worker processes) is sampled every `--interval` seconds.

If the cube never holds the whole tile in memory, the peak RSS stays about the same when
the tile area grows 16x (1024 -> 4096 px side), while the throughput (pixels/s) stays
about the same too.

    python benchmarks/bench_cube.py                      # defaults: 1024 and 4096 px
    python benchmarks/bench_cube.py --sizes 256 512      # quick run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import yaml

MiB = 1024**2
GiB = 1024**3


# --- RSS sampling of a process tree ---------------------------------------------------------


@dataclass
class TreePeak:
    """Peak RSS (bytes) of a process tree, sampled: all together, the root alone, and the
    descendants alone (each peak is taken over its own samples)."""

    total: int = 0
    root: int = 0
    children: int = 0
    samples: int = 0
    first_total: int = 0


@dataclass
class TreeSampler:
    """Sample the RSS of `pid` and all its descendants every `interval` seconds, in a thread."""

    pid: int
    interval: float = 0.2
    peak: TreePeak = field(default_factory=TreePeak)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> tuple[int, int]:
        """(root RSS, sum of the descendants' RSS) now; vanished processes count as 0."""
        try:
            root = psutil.Process(self.pid)
            root_rss = root.memory_info().rss
            children = root.children(recursive=True)
        except psutil.NoSuchProcess:
            return 0, 0
        child_rss = 0
        for child in children:
            try:
                child_rss += child.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return root_rss, child_rss

    def _record(self) -> None:
        root, children = self.sample()
        peak = self.peak
        if peak.samples == 0:
            peak.first_total = root + children
        peak.samples += 1
        peak.total = max(peak.total, root + children)
        peak.root = max(peak.root, root)
        peak.children = max(peak.children, children)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._record()
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._record()  # one last sample, so a very short run still has one


# --- scene generation -----------------------------------------------------------------------


_SYNTH = """
import json, sys
from geoclass.testing.synth import synth
kwargs = json.loads(sys.argv[1])
print(synth(**kwargs))
"""


def generate_scene(folder: Path, size: int, dates: int, seed: int, interval: float,
                   layout: str = "theia"):
    """Write a one-tile scene in a subprocess; returns (config path, seconds, peak RSS)."""
    kwargs = dict(
        out_dir=str(folder), tiles=1, size=size, dates=dates, classes=8, regions=2, seed=seed,
        format=layout,
    )
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", _SYNTH, json.dumps(kwargs)], stdout=subprocess.PIPE, text=True
    )
    with TreeSampler(proc.pid, interval) as sampler:
        out, _ = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"scene generation failed for size {size} (exit {proc.returncode})")
    return Path(out.strip().splitlines()[-1]), time.perf_counter() - start, sampler.peak.total


def tune_config(path: Path, chunk: int, out_dates: int) -> int:
    """Set the chunk size and a date step giving about `out_dates` gap-filled dates;
    returns the step in days."""
    data = yaml.safe_load(path.read_text())
    scene = json.loads((path.parent / "scene.json").read_text())
    days = [dt.date.fromisoformat(d) for d in next(iter(scene["dates"].values()))]
    span = (days[-1] - days[0]).days
    step = max(1, math.ceil(span / max(1, out_dates - 1))) if out_dates > 1 else span + 1
    data.setdefault("dask", {})["chunk_size"] = chunk
    data.setdefault("sensors", {}).setdefault("sentinel_2", {})["temporal_resolution"] = step
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return step


def du(path: Path) -> int:
    """Bytes on disk under `path`."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


# --- one size ---------------------------------------------------------------------------------


@dataclass
class Result:
    size: int
    features: int
    chunks: int
    synth_s: float
    synth_peak: int
    wall_s: float
    idle: int  # process-tree RSS with the cluster up and its libraries imported, before the build
    peak: int  # process-tree peak RSS during the build
    driver_peak: int
    workers_peak: int  # nanny + worker processes
    inputs_bytes: int
    cube_bytes: int

    @property
    def pixels(self) -> int:
        return self.size * self.size

    @property
    def pixels_per_s(self) -> float:
        return self.pixels / self.wall_s

    @property
    def cube_in_memory(self) -> int:
        """What the tile's whole feature cube would take in memory (float32)."""
        return self.pixels * self.features * 4


def _import_libraries() -> None:
    """Run on the workers: import what the cube tasks use (rasterio, xarray, zarr...)."""
    import zarr  # noqa: F401

    import geoclass.cube  # noqa: F401


def run_size(args, size: int, root: Path) -> Result:
    from geoclass.cluster import dask_client
    from geoclass.config import load_config
    from geoclass.cube import build_cubes, open_cube

    folder = root / f"scene_{size}"
    print(f"[{size} px] generating the scene ...", flush=True)
    config_path, synth_s, synth_peak = generate_scene(
        folder, size, args.dates, args.seed, args.interval, args.format
    )
    step = tune_config(config_path, args.chunk, args.out_dates)
    config = load_config(config_path)
    inputs = du(folder)
    print(
        f"[{size} px] scene: {synth_s:.1f} s, generator peak RSS {synth_peak / MiB:.0f} MiB, "
        f"{inputs / MiB:.0f} MiB on disk; date step {step} d",
        flush=True,
    )

    with dask_client(
        config.dask,
        workers=args.workers,
        threads_per_worker=args.threads,
        memory_limit=args.memory_limit,
    ) as client:
        client.wait_for_workers(args.workers)
        client.run(_import_libraries)  # so that "idle" holds the libraries, not just Python
        time.sleep(1.0)  # let the worker processes settle
        idle_sampler = TreeSampler(os.getpid())
        idle = sum(idle_sampler.sample())
        print(f"[{size} px] building the cube ...", flush=True)
        with TreeSampler(os.getpid(), args.interval) as sampler:
            start = time.perf_counter()
            paths = build_cubes(config, force=True)
            wall = time.perf_counter() - start
    (path,) = paths.values()
    cube = open_cube(path)
    features = cube.sizes["feature"]
    chunks = math.prod(len(c) for c in cube["features"].chunks[1:])
    cube_bytes = du(path)
    peak = sampler.peak
    result = Result(
        size,
        features,
        chunks,
        synth_s,
        synth_peak,
        wall,
        idle,
        peak.total,
        peak.root,
        peak.children,
        inputs,
        cube_bytes,
    )
    print(
        f"[{size} px] {wall:.1f} s, {result.pixels_per_s / 1e6:.3f} Mpx/s, peak RSS "
        f"{peak.total / MiB:.0f} MiB ({peak.samples} samples); cube {features} features, "
        f"{cube_bytes / MiB:.0f} MiB on disk",
        flush=True,
    )
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return result


# --- report -----------------------------------------------------------------------------------


def report(results: list[Result], args) -> str:
    head = (
        "| size (px) | pixels | features | chunks | wall (s) | Mpx/s | peak RSS tree (MiB) "
        "| driver (MiB) | workers (MiB) | idle tree (MiB) | cube in RAM would be (MiB) "
        "| cube on disk (MiB) | generator peak RSS (MiB) |"
    )
    lines = [head, "|" + "---:|" * (head.count("|") - 1)]
    for r in results:
        lines.append(
            f"| {r.size} | {r.pixels / 1e6:.2f} M | {r.features} | {r.chunks} | {r.wall_s:.1f} "
            f"| {r.pixels_per_s / 1e6:.3f} | {r.peak / MiB:.0f} | {r.driver_peak / MiB:.0f} "
            f"| {r.workers_peak / MiB:.0f} | {r.idle / MiB:.0f} | {r.cube_in_memory / MiB:.0f} "
            f"| {r.cube_bytes / MiB:.0f} | {r.synth_peak / MiB:.0f} |"
        )
    if len(results) > 1:
        small, big = results[0], results[-1]
        area = big.pixels / small.pixels
        rss = big.peak / small.peak
        rss_above_idle = (big.peak - big.idle) / max(1, small.peak - small.idle)
        speed = big.pixels_per_s / small.pixels_per_s
        lines += [
            "",
            f"area ratio {big.size}/{small.size}: {area:.1f}x",
            f"peak RSS ratio {big.size}/{small.size}: {rss:.2f} "
            f"(above the idle cluster: {rss_above_idle:.2f})",
            f"pixels/s ratio {big.size}/{small.size}: {speed:.2f}",
            f"-> {area:.0f}x the area with peak RSS x{rss:.2f}: memory is bound by the chunk "
            f"({args.chunk} px), not the tile; throughput x{speed:.2f} (1 = linear scaling).",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[1024, 4096],
        help="tile sides in pixels, smallest first (default: 1024 4096)",
    )
    parser.add_argument("--dates", type=int, default=6, help="acquisition dates (default 6)")
    parser.add_argument(
        "--out-dates",
        type=int,
        default=6,
        help="about how many gap-filled dates (sets temporal_resolution)",
    )
    parser.add_argument("--chunk", type=int, default=512, help="dask.chunk_size (default 512)")
    parser.add_argument("--workers", type=int, default=1, help="dask worker processes")
    parser.add_argument("--threads", type=int, default=2, help="threads per worker")
    parser.add_argument("--memory-limit", default="auto", help="per worker (default auto)")
    parser.add_argument("--interval", type=float, default=0.2, help="RSS sampling period, s")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", default="theia",
                        choices=["theia", "sen2cor", "stac", "series", "landsat8"],
                        help="layout of the generated products (default theia)")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="where scenes and cubes go (default: a temporary folder, deleted)",
    )
    parser.add_argument("--keep", action="store_true", help="keep scenes and cubes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import distributed  # noqa: F401  (its loggers exist once imported: quiet them)

    for name in list(logging.root.manager.loggerDict):
        if name.startswith("distributed"):
            logging.getLogger(name).setLevel(logging.ERROR)

    temporary = args.workdir is None
    root = Path(tempfile.mkdtemp(prefix="bench_cube_")) if temporary else args.workdir
    root.mkdir(parents=True, exist_ok=True)
    print(
        f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / GiB:.1f} GiB; "
        f"load average {os.getloadavg()[0]:.2f}; workdir {root}",
        flush=True,
    )
    print(
        f"settings: sizes {args.sizes}, {args.dates} dates -> ~{args.out_dates} gap-filled, "
        f"chunk {args.chunk}, {args.workers} worker(s) x {args.threads} thread(s), "
        f"memory limit {args.memory_limit}",
        flush=True,
    )
    try:
        results = [run_size(args, size, root) for size in args.sizes]
    finally:
        if temporary and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print(report(results, args))
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: the cube build against the read-and-decode floor, and the cube's size against the
inputs it is made from (issue 13), side by side in one run.

    python benchmarks/bench_cube.py --size 2048 --dates 24          # the issue's scene
    python benchmarks/bench_cube.py --size 512 --dates 8 --codecs   # quick, with a codec table

1. A one-tile THEIA scene (10 bands, CLM/EDG masks) is generated once (not timed).
2. The floor: every input raster read and decoded once, in 512 x 512 windows, on 2 threads
   (nothing else done); throughput in tile pixels per second.
3. The cube build: the cube step on geoclass's own LocalCluster (`cluster.dask_client`, as the
   commands start it) of 1 worker x 2 threads, started before the clock, from the same files
   to `cubes/<TILE>.zarr`; the peak RSS of the process tree too. Then the build again on
   the same worker, against the floor measured again: each worker thread opens every file
   of the tile once (288 files, about 0.6 s a thread here), which the 16 windows of this
   scene pay in full and the ~460 windows of a real tile share; the second build has its
   files open already, as the later windows of a tile have.
4. Sizes: the inputs (every file of the tile) and the cube on disk.
With --codecs, the build is repeated with other compressors (same data) to compare them."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numcodecs
import psutil
import rasterio
from rasterio.windows import Window

from geoclass.cluster import dask_client
from geoclass.io.configfile import load_config
from geoclass.steps import cube as cube_step
from geoclass.store import RunStore
from geoclass.testing.synth import synth

MiB = 2**20
CODECS = {
    "zstd1+bitshuffle": numcodecs.Blosc(cname="zstd", clevel=1,
                                        shuffle=numcodecs.Blosc.BITSHUFFLE),
    "zstd3+bitshuffle": numcodecs.Blosc(cname="zstd", clevel=3,
                                        shuffle=numcodecs.Blosc.BITSHUFFLE),
    "lz4+bitshuffle": numcodecs.Blosc(cname="lz4", clevel=5,
                                      shuffle=numcodecs.Blosc.BITSHUFFLE),
    "zstd1+shuffle": numcodecs.Blosc(cname="zstd", clevel=1, shuffle=numcodecs.Blosc.SHUFFLE),
    "lz4+shuffle": numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE),
}


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def read_floor(files: list[Path], threads: int = 2, side: int = 512) -> float:
    """Seconds to read and decode every window of every file once, on `threads` threads."""
    def read_file(path: Path) -> int:
        total = 0
        with rasterio.open(path) as src:
            for row in range(0, src.height, side):
                for col in range(0, src.width, side):
                    window = Window(col, row, min(side, src.width - col),
                                    min(side, src.height - row))
                    total += int(src.read(1, window=window).size)
        return total

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(read_file, files))
    return time.perf_counter() - start


class PeakRSS:
    """The peak RSS of this process and its children, sampled in a thread."""

    def __init__(self, interval: float = 0.2):
        self.peak, self.interval = 0, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        me = psutil.Process(os.getpid())
        while not self._stop.wait(self.interval):
            try:
                procs = [me, *me.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                pass

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def build(config, store: RunStore) -> tuple[float, int]:
    """Seconds of the cube step (force) and the peak RSS of the process tree meanwhile."""
    shutil.rmtree(store.root / "cubes", ignore_errors=True)
    with PeakRSS() as rss:
        start = time.perf_counter()
        cube_step.run(config, store, force=True)
        seconds = time.perf_counter() - start
    return seconds, rss.peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--dates", type=int, default=24)
    parser.add_argument("--chunk", type=int, default=512)
    parser.add_argument("--keep", type=Path, help="scene folder (default: a temporary one)")
    parser.add_argument("--codecs", action="store_true", help="compare compressors too")
    args = parser.parse_args()

    folder = args.keep or Path(f"/tmp/bench_cube_{args.size}_{args.dates}")
    config_path = folder / "config.yaml"
    if not config_path.exists():
        print(f"generating a {args.size} px, {args.dates}-date scene in {folder} ...", flush=True)
        synth(folder, tiles=1, size=args.size, dates=args.dates, classes=8, regions=2,
              chunk_size=args.chunk)
    config = load_config(config_path)
    tile = config.chain.list_tile[0]
    inputs = sorted(p for p in (folder / "sensor_data" / tile).rglob("*.tif"))
    pixels = args.size * args.size
    print(f"scene: 1 tile of {args.size} x {args.size} px, {args.dates} dates, {len(inputs)} "
          f"files ({du(folder / 'sensor_data') / MiB:,.0f} MiB), chunk {args.chunk}; "
          f"{os.cpu_count()} cores", flush=True)
    floor = read_floor(inputs)
    print(f"read-and-decode floor (2 threads): {floor:.2f} s, "
          f"{pixels / floor / 1e6:.2f} M px/s", flush=True)
    store = RunStore(config.chain.output_path)
    with dask_client(workers=1, threads_per_worker=2, dashboard_address="none"):
        seconds, peak = build(config, store)
        size = du(store.cube(tile))
        inputs_size = du(folder / "sensor_data")
        print(f"cube build (1 worker x 2 threads): {seconds:.2f} s, "
              f"{pixels / seconds / 1e6:.2f} M px/s = {floor / seconds:.0%} of the floor; "
              f"peak RSS {peak / MiB:,.0f} MiB")
        again, _ = build(config, store)
        floor_again = read_floor(inputs)
        print(f"the same build again on the same worker: {again:.2f} s = "
              f"{floor_again / again:.0%} of the floor read again ({floor_again:.2f} s)",
              flush=True)
        print(f"cube {size / MiB:,.0f} MiB / inputs {inputs_size / MiB:,.0f} MiB = "
              f"{size / inputs_size:.2f}x ({cube_step.COMPRESSOR})", flush=True)
        if args.codecs:
            print(f"{'codec':<20} {'seconds':>8} {'x floor':>8} {'MiB':>8} {'x inputs':>9}")
            chosen = cube_step.COMPRESSOR
            for name, codec in CODECS.items():
                cube_step.COMPRESSOR = codec
                seconds, _ = build(config, store)
                size = du(store.cube(tile))
                print(f"{name:<20} {seconds:>8.2f} {floor / seconds:>8.0%} "
                      f"{size / MiB:>8,.0f} {size / inputs_size:>9.2f}", flush=True)
            cube_step.COMPRESSOR = chosen
    sys.stdout.flush()


if __name__ == "__main__":
    main()

"""Benchmark: classification from the observation cube (features computed in the prediction's
task) against classification from a stored feature cube (the former layout), side by side in
one run, on the same scene, model, regions and cluster (issue 13).

    python benchmarks/bench_obs_classify.py --size 2048 --dates 24

The scene of bench_cube.py is reused (or generated); samples and models come from the chain
(default classifier). The feature cube is the observation cube's features written to zarr
once (not timed), float32, as the former layout stored them. Each path writes its tile map to
zarr, like the classify step; both run `--repeat` times, alternately."""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numcodecs
import xarray as xr

from geoclass import lazy
from geoclass.cluster import dask_client
from geoclass.io.configfile import load_config
from geoclass.pipeline import run_steps
from geoclass.store import RunStore
from geoclass.testing.synth import synth
from geoclass.views.cube import grid_of_cube, open_cube
from geoclass.views.maps import (
    classify_features,
    classify_tile,
    region_polygons,
    tile_regions,
)

MiB = 2**20


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--dates", type=int, default=24)
    parser.add_argument("--chunk", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--keep", type=Path)
    args = parser.parse_args()
    folder = args.keep or Path(f"/tmp/bench_cube_{args.size}_{args.dates}")
    if not (folder / "config.yaml").exists():
        synth(folder, tiles=1, size=args.size, dates=args.dates, classes=8, regions=2,
              chunk_size=args.chunk)
    config = load_config(folder / "config.yaml")
    store = RunStore(config.chain.output_path)
    tile = config.chain.list_tile[0]
    with dask_client(workers=1, threads_per_worker=2, dashboard_address="none"):
        run_steps(config, until="train")
        cube = open_cube(store.cube(tile))
        grid = grid_of_cube(cube)
        models = store.models()
        refs = {region: (path, models.sha256[(region, run)])
                for (region, run), path in models.items() if run == 0}
        codes = store.class_table().codes
        regions = tile_regions(region_polygons(config.chain, {tile: grid}), grid)
        stored = folder / "feature_cube.zarr"
        if not stored.exists():
            codec = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE)
            lazy.write_dataset(xr.Dataset({"features": cube.features}), stored,
                               "writing the feature cube (former layout)",
                               {"features": {"compressors": [codec]}})
        features = lazy.open_zarr(stored)["features"]
        n_features = features.sizes["feature"]
        print(f"scene: {args.size} x {args.size} px, {args.dates} dates, {n_features} "
              f"features, {len(codes)} classes, {config.models.classifier}; feature cube "
              f"{du(stored) / MiB:,.0f} MiB, observation cube "
              f"{du(store.cube(tile)) / MiB:,.0f} MiB")
        paths = {"feature cube": lambda: classify_features(features, regions, refs, codes),
                 "observation cube": lambda: classify_tile(cube, regions, refs, codes)}
        seconds = {name: [] for name in paths}
        for _ in range(args.repeat):
            for name, lazy_map in paths.items():
                out = folder / f"map_{name.replace(' ', '_')}.zarr"
                start = time.perf_counter()
                lazy.write_dataset(lazy_map().drop_vars("probabilities"), out, name)
                seconds[name].append(time.perf_counter() - start)
                shutil.rmtree(out, ignore_errors=True)
        pixels = args.size * args.size
        for name, values in seconds.items():
            best = min(values)
            print(f"{name:<17} {', '.join(f'{v:.2f}' for v in values)} s; best {best:.2f} s, "
                  f"{pixels / best / 1e3:,.0f} k px/s")
        ratio = min(seconds["observation cube"]) / min(seconds["feature cube"])
        print(f"observation cube / feature cube time: {ratio:.2f}")


if __name__ == "__main__":
    main()

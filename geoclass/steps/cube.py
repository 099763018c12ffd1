"""The cube step: every tile's cube (its masked observations, views.cube) stored in
`cubes/<TILE>.zarr`, block by block on the cluster, atomically; a tile whose inputs and
settings did not change keeps its cube, so a run killed half-way resumes with the tiles it
finished."""

from __future__ import annotations

import logging
from pathlib import Path

import numcodecs

from geoclass import lazy
from geoclass.config import Config
from geoclass.store import Cubes, RunStore, fingerprint
from geoclass.views.cube import CUBE_FORMAT, tile_observations
from geoclass.views.sources import sensor_dates, tile_sources

log = logging.getLogger(__name__)

# lz4 with bit-shuffling: on int16 reflectances 5 % bigger than zstd-1 (both well under the
# deflate inputs) and compressing 2.3x faster, which the cube build needs to stay near the
# read floor (benchmarks/bench_cube.py --codecs, RESULTS.md issue 13)
COMPRESSOR = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE)


def cube_settings(config: Config, dates) -> dict:
    return {
        "format": CUBE_FORMAT,
        "compressor": COMPRESSOR.get_config(),  # another codec rebuilds the cube
        "sections": config.section_hash("sensors", "features", "user_feat", "series", "stac"),
        "proj": config.chain.proj,
        "chunk": config.dask.chunk_size,
        "resolution": config.chain.spatial_resolution,
        "dates": {s: [d.isoformat() for d in v] for s, v in dates.items()},
    }


def _stamps(config: Config) -> tuple[dict, dict]:
    """Each tile's sources, and the stamp its cube is made from (its files and settings)."""
    sources = tile_sources(config)
    settings = cube_settings(config, sensor_dates(config, sources))
    return sources, {tile: fingerprint(src.files(), settings) for tile, src in sources.items()}


def current(config: Config, store: RunStore) -> bool:
    """Whether every tile's cube exists and was made from its present files and settings."""
    _, stamps = _stamps(config)
    return all(store.cube(tile).exists() and store.item_stamp("cubes", tile) == stamp
               for tile, stamp in stamps.items())


def run(config: Config, store: RunStore, force: bool = False) -> Cubes:
    """Store the cube of every tile (`cubes/<TILE>.zarr`), block by block on the cluster,
    atomically; a tile whose inputs and settings did not change keeps its cube (a run killed
    half-way resumes with the tiles it finished)."""
    sources, stamps = _stamps(config)
    dates = sensor_dates(config, sources)
    paths = Cubes()
    for tile, src in sources.items():
        path = store.cube(tile)
        stamp = stamps[tile]
        if not force and path.exists() and store.item_stamp("cubes", tile) == stamp:
            log.info("cube of %s is up to date: %s", tile, path)
        else:
            log.info("building the cube of %s (%d x %d px)", tile, src.grid.width,
                     src.grid.height)
            ds = tile_observations(config, src, dates)
            ds.attrs["geoclass_fingerprint"] = stamp
            store.forget_item("cubes", tile)  # a half-rewritten cube is never taken as done
            encoding = {name: {"compressors": [COMPRESSOR]} for name in ds.data_vars
                        if name.startswith("obs_") or name == "user"}
            lazy.write_dataset(ds, path, f"writing {path.name}", encoding)
            store.record_item("cubes", tile, stamp)
        paths[tile] = path
    return paths


def record(cubes: Cubes) -> dict:
    """Each tile's stamp: a rebuilt cube changes it, and so redoes the later steps."""
    return {"cubes": {tile: path.name for tile, path in cubes.items()}}


def outputs(config: Config, store: RunStore, record) -> list[Path]:
    return [store.cube(tile) for tile in config.chain.list_tile]

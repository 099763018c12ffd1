"""Auto-context's lazy views (iota2's autoContext; Derksen et al. 2020): the superpixels of a
tile, segmented chunk by chunk with ids that hold across chunk borders, and the context
features of a map: for each pixel, the share of each class in its superpixel.

Superpixels are SLIC segments (scikit-image) of a few standardized features, one window per
chunk (the chunk and a halo of 3 superpixels); a segment belongs to the chunk that holds its
centroid (kernels/superpixels.py states the stitching rule)."""

from __future__ import annotations

import numpy as np
import xarray as xr
import zarr

from geoclass import fs, lazy
from geoclass.config import Config
from geoclass.errors import ConfigError
from geoclass.kernels.superpixels import (
    context_block,
    halo,
    segment_chunk,
    stitch,
    window_parts,
)

PREFIX = "context_"


def enabled(config: Config) -> bool:
    """Whether the models use context features (auto-context with 2 iterations or more)."""
    return config.chain.enable_autocontext and config.chain.autocontext_iterations > 1


def context_names(codes) -> list[str]:
    return [f"{PREFIX}{int(c)}" for c in sorted(int(c) for c in codes)]


def segmentation_features(wanted: list[str] | None, names: list[str]) -> list[str]:
    """The features SLIC reads: `wanted` (chain.autocontext_features), else every NDVI
    feature (the series that best separates vegetation), else all of them."""
    if wanted:
        missing = [n for n in wanted if n not in names]
        if missing:
            raise ConfigError(
                f"chain.autocontext_features: {missing[:5]} are not features of the cube "
                f"(it has {len(names)}, e.g. {names[:3]}); list some of them or leave the key "
                "out to segment on the NDVI series")
        return list(wanted)
    ndvi = [n for n in names if "ndvi" in n.lower()]
    return ndvi or list(names)


def segment_windows(features, size: int, compactness: float):
    """The superpixel ids of every chunk's window (lazy), from (K, y, x) standardized
    features: one padded (side, side) block per chunk (see `kernels.superpixels`)."""
    h = halo(size)
    chunks = features.chunks[1:]
    side = (max(chunks[0]) + 2 * h, max(chunks[1]) + 2 * h)
    padded = lazy.overlap(features, h, np.nan)
    return lazy.map_yx(_segment, padded, size=size, compactness=compactness, h=h,
                       grid_chunks=chunks, lead=(), dtype=np.int64, index=True,
                       chunks=((side[0],) * len(chunks[0]), (side[1],) * len(chunks[1])))


def _segment(window, size, compactness, h, grid_chunks, block):
    return segment_chunk(window, size, compactness, h, grid_chunks, block)


def segment_tile(features, windows_path, size: int, compactness: float):
    """Superpixel ids (y, x) of a tile from its lazy (K, y, x) standardized features: the
    chunks' windows are segmented and stored at `windows_path` now (a zarr store); the
    returned lazy array stitches them chunk by chunk."""
    windows = segment_windows(features, size, compactness)
    lazy.write_array(windows, windows_path, "superpixels")
    return stitched(windows_path, features.shape[1:], features.chunks[1:], halo(size))


def stitched(windows_path, shape, chunks, h: int):
    """The final superpixel ids (y, x) of a tile (lazy), from its stored windows: each core
    chunk reads the parts of the windows around it."""
    template = lazy.zeros(shape, chunks, np.int64)
    return lazy.map_yx(_stitch_block, template, path=str(windows_path), h=h, grid_chunks=chunks,
                       lead=(), dtype=np.int64, index=True)


def _stitch_block(template, path, h, grid_chunks, block):
    """Read the windows' parts over this core chunk (a thin reader), then stitch."""
    where, options = fs.zarr_location(path)
    windows = zarr.open_array(where, mode="r", storage_options=options)
    i, j = block
    own, others = None, []
    for a, b, core, stored in window_parts(i, j, grid_chunks, h):
        values = windows[stored]
        if (a, b) == (i, j):
            own = values
        else:
            others.append((core, values))
    return stitch(own, others)


def context_view(segments, classes, codes: list[int], h: int):
    """(C, y, x) float32: for each pixel, the share of each class (`codes`, sorted) among the
    classified pixels of its superpixel in the map `classes` (0 = unclassified)."""
    codes = sorted(int(c) for c in codes)
    classes = lazy.rechunk_like(classes, segments.chunks)
    return lazy.map_overlap(context_block, segments, classes, depth=h, boundary=0,
                            lead=(len(codes),), dtype=np.float32, h=h, codes=codes)


def context_of(segments_path, map_path, cube: xr.Dataset, codes: list[int],
               superpixel_size: int):
    """The context features of a tile (lazy (C, y, x) and their names): the class shares of
    each pixel's superpixel in the stored map at `map_path`."""
    segments = lazy.read_array(segments_path)
    classes = lazy.read_zarr(map_path, "classification")
    chunks = (cube.sizes["y"], cube.sizes["x"])
    y_chunks = cube.chunks["y"] if cube.chunks else (chunks[0],)
    x_chunks = cube.chunks["x"] if cube.chunks else (chunks[1],)
    segments = lazy.rechunk_like(segments, (y_chunks, x_chunks))
    shares = context_view(segments, classes, codes, halo(superpixel_size))
    return shares, context_names(codes)

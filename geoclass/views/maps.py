"""The lazy maps of a tile: the regions burnt on its grid, and its classification, where each
block's features are computed from its observations in the same task as the prediction (they
never reach disk or the network), each pixel predicted by its region's model."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import xarray as xr
from rasterio.crs import CRS
from rasterio.warp import transform

from geoclass import lazy
from geoclass.config import Chain
from geoclass.grid import TileGrid, pixel_of, union_grid
from geoclass.io.reference import load_regions, regions_of_tiles
from geoclass.kernels import fastboost, fastforest
from geoclass.kernels.areas import class_pixel_counts
from geoclass.kernels.boundary import overlap_depth
from geoclass.kernels.merge import PROBA_NODATA
from geoclass.kernels.predict import predict_in_strips, predict_with_fusion
from geoclass.kernels.smoothing import (
    bayes_smooth,
    isolated_pixels,
    labels_from_probabilities,
    majority_filter,
)
from geoclass.kernels.timeseries import features_from_observations
from geoclass.kernels.uncertainty import most_uncertain, uncertainty
from geoclass.models.trained import TrainedModel, cached_model
from geoclass.views.cube import feature_blocks, feature_names, grid_of_cube, open_cube


def region_polygons(chain: Chain, grids: dict[str, TileGrid]) -> gpd.GeoDataFrame | None:
    """The regions as polygons (`region`, geometry): the region file's, or the footprints of
    the tiles of `chain.region_tiles` (`grids`: every tile's, in `list_tile` order); None
    without regions (everything is region 1)."""
    if chain.region_path is not None:
        return load_regions(chain.region_path, chain.region_field)
    if chain.region_tiles is not None:
        return regions_of_tiles(chain.region_tiles, grids)
    return None


def tile_regions(regions: gpd.GeoDataFrame | None, grid: TileGrid):
    """The region of every pixel of a tile (0 outside every region), rasterized lazily from
    `regions` (`region_polygons`); the whole tile is region 1 without regions."""
    if regions is None:
        return lazy.map_yx(_ones, lazy.from_windows(_zeros, grid, (), np.int32), lead=(),
                           dtype=np.int32)
    return lazy.lazy_rasterize(regions.to_crs(grid.crs), "region", grid)


def _zeros(window):
    return np.zeros((int(window.height), int(window.width)), np.int32)


def _ones(block):
    return np.ones_like(block)


def fusion_options(interior: float, exterior: float, epsilon: float,
                   resolution: float) -> dict:
    """The boundary-fusion values a block needs (distances in map units)."""
    return {"depth": overlap_depth(interior, exterior, resolution), "interior": interior,
            "exterior": exterior, "resolution": resolution, "epsilon": epsilon}


class FittedModel:
    """A fitted scikit-learn estimator as a predictor (for models that are not files), its
    fast form compiled once."""

    def __init__(self, estimator, fast: bool = True):
        self.estimator = estimator
        self.compiled = (fastforest.compile_forest(estimator)
                         or fastboost.compile_boosting(estimator)) if fast else None

    def check_features(self, names, source="the features") -> None:
        expected = getattr(self.estimator, "n_features_in_", len(names))
        if expected != len(names):
            raise ValueError(f"the estimator was fitted on {expected} features, {source} has "
                             f"{len(names)}")


def model_refs(models: dict, fast: bool = True) -> dict:
    """What the tasks get for each region's model: (file, SHA-256 or None) for model files
    (read in the task, once per worker), or a predictor object (put in the graph)."""
    refs = {}
    for region, model in models.items():
        if isinstance(model, tuple):
            refs[int(region)] = (str(model[0]), model[1])
        elif isinstance(model, (str, Path)):
            refs[int(region)] = (str(model), None)
        elif isinstance(model, TrainedModel):
            refs[int(region)] = model.compile() if fast else model
        else:
            refs[int(region)] = FittedModel(model, fast)
    return refs


def _models(refs: dict, fast: bool) -> dict:
    return {region: cached_model(ref[0], ref[1], fast) if isinstance(ref, tuple) else ref
            for region, ref in refs.items()}


def _predict(*blocks, recipes, n_obs, models, classes, names, fusion, fast):
    """One block: features from the observations (and extra blocks), then the prediction;
    the last block is the (padded) regions. Features computed from observations are made
    and predicted strip by strip of rows (`predict_in_strips`); stored ones (the extra
    blocks alone) as the block they are."""
    *sources, regions = blocks
    predictors = _models(models, fast)
    for model in predictors.values():
        model.check_features(names)
    if not recipes:
        features = features_from_observations((), [], list(sources))
        return predict_with_fusion(features, regions, predictors, classes, fusion)

    def features_of(rows):
        return features_from_observations(recipes, [b[..., rows, :] for b in sources[:n_obs]],
                                          [b[..., rows, :] for b in sources[n_obs:]])

    return predict_in_strips(features_of, len(names), regions, predictors, classes, fusion)


def _lazy_map(obs, extra, regions, recipes, names, models, classes, fusion, fast, coords):
    regions = lazy.rechunk_like(regions, (obs or extra)[0].chunks[-2:])
    if fusion is not None:
        regions = lazy.overlap(regions, fusion["depth"], "nearest")
    stacked = lazy.map_yx(_predict, *obs, *extra, regions, recipes=recipes, n_obs=len(obs),
                          models=model_refs(models, fast), classes=list(classes), names=names,
                          fusion=fusion, fast=fast, lead=(2 + len(classes),), dtype=np.uint16)
    return xr.Dataset(
        {"classification": (("y", "x"), stacked[0]),
         "confidence": (("y", "x"), stacked[1].astype(np.uint8)),
         "probabilities": (("class", "y", "x"), stacked[2:])},
        coords={**coords, "class": list(classes)},
    )


def classify_tile(cube: xr.Dataset, regions, models: dict, classes: list[int],
                  fusion: dict | None = None, context=None, context_names=(),
                  fast: bool = True) -> xr.Dataset:
    """Lazy classification of one tile from its cube: `classification`, `confidence` (y, x)
    and `probabilities` (class, y, x), each block's features computed from its observations
    in the prediction's task. `models`: region -> (model file, SHA-256 or None), read inside
    the tasks once per worker and never put in the graph, or region -> a fitted estimator;
    `regions`: the tile's region raster (lazy); `fusion`: `fusion_options` or None;
    `context`: extra (C, y, x) features appended to the cube's (auto-context)."""
    recipes, obs, extra = feature_blocks(cube)
    names = feature_names(cube) + list(context_names)
    if context is not None:
        extra = extra + [context]
    coords = {"y": cube["y"].values, "x": cube["x"].values}
    result = _lazy_map(obs, extra, regions, recipes, names, models, classes, fusion, fast,
                       coords)
    return result.assign_attrs(cube.attrs)


def classify_features(features: xr.DataArray, regions, models: dict, classes: list[int],
                      fusion: dict | None = None, fast: bool = True) -> xr.Dataset:
    """Lazy classification of any (feature, y, x) DataArray (see `classify_tile`)."""
    data = features.data.rechunk({0: -1})  # one block holds every feature of its pixels
    names = [str(n) for n in features["feature"].values] if "feature" in features.coords \
        else [str(i) for i in range(features.shape[0])]
    coords = {"y": features["y"].values, "x": features["x"].values}
    return _lazy_map([], [data], regions, (), names, models, classes, fusion, fast, coords)


def sample_pixels(samples, grid: TileGrid, crs_of_tile: dict) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) on `grid` of each sample (its `x`, `y` are in its tile's CRS); -1 outside."""
    samples = samples.reset_index(drop=True)
    rows = np.full(len(samples), -1, np.int64)
    cols = np.full(len(samples), -1, np.int64)
    for tile, part in samples.groupby("tile", sort=False):
        where = part.index.to_numpy()
        xs, ys = part["x"].to_numpy(), part["y"].to_numpy()
        if crs_of_tile[tile] != grid.crs:
            xs, ys = map(np.asarray, transform(crs_of_tile[tile], grid.crs, xs, ys))
        rows[where], cols[where] = pixel_of(xs, ys, grid.transform)
    outside = (rows < 0) | (rows >= grid.height) | (cols < 0) | (cols >= grid.width)
    rows[outside], cols[outside] = -1, -1
    return rows, cols


def map_values_at(mosaic_path, grid: TileGrid, samples, crs_of_tile: dict) -> np.ndarray:
    """The stored mosaic's class at each sample; 0 where the sample falls outside the mosaic.
    Reads only the blocks that hold samples."""
    rows, cols = sample_pixels(samples, grid, crs_of_tile)
    inside = rows >= 0
    out = np.zeros(len(rows), np.int64)
    if inside.any():
        classes = lazy.read_zarr(mosaic_path, "classification")
        out[inside] = lazy.pick(classes, rows[inside], cols[inside], "reading the map at the "
                                "validation pixels")
    return out


def tile_grids(tiles: list[str], store) -> dict[str, TileGrid]:
    """The grid of each tile's stored cube."""
    return {t: grid_of_cube(open_cube(store.cube(t))) for t in tiles}


def output_grid(grids: dict[str, TileGrid], proj: str | None, chunk: int) -> TileGrid:
    """The mosaic grid: `proj` (default: the first tile's CRS) at the cubes' resolution."""
    crs = CRS.from_user_input(proj) if proj else None
    return union_grid(list(grids.values()), crs, chunk=chunk)


# --- what is derived from a map: uncertainty, smoothing, counts -------------------------------


def uncertainty_map(probabilities, measure: str):
    """(y, x) uint16 uncertainty x 10000 (65535 = nodata) of (C, y, x) probabilities x 1000
    (`kernels.uncertainty`: entropy, margin or least confidence), block by block."""
    return lazy.map_yx(uncertainty, probabilities, lead=(), dtype=np.uint16, measure=measure)


def bayes_smoothed(probabilities, window_size: int, neigh_fraction: float,
                   smoothness: float | list[float]):
    """(C, y, x) uint16 probabilities x 1000 smoothed as sits_smooth does
    (`kernels.smoothing.bayes_smooth`), each block with window_size // 2 pixels of its
    neighbours: the same result whatever the chunks. Pixels past the map's edges are nodata
    (left out of the windows)."""
    halo = window_size // 2
    smoothness = smoothness if np.isscalar(smoothness) else list(map(float, smoothness))
    return lazy.map_overlap(bayes_smooth, probabilities, depth=halo, boundary=PROBA_NODATA,
                            lead=None, dtype=np.uint16, window_size=window_size,
                            neigh_fraction=neigh_fraction, smoothness=smoothness, halo=halo)


def labels_of(probabilities, codes: list[int], dtype=np.uint16):
    """(y, x) class codes of the highest of (C, y, x) probabilities x 1000, 0 at nodata."""
    return lazy.map_yx(labels_from_probabilities, probabilities, lead=(), dtype=dtype,
                       codes=list(codes))


def majority_smoothed(classification, radius: int, undecided: int | None = None,
                      isolated_threshold: int | None = None):
    """(y, x) class map through the majority filter of OTB's ClassificationMapRegularization
    (`kernels.smoothing.majority_filter`), each block with `radius` pixels of its neighbours
    (nodata past the map's edges)."""
    return lazy.map_overlap(majority_filter, classification, depth=radius, boundary=0,
                            lead=(), dtype=classification.dtype, radius=radius, halo=radius,
                            undecided=undecided, isolated_threshold=isolated_threshold)


def class_counts(classification, codes: list[int]):
    """(K,) int64 pixels of each class code of a (y, x) class map, counted block by block
    (lazy: a tree reduction)."""
    return lazy.block_sums(class_pixel_counts, classification, len(codes), codes=list(codes))


def isolated_count(classification):
    """(1,) int64 pixels whose 8 neighbours all have another class (salt-and-pepper),
    counted block by block with a 1-pixel overlap (lazy)."""
    return lazy.block_sums(isolated_pixels, classification, 1, depth=1, boundary=0)


def uncertain_candidates(uncertainty_map, classification, n: int, min_distance: float,
                         min_uncertainty: float | None = None) -> list:
    """One task per block picking its sampling candidates (`kernels.uncertainty.
    most_uncertain`: up to n per predicted class, min_distance pixels apart, rows and
    columns in the whole map's pixels); `lazy.compute_all` them, then `merge_candidates`."""
    starts = [np.concatenate([[0], np.cumsum(c)])[:-1] for c in uncertainty_map.chunks]
    pick = lazy.delayed(most_uncertain)
    return [pick(lazy.block(uncertainty_map, i, j), lazy.block(classification, i, j), n,
                 min_distance, origin=(int(r0), int(c0)), min_uncertainty=min_uncertainty)
            for i, r0 in enumerate(starts[0]) for j, c0 in enumerate(starts[1])]

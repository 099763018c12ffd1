"""Sample extraction kernels: the eligible ground-truth pixels of one block (pieces burnt on
the block's window) and the rows of the block that the runs need, with their features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import shapely
from rasterio.windows import Window

from geoclass.grid import TileGrid, pixel_of
from geoclass.kernels.rasterize import rasterize_block
from geoclass.kernels.sampling import pixel_keys


def snapped_points(geoms: np.ndarray, grid: TileGrid) -> np.ndarray:
    """(Multi)points moved to the centres of the pixels that hold them: burnt in exactly one
    block, even when they lie on a block's edge (where clipping would drop them)."""
    coords, index = shapely.get_coordinates(geoms, return_index=True)
    rows, cols = pixel_of(coords[:, 0], coords[:, 1], grid.transform)
    x, y = grid.transform * (cols + 0.5, rows + 0.5)
    out = np.array([shapely.MultiPoint()] * len(geoms), dtype=object)
    return shapely.multipoints(shapely.points(x, y), indices=index, out=out)


def eligible_pixels(shapes, window: Window, grid: TileGrid, validity: np.ndarray,
                    threshold: int):
    """Row, column (in the block) and piece id of every pixel of the block inside a piece
    whose clear observations number more than `threshold`."""
    ids = rasterize_block(shapes, window, grid, np.int32)
    rows, cols = np.nonzero((ids > 0) & (validity > threshold))
    return rows, cols, ids[rows, cols]


def count_block(shapes, window: Window, grid: TileGrid, validity: np.ndarray,
                threshold: int) -> pd.Series:
    """Eligible pixels per piece in one block."""
    _, _, pieces = eligible_pixels(shapes, window, grid, validity, threshold)
    return pd.Series(pieces).value_counts()


def extract_block(shapes, window: Window, grid: TileGrid, tile: str, tile_index: int,
                  features: np.ndarray, validity: np.ndarray, threshold: int, plan: dict,
                  names: list[str], seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of one block that some run needs: (learning candidates (key below the
    piece's threshold) with their features, validation pixels without). `features`: (F, h, w)
    float32 of the block, or a function of the block giving it (called only when some pixel
    is a learning candidate); `plan`: run -> (learning flag, key threshold and validation
    flag of each piece)."""
    rows, cols, pieces = eligible_pixels(shapes, window, grid, validity, threshold)
    rows_t, cols_t = rows + int(window.row_off), cols + int(window.col_off)
    learn_keep = np.zeros(len(pieces), bool)
    valid_keep = np.zeros(len(pieces), bool)
    keys = {}
    for run, (learn, limit, valid) in plan.items():
        keys[run] = pixel_keys(tile_index, rows_t, cols_t, seed, run)
        is_learn = learn.reindex(pieces).to_numpy()
        learn_keep |= is_learn & (keys[run] < limit.reindex(pieces).to_numpy())
        valid_keep |= valid.reindex(pieces).to_numpy()
    t = grid.transform
    x = t.c + t.a * (cols_t + 0.5) + t.b * (rows_t + 0.5)
    y = t.f + t.d * (cols_t + 0.5) + t.e * (rows_t + 0.5)
    table = pd.DataFrame({"tile": tile, "row": rows_t, "col": cols_t, "x": x, "y": y,
                          "piece": pieces, "validity": validity[rows, cols]})
    for run, key in keys.items():
        table[f"key_{run}"] = key
    learning = table[learn_keep].reset_index(drop=True)
    if learn_keep.any():
        block = features() if callable(features) else features
        values = block[:, rows[learn_keep], cols[learn_keep]].T
    else:
        values = np.empty((0, len(names)), np.float32)
    learning = pd.concat([learning, pd.DataFrame(values, columns=names)], axis=1)
    return learning, table[valid_keep].reset_index(drop=True)

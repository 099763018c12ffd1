"""Merging tile maps into mosaic blocks (pure numpy): where several tiles cover a pixel, the
tile whose classification has the higher confidence wins (on equal confidence, the tile
listed first); its confidence and probabilities come along."""

from __future__ import annotations

import numpy as np

PROBA_NODATA = 65535
VALIDITY_NODATA = 65535


def merge_maps(layers: list[tuple], shape: tuple[int, int], n_classes: int,
               probabilities: bool) -> np.ndarray:
    """One mosaic block, uint16 (2 [+ C], h, w): class, confidence [, probabilities x 1000,
    65535 where no class], from each tile's (class, confidence, probabilities or None) on
    the block, in the tiles' order (None for a tile that misses the block)."""
    bands = 2 + (n_classes if probabilities else 0)
    out = np.zeros((bands, *shape), np.uint16)
    if probabilities:
        out[2:] = PROBA_NODATA
    for layer in layers:
        if layer is None:
            continue
        label, confidence, proba = layer
        wins = (label > 0) & ((out[0] == 0) | (confidence > out[1]))
        if not wins.any():
            continue
        out[0][wins], out[1][wins] = label[wins], confidence[wins]
        if probabilities:
            out[2:, wins] = proba[:, wins]
    return out


def merge_validity(counts: list, shape: tuple[int, int]) -> np.ndarray:
    """The number of clear dates of each mosaic pixel: the largest over the tiles' counts
    on the block (None: a tile that misses it), 65535 outside every tile."""
    out = np.full(shape, VALIDITY_NODATA, np.uint16)
    for count in counts:
        if count is None:
            continue
        covered = count != VALIDITY_NODATA
        current = np.where(out == VALIDITY_NODATA, 0, out)
        out[covered] = np.maximum(current[covered], count[covered])
    return out

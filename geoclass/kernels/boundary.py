"""Region boundary fusion weights: near a boundary between two regions, both regions' models
vote, with weights that fall linearly with the signed distance to the boundary.

For region r and a pixel at signed distance d from r's boundary (d > 0 inside r, < 0
outside), the weight of r's model is clip((d + E) / (I + E), 0, 1), with I and E the interior
and exterior buffer sizes: 1 from I inside the region, 0 from E outside it, linear between.
At the boundary both sides get E / (I + E), so the fused map has no seam there."""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import distance_transform_edt


def overlap_depth(interior: float, exterior: float, resolution: float) -> int:
    """Pixels of context a block needs so that every distance up to max(I, E) is exact."""
    return int(math.ceil(max(interior, exterior) / resolution)) + 1


def signed_distance(mask: np.ndarray, resolution: float) -> np.ndarray:
    """Distance (map units) from each pixel centre to the edge of `mask`: positive inside,
    negative outside; +inf where the mask covers the whole block (no edge in sight)."""
    if mask.all():
        return np.full(mask.shape, np.inf, np.float32)
    if not mask.any():
        return np.full(mask.shape, -np.inf, np.float32)
    inside = distance_transform_edt(mask) - 0.5
    outside = distance_transform_edt(~mask) - 0.5
    return (np.where(mask, inside, -outside) * resolution).astype(np.float32)


def region_weights(
    padded_regions: np.ndarray, depth: int, interior: float, exterior: float,
    resolution: float, epsilon: float = 0.0,
) -> dict[int, np.ndarray]:
    """Weights (h, w) of every region present in the padded block, on the block without its
    `depth`-pixel margin; weights below `epsilon` are set to 0 (the model is not run there)."""
    core = (slice(depth, padded_regions.shape[0] - depth),
            slice(depth, padded_regions.shape[1] - depth))
    weights = {}
    for region in np.unique(padded_regions):
        if region == 0:
            continue
        distance = signed_distance(padded_regions == region, resolution)[core]
        weight = np.clip((distance + exterior) / (interior + exterior), 0, 1).astype(np.float32)
        weight[weight < epsilon] = 0
        if weight.any():
            weights[int(region)] = weight
    return weights

"""SLIC superpixels of a tile, computed chunk by chunk, with segment ids that are the same on
both sides of a chunk border, and the per-superpixel class histograms of a map.

Why by hand: scikit-image segments one array in memory; a tile is segmented per chunk (plus a
halo of `h` pixels, h = 3 superpixels) so memory stays bound by the chunk. Stitching rule:

1. every chunk segments its window (chunk + halo); a segment is *owned* by the chunk whose core
   holds its centroid; ids are (index of the segmenting chunk, local label), so globally unique;
2. a pixel takes the id of the segment that covers it in its own chunk's segmentation if that
   chunk owns it, else the first neighbour (row-major order) whose segmentation covers it with
   a segment that neighbour owns, else its own chunk's segment anyway.

Segments longer than `h` in rows or columns are cut into h x h cells, so that every superpixel
that touches a chunk lies within `h` pixels of it: the histograms are then exact with an
overlap of `h` (`context_features`). The result depends on the chunk size, not on the number of
workers or the order of the tasks.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.segmentation import slic

ID_STRIDE = 2**24  # local labels per segmenting chunk
CLIP = 3.0  # standardized features are clipped to [-CLIP, CLIP]


def halo(size: int) -> int:
    """Overlap of the segmentation windows and bound on a superpixel's extent (pixels)."""
    return 3 * size


def segment_window(window: np.ndarray, size: int, compactness: float, extent: int,
                   origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """SLIC labels (1..n, 0 where a channel is NaN) of a (K, H, W) window of standardized
    features whose first pixel is at `origin` in the tile: superpixels of about `size` x `size`
    pixels, none longer than `extent`.

    SLIC starts from a regular grid of centres, `size` apart, from the window's corner: the
    window is cropped to whole cells of a grid anchored at the tile's corner, so that
    overlapping windows start from the same centres and agree away from their edges."""
    labels = np.zeros(window.shape[1:], np.int64)
    cut = [(-o) % size for o in origin]
    stop = [c + (n - c) // size * size for c, n in zip(cut, window.shape[1:])]
    if stop[0] <= cut[0] or stop[1] <= cut[1]:
        return labels
    part = window[:, cut[0]:stop[0], cut[1]:stop[1]]
    _, height, width = part.shape
    valid = np.isfinite(part).all(axis=0)
    image = np.clip(np.nan_to_num(part, nan=0.0), -CLIP, CLIP).transpose(1, 2, 0)
    # slic rescales its input by the window's own min and max: two constant channels at -CLIP
    # and +CLIP pin that range so that every window is scaled alike (constant channels add
    # nothing to the distances).
    pins = np.broadcast_to(np.array([-CLIP, CLIP], image.dtype), (height, width, 2))
    image = np.concatenate([image, pins], axis=2)
    found = slic(image, n_segments=(height // size) * (width // size), compactness=compactness,
                 channel_axis=-1, convert2lab=False, start_label=1, enforce_connectivity=True)
    found = _cut_long_segments(found, extent)
    found[~valid] = 0
    labels[cut[0]:stop[0], cut[1]:stop[1]] = found
    return labels


def _cut_long_segments(labels: np.ndarray, extent: int) -> np.ndarray:
    """Relabel the segments whose bounding box is longer than `extent` by extent x extent
    cells."""
    out = labels.astype(np.int64)
    last = int(out.max())
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None or max(s.stop - s.start for s in box) <= extent:
            continue
        rows, cols = np.nonzero(labels[box] == label)
        cells = (rows // extent) * (1 + (box[1].stop - box[1].start) // extent) + cols // extent
        _, pieces = np.unique(cells, return_inverse=True)
        keep = pieces > 0  # the first cell keeps the label, the others get new ones
        part = out[box]
        part[rows[keep], cols[keep]] = last + pieces[keep]
        last += int(pieces.max())
    return out


def _owned_ids(labels: np.ndarray, h: int, core: tuple[int, int], block: int) -> np.ndarray:
    """Global ids of a window's labels: +id when the segment's centroid lies in the core,
    -id otherwise, 0 where the label is 0."""
    if labels.max() >= ID_STRIDE:
        raise ValueError("too many superpixels in one chunk: lower dask.chunk_size")
    flat = labels.ravel()
    rows, cols = np.divmod(np.arange(flat.size), labels.shape[1])
    count = np.bincount(flat, minlength=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        cy = np.bincount(flat, rows) / count
        cx = np.bincount(flat, cols) / count
    owned = (cy >= h) & (cy < h + core[0]) & (cx >= h) & (cx < h + core[1])
    ids = (block + 1) * ID_STRIDE + labels.astype(np.int64)
    ids = np.where(owned[labels], ids, -ids)
    ids[labels == 0] = 0
    return ids


def segment_chunk(window: np.ndarray, size: int, compactness: float, h: int, chunks,
                  block: tuple[int, int]) -> np.ndarray:
    """Global superpixel ids of chunk `block`'s window ((K, H, W) standardized features: the
    chunk and a halo of `h`), zero-padded to the largest window: +id for the segments the
    chunk owns (centroid in its core), -id for the others."""
    i, j = block
    core = (chunks[0][i], chunks[1][j])
    origin = (sum(chunks[0][:i]) - h, sum(chunks[1][:j]) - h)
    labels = segment_window(window, size, compactness, h, origin)
    ids = _owned_ids(labels, h, core, i * len(chunks[1]) + j)
    side = (max(chunks[0]) + 2 * h, max(chunks[1]) + 2 * h)
    out = np.zeros(side, np.int64)
    out[:ids.shape[0], :ids.shape[1]] = ids
    return out


def window_parts(i: int, j: int, chunks, h: int):
    """For core chunk (i, j), every chunk (a, b) whose window overlaps it, with the core's
    slices and the slices of the stored windows array that cover them: (a, b, core slices,
    (row slice, col slice) in the windows array)."""
    offsets = [np.concatenate([[0], np.cumsum(c)]) for c in chunks]
    sides = [max(c) + 2 * h for c in chunks]
    y0, y1 = offsets[0][i], offsets[0][i + 1]
    x0, x1 = offsets[1][j], offsets[1][j + 1]
    parts = []
    for a in range(len(chunks[0])):
        for b in range(len(chunks[1])):
            wy0, wx0 = offsets[0][a] - h, offsets[1][b] - h  # window origin, global
            ry0, ry1 = max(y0, wy0), min(y1, offsets[0][a + 1] + h)
            rx0, rx1 = max(x0, wx0), min(x1, offsets[1][b + 1] + h)
            if ry0 >= ry1 or rx0 >= rx1:
                continue
            core = (slice(ry0 - y0, ry1 - y0), slice(rx0 - x0, rx1 - x0))
            stored = (slice(a * sides[0] + ry0 - wy0, a * sides[0] + ry1 - wy0),
                      slice(b * sides[1] + rx0 - wx0, b * sides[1] + rx1 - wx0))
            parts.append((a, b, core, stored))
    return parts


def stitch(own: np.ndarray, others: list[tuple]) -> np.ndarray:
    """Final ids of a core chunk: its own segmentation's ids where it owns the segment, else
    the first neighbour's (row-major) that owns the segment covering the pixel, else its own.
    `own`: the core's ids in its own window; `others`: (core slices, ids) of the neighbours'
    windows over the core."""
    out = np.where(own > 0, own, 0)
    undecided = own < 0
    for where, values in others:
        if not undecided.any():
            break
        take = undecided[where] & (values > 0)
        out[where][take] = values[take]
        undecided[where][take] = False
    out[undecided] = -own[undecided]
    return out


def context_block(segments: np.ndarray, classes: np.ndarray, h: int, codes) -> np.ndarray:
    """(C, h, w) float32: per pixel of the core, the share of each class (`codes`, sorted)
    among the classified pixels of its superpixel, from (H, W) segments and classes padded
    by `h`."""
    codes = np.asarray(codes)
    position = np.searchsorted(codes, classes)
    known = (classes > 0) & (position < len(codes))
    known[known] = codes[position[known]] == classes[known]
    ids, inverse = np.unique(segments, return_inverse=True)
    inverse = inverse.reshape(segments.shape)
    n = len(codes)
    counts = np.bincount(inverse[known] * n + position[known],
                         minlength=len(ids) * n).reshape(len(ids), n)
    total = counts.sum(axis=1, keepdims=True)
    fractions = (counts / np.maximum(total, 1)).astype(np.float32)
    fractions[ids == 0] = 0
    height, width = segments.shape
    core = inverse[h:height - h, h:width - h]
    return fractions[core].transpose(2, 0, 1)



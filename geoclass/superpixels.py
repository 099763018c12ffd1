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

import dask.array as da
import numpy as np
import zarr
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


def _segment_block(window, size, compactness, h, chunks, block_id=None):
    i, j = block_id[-2:]
    core = (chunks[0][i], chunks[1][j])
    origin = (sum(chunks[0][:i]) - h, sum(chunks[1][:j]) - h)
    labels = segment_window(window, size, compactness, h, origin)
    ids = _owned_ids(labels, h, core, i * len(chunks[1]) + j)
    side = (max(chunks[0]) + 2 * h, max(chunks[1]) + 2 * h)
    out = np.zeros(side, np.int64)
    out[:ids.shape[0], :ids.shape[1]] = ids
    return out


def _stitch_block(block, path, h, chunks, block_id=None):
    """Final ids of one core chunk from the stored windows of the chunks around it."""
    i, j = block_id
    windows = zarr.open_array(str(path), mode="r")
    offsets = [np.concatenate([[0], np.cumsum(c)]) for c in chunks]
    sides = [max(c) + 2 * h for c in chunks]
    y0, y1 = offsets[0][i], offsets[0][i + 1]
    x0, x1 = offsets[1][j], offsets[1][j + 1]

    def window_part(a, b):
        """The part of chunk (a, b)'s window over this core: (core slices, window values)."""
        wy0, wx0 = offsets[0][a] - h, offsets[1][b] - h  # window origin, global
        ry0, ry1 = max(y0, wy0), min(y1, offsets[0][a + 1] + h)
        rx0, rx1 = max(x0, wx0), min(x1, offsets[1][b + 1] + h)
        if ry0 >= ry1 or rx0 >= rx1:
            return None
        values = windows[a * sides[0] + ry0 - wy0:a * sides[0] + ry1 - wy0,
                         b * sides[1] + rx0 - wx0:b * sides[1] + rx1 - wx0]
        return (slice(ry0 - y0, ry1 - y0), slice(rx0 - x0, rx1 - x0)), values

    own = window_part(i, j)[1]
    out = np.where(own > 0, own, 0)
    undecided = own < 0
    for a in range(len(chunks[0])):
        for b in range(len(chunks[1])):
            if (a, b) == (i, j) or not undecided.any():
                continue
            part = window_part(a, b)
            if part is None:
                continue
            where, values = part
            take = undecided[where] & (values > 0)
            out[where][take] = values[take]
            undecided[where][take] = False
    out[undecided] = -own[undecided]
    return out


def segment_tile(features: da.Array, windows_path, size: int, compactness: float) -> da.Array:
    """Superpixel ids (y, x) of a tile from its lazy (K, y, x) standardized features: the
    chunks' windows are segmented and stored at `windows_path` (a zarr array) now; the
    returned lazy array stitches them chunk by chunk."""
    from geoclass.cluster import compute

    h = halo(size)
    chunks = features.chunks[1:]
    windows = da.overlap.overlap(features, depth={0: 0, 1: h, 2: h},
                                 boundary={1: np.nan, 2: np.nan})
    side = (max(chunks[0]) + 2 * h, max(chunks[1]) + 2 * h)
    labels = da.map_blocks(_segment_block, windows, size, compactness, h, chunks,
                           drop_axis=0, dtype=np.int64,
                           chunks=((side[0],) * len(chunks[0]), (side[1],) * len(chunks[1])))
    compute(labels.to_zarr(str(windows_path), overwrite=True, compute=False),
            label="superpixels")
    template = da.zeros(features.shape[1:], chunks=chunks, dtype=np.int64)
    return da.map_blocks(_stitch_block, template, str(windows_path), h, chunks, dtype=np.int64)


def _context_block(segments, classes, h, codes):
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


def context_features(segments: da.Array, classes: da.Array, codes: list[int], h: int) -> da.Array:
    """(C, y, x) float32: for each pixel, the share of each class (`codes`, sorted) among the
    classified pixels of its superpixel in the map `classes` (0 = unclassified)."""
    codes = sorted(int(c) for c in codes)
    classes = classes.rechunk(segments.chunks)
    pad = {0: h, 1: h}
    seg = da.overlap.overlap(segments, depth=pad, boundary={0: 0, 1: 0})
    cls = da.overlap.overlap(classes, depth=pad, boundary={0: 0, 1: 0})
    return da.map_blocks(_context_block, seg, cls, h, codes, new_axis=0, dtype=np.float32,
                         chunks=((len(codes),), *segments.chunks))


def values_at_pixels(array: da.Array, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(n, C) values of a lazy (C, y, x) array at pixels (rows, cols), computing only the
    chunks that hold them."""
    import dask

    from geoclass.cluster import compute

    starts = [np.concatenate([[0], np.cumsum(c)]) for c in array.chunks[1:]]
    bi = np.searchsorted(starts[0], rows, side="right") - 1
    bj = np.searchsorted(starts[1], cols, side="right") - 1
    out = np.zeros((len(rows), array.shape[0]), array.dtype)
    keys = sorted(set(zip(bi.tolist(), bj.tolist())))
    picks = []
    for a, b in keys:
        where = np.nonzero((bi == a) & (bj == b))[0]
        block = array.blocks[:, a, b]
        picks.append((where, dask.delayed(_pick)(block, rows[where] - starts[0][a],
                                                 cols[where] - starts[1][b])))
    if picks:
        values = compute(*[p for _, p in picks], label="reading the context of the samples")
        for (where, _), value in zip(picks, values):
            out[where] = value
    return out


def _pick(block, rows, cols):
    return block[:, rows, cols].T

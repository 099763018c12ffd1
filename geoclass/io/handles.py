"""Open rasters kept open, per thread, for the window readers.

A cube block reads one window of every file of a tile (12 files a date, 30-70 dates), and the
next block the same files again: opening a GeoTIFF (headers, directory listing) costs about
as much as decoding a 512 px window of it. GDAL has no pool of open datasets that rasterio
exposes, so each worker thread keeps its own least-recently-used set of open datasets (a
dataset must not be shared between threads). A file is reopened when its size or modification
time changes; objects and URLs (fs.open_raster: s3://, https://, /vsi... paths) are opened
each time.
"""

from __future__ import annotations

import os
import resource
import threading
from collections import OrderedDict
from contextlib import contextmanager

import rasterio

from geoclass import fs

_LOCAL = threading.local()

# GDAL keeps the blocks of open datasets in a per-process cache of 5 % of the RAM by default
# (1.2 GB measured per worker with the datasets kept open): a block is read once per window
# here, so a small cache loses nothing and keeps a worker's memory bound by its chunks. Set
# before GDAL's first read in the process (a user's own setting wins).
os.environ.setdefault("GDAL_CACHEMAX", "64")


def _capacity() -> int:
    """Open datasets a thread may keep: a share of the file descriptors this process may
    hold (it raises its soft limit to the hard one first), at most 2048."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    limit = soft if soft != resource.RLIM_INFINITY else 65536
    return max(0, min(2048, limit // 16 - 16))


CAPACITY = _capacity()


def _cache() -> OrderedDict:
    cache = getattr(_LOCAL, "cache", None)
    if cache is None:
        cache = _LOCAL.cache = OrderedDict()
    return cache


@contextmanager
def open_raster(path: str):
    """`rasterio.open(path)` for reading, from this thread's open datasets when the file is
    unchanged (not closed on exit: it stays for the next window)."""
    key = _key(path)
    if key is None or not CAPACITY:
        with fs.open_raster(path) as src:
            yield src
        return
    cache = _cache()
    src = cache.pop(key, None)
    if src is None or src.closed:
        src = rasterio.open(key[0])
    cache[key] = src  # most recent last
    while len(cache) > CAPACITY:
        cache.popitem(last=False)[1].close()
    yield src


def _key(path: str):
    if fs.is_url(path) or str(path).startswith("/vsi"):
        return None
    try:
        stat = os.stat(path)
    except OSError:  # rasterio says what is wrong with it
        return None
    return (os.fspath(path), stat.st_mtime_ns, stat.st_size, stat.st_ino)


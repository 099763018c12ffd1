"""Open rasters kept open, for the window readers of a process.

A cube block reads one window of every file of a tile (12 files a date, 30-70 dates), and the
next block the same files again: opening a GeoTIFF (headers, directory listing) costs about
as much as decoding a 512 px window of it (2-3 ms here). GDAL has no pool of open datasets
that rasterio exposes, so the process keeps one: a thread takes an open dataset of the file
out of it (or opens one), reads, and puts it back for the next window, its own or another
thread's. A dataset is used by one thread at a time, as GDAL asks; a process opens each file
once per thread reading it at the same moment, not once per thread (a 2-thread worker opened
every file twice, with a per-thread set). The least recently used datasets are closed beyond
`CAPACITY`. A file is reopened when its size or modification time changes; objects and URLs
(fs.open_raster: s3://, https://, /vsi... paths) are opened each time.
"""

from __future__ import annotations

import os
import resource
import threading
from collections import OrderedDict
from contextlib import contextmanager

import rasterio

from geoclass import fs

# GDAL keeps the blocks of open datasets in a per-process cache of 5 % of the RAM by default
# (1.2 GB measured per worker with the datasets kept open): a block is read once per window
# here, so a small cache loses nothing and keeps a worker's memory bound by its chunks. 16
# MiB rather than 64: a fresh process's first pass over a tile's files (16 windows of 288
# files, 2 threads) took 6.8-7.7 s with 8 or 16 MiB against 8.0-8.6 s with 64 MiB (the
# cache's fresh pages), later passes the same. Set before GDAL's first read in the process
# (a user's own setting wins).
os.environ.setdefault("GDAL_CACHEMAX", "16")


def _capacity() -> int:
    """Open datasets the process may keep: a share of the file descriptors it may hold (it
    raises its soft limit to the hard one first), at most 4096."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    limit = soft if soft != resource.RLIM_INFINITY else 65536
    return max(0, min(4096, limit // 4 - 64))


CAPACITY = _capacity()


# key -> the open datasets of that file no thread is using, least recently used key first
_FREE: OrderedDict[tuple, list] = OrderedDict()
_COUNT = [0]  # the datasets in _FREE
_LOCK = threading.Lock()


@contextmanager
def open_raster(path: str):
    """`rasterio.open(path)` for reading, taken from the process's open datasets when the
    file is unchanged (not closed on exit: it goes back for the next window)."""
    key = _key(path)
    if key is None or not CAPACITY:
        with fs.open_raster(path) as src:
            yield src
        return
    with _LOCK:
        free = _FREE.get(key)
        src = free.pop() if free else None
        _COUNT[0] -= src is not None
    if src is None or src.closed:
        src = rasterio.open(key[0])
    try:
        yield src
    finally:
        _put_back(key, src)


def _put_back(key: tuple, src) -> None:
    """Give `src` back to the pool (most recently used), closing the oldest beyond CAPACITY."""
    stale = []
    with _LOCK:
        _FREE.setdefault(key, []).append(src)
        _FREE.move_to_end(key)
        _COUNT[0] += 1
        while _COUNT[0] > CAPACITY:
            oldest, free = next(iter(_FREE.items()))
            stale.append(free.pop(0))
            _COUNT[0] -= 1
            if not free:
                del _FREE[oldest]
    for old in stale:  # no thread holds them: out of the pool
        old.close()


def close_all() -> int:
    """Close every dataset of the pool (none is in use there); how many were closed."""
    with _LOCK:
        stale = [src for free in _FREE.values() for src in free]
        _FREE.clear()
        _COUNT[0] = 0
    for src in stale:
        src.close()
    return len(stale)


def _key(path: str):
    if fs.is_url(path) or str(path).startswith("/vsi"):
        return None
    try:
        stat = os.stat(path)
    except OSError:  # rasterio says what is wrong with it
        return None
    return (os.fspath(path), stat.st_mtime_ns, stat.st_size, stat.st_ino)


"""Large write-once files (whole stored chunks of a cube) written past the page cache.

A cube build streams gigabytes that nothing reads back soon. Written through the page cache,
each byte is first copied into freshly allocated cache pages, then written back by the
kernel's flusher threads, which take CPU from the build. With `O_DIRECT` the disk takes the
data straight from an aligned buffer. Measured on this project's 2-core VM (ext4, 75 MiB
chunk files): buffered 0.25-0.33 s a file, direct 0.06 s; the 2048 px cube build on a fresh
cluster went from 11.6-13.2 s to 9.7-11.4 s (benchmarks/RESULTS.md, issue 13). Neither zarr
nor numcodecs offers it, hence these few lines.

Direct I/O only where it is known to behave: files of at least `DIRECT_MIN` bytes on a local
disk file system (`DIRECT_FS`). Network, memory and overlay file systems, remote objects and
small files are written as usual, and so is any file whose direct write the system refuses
(`EINVAL`). Memory: each writing thread keeps one buffer the size of its largest chunk while
a dataset is written (`release_buffers` drops them after)."""

from __future__ import annotations

import errno
import functools
import mmap
import os
import threading
from pathlib import Path

DIRECT_MIN = 8 * 2**20
DIRECT_FS = frozenset({"ext4", "ext3", "xfs", "btrfs", "f2fs"})
# a multiple of every logical block size in use (512 and 4096 bytes)
ALIGN = 4096

# each writing thread's aligned buffer, by thread: kept from one file to the next (fresh
# pages for every file cost what the direct write saves: measured), dropped by
# `release_buffers` once a dataset is written
_BUFFERS: dict[int, mmap.mmap] = {}
_LOCK = threading.Lock()


def write_file(path: Path, data: bytes) -> None:
    """Write `data` as the whole content of the local file `path` (created or replaced)."""
    if not takes_direct_path(path, len(data)) or not _write_direct(path, data):
        with open(path, "wb") as f:
            f.write(data)


def takes_direct_path(path: Path, size: int) -> bool:
    """Whether `write_file` writes `size` bytes at the local `path` with O_DIRECT (unless
    the system refuses it), and so keeps an aligned buffer for the writing thread."""
    return size >= DIRECT_MIN and direct_allowed(path)


def direct_allowed(path: Path) -> bool:
    """Whether `path` (a local file, existing or not) lies on a local disk file system."""
    return _fs_type(os.path.realpath(os.path.dirname(os.path.abspath(path)))) in DIRECT_FS


def _fs_type(folder: str) -> str | None:
    """The type of the file system holding `folder`: the mount of the longest prefix."""
    for mount, fs_type in _mounts():
        if folder == mount or folder.startswith(mount.rstrip("/") + "/"):
            return fs_type
    return None


@functools.cache
def _mounts() -> tuple[tuple[str, str], ...]:
    """(mount point, type) of every mount, the longest mount points first."""
    try:
        with open("/proc/self/mounts") as f:
            lines = f.read().splitlines()
    except OSError:  # not Linux: no direct writes
        return ()
    mounts = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 3:
            # /proc/self/mounts writes spaces, tabs and backslashes as octal escapes
            point = fields[1].encode().decode("unicode_escape")
            mounts.append((point, fields[2]))
    return tuple(sorted(mounts, key=lambda m: len(m[0]), reverse=True))


def _aligned_buffer(size: int) -> memoryview:
    """This thread's page-aligned buffer of at least `size` bytes, kept for its next file."""
    thread = threading.get_ident()
    buf = _BUFFERS.get(thread)
    if buf is None or len(buf) < size:
        buf = mmap.mmap(-1, size)  # the smaller one goes once no view of it is left
        with _LOCK:
            _BUFFERS[thread] = buf
    return memoryview(buf)[:size]


def release_buffers() -> int:
    """Drop every thread's buffer (its memory is unmapped once no write uses it): a worker
    does not hold a chunk-sized buffer per thread into the next steps. The bytes dropped."""
    with _LOCK:
        dropped = sum(len(buf) for buf in _BUFFERS.values())
        _BUFFERS.clear()
    return dropped


def _write_direct(path: Path, data: bytes) -> bool:
    """Write `data` to `path` with O_DIRECT: whole aligned blocks, then the file cut to its
    length. False, with nothing left at `path`, where the system refuses direct I/O."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return False
    size = len(data)
    padded = -(-size // ALIGN) * ALIGN
    view = _aligned_buffer(padded)
    view[:size] = data  # the padding after it is cut off by ftruncate below
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | flag, 0o666)
    except OSError as err:
        if err.errno == errno.EINVAL:
            return False
        raise
    try:
        done = 0
        while done < padded:
            done += os.write(fd, view[done:])
        os.ftruncate(fd, size)
    except OSError as err:
        os.close(fd)
        if err.errno == errno.EINVAL:
            os.unlink(path)
            return False
        raise
    finally:
        view.release()
    os.close(fd)
    return True

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
(`EINVAL`). Memory: the process keeps its aligned buffers (one per chunk being encoded or
written) while a dataset is written, for the next chunks (`release_buffers` drops them
after): a fresh buffer per chunk costs its page faults, 2 s of the 2048 px cube build's CPU.

Written behind (`write_behind`): a task hands its encoded chunk to this process's writer
threads and goes on, so the disk writes while the cores read and encode the next blocks (a
thread waiting on the disk leaves its core idle: the 2048 px cube build spent 3.4 of its 22
thread-seconds so, RESULTS.md issue 13). At most one chunk per task thread waits to be
written (a task hands its chunk over only when there is room), so memory stays bound by the
chunk size. `settle(root)` waits until every write of the process is done and raises the
first that failed under `root`: a dataset is complete only after it ran on every worker.
concurrent.futures' executor is enough for this: the writes need no ordering and no
scheduling, only a thread that is not dask's."""

from __future__ import annotations

import errno
import functools
import math
import mmap
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from distributed import get_worker

DIRECT_MIN = 8 * 2**20
DIRECT_FS = frozenset({"ext4", "ext3", "xfs", "btrfs", "f2fs"})
# a multiple of every logical block size in use (512 and 4096 bytes)
ALIGN = 4096

# the process's page-aligned buffers no chunk is using: kept from one file to the next
# (fresh pages for every file cost what the direct write saves: measured), dropped by
# `release_buffers` once a dataset is written
_FREE: list[mmap.mmap] = []
_LOCK = threading.Lock()


def take_buffer(size: int) -> mmap.mmap:
    """A page-aligned buffer of at least `size` bytes, for this caller alone until it gives
    it back (`give_back`)."""
    with _LOCK:
        for i, buf in enumerate(_FREE):
            if len(buf) >= size:
                return _FREE.pop(i)
        if _FREE:
            _FREE.pop(0)  # too small: it goes, a bigger one takes its place
    buf = mmap.mmap(-1, -(-size // ALIGN) * ALIGN)
    if hasattr(mmap, "MADV_HUGEPAGE"):  # fewer faults on its first use, where the system allows
        buf.madvise(mmap.MADV_HUGEPAGE)
    return buf


def give_back(buf: mmap.mmap) -> None:
    with _LOCK:
        _FREE.append(buf)


def in_buffer(data) -> tuple[mmap.mmap, int]:
    """`data` (bytes-like) copied into an aligned buffer (`take_buffer`): (buffer, size)."""
    size = memoryview(data).nbytes
    buf = take_buffer(size)
    with memoryview(buf) as view:
        view[:size] = memoryview(data).cast("B")
    return buf, size


def write_buffer(path: Path, buf: mmap.mmap, size: int) -> None:
    """Write the first `size` bytes of the aligned buffer `buf` (from `take_buffer`) as the
    whole content of the local file `path`: with O_DIRECT straight from it where allowed."""
    if not takes_direct_path(path, size) or not _write_direct(path, buf, size):
        with memoryview(buf) as view:
            _write_plain(path, view[:size])


def _write_plain(path: Path, data) -> None:
    with open(path, "wb") as f:
        f.write(data)


class _Behind:
    """This process's writer threads, the room left for chunks waiting to be written, the
    writes not done yet, and those that failed (path, error) until a `settle` takes them."""

    def __init__(self, task_threads: int):
        self.executor = ThreadPoolExecutor(max(1, math.ceil(task_threads / 4)),
                                           thread_name_prefix="geoclass-writer")
        self.room = threading.Semaphore(max(1, task_threads))
        self.done = threading.Condition()
        self.pending = 0
        self.failed: list[tuple[Path, BaseException]] = []


_BEHIND: _Behind | None = None


def _task_threads() -> int:
    """The threads that run tasks in this process: a dask worker's, else the cores."""
    try:
        return get_worker().state.nthreads
    except ValueError:
        return os.cpu_count() or 1


def _behind() -> _Behind:
    global _BEHIND
    with _LOCK:
        if _BEHIND is None:
            _BEHIND = _Behind(_task_threads())
        return _BEHIND


def write_behind(path: Path, buf: mmap.mmap, size: int) -> None:
    """`write_buffer(path, buf, size)` on one of this process's writer threads, the buffer
    given back once written: returns as soon as the chunk is handed over (after waiting for
    room); `settle` says whether it was written."""
    behind = _behind()
    behind.room.acquire()
    with behind.done:
        behind.pending += 1
    try:
        behind.executor.submit(_write_handed, behind, Path(path), buf, size)
    except BaseException:
        _handed_back(behind)
        raise


def _write_handed(behind: _Behind, path: Path, buf: mmap.mmap, size: int) -> None:
    try:
        write_buffer(path, buf, size)
    except BaseException as err:  # kept for the dataset's `settle`
        with behind.done:
            behind.failed.append((path, err))
    finally:
        give_back(buf)
        _handed_back(behind)


def _handed_back(behind: _Behind) -> None:
    with behind.done:
        behind.pending -= 1
        behind.done.notify_all()
    behind.room.release()


def settle(root: str | Path, raise_errors: bool = True) -> int:
    """Wait until every write handed to this process's writers is done, drop the process's
    free buffers, and raise the first write under `root` that failed (with
    `raise_errors`; those failures are forgotten either way). The bytes of buffers dropped."""
    failed = []
    behind = _BEHIND
    if behind is not None:
        root = os.path.abspath(root)
        with behind.done:
            behind.done.wait_for(lambda: behind.pending == 0)
            failed = [err for path, err in behind.failed if _under(path, root)]
            behind.failed = [(p, e) for p, e in behind.failed if not _under(p, root)]
    dropped = release_buffers()
    if failed and raise_errors:
        raise failed[0]
    return dropped


def _under(path: Path, root: str) -> bool:
    path = os.path.abspath(path)
    return path == root or path.startswith(root.rstrip("/") + "/")


def takes_direct_path(path: Path, size: int) -> bool:
    """Whether `write_buffer` writes `size` bytes at the local `path` with O_DIRECT (unless
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


def release_buffers() -> int:
    """Drop the process's free buffers (their memory is unmapped once no write uses them): a
    worker does not hold chunk-sized buffers into the next steps. The bytes dropped."""
    with _LOCK:
        dropped = sum(len(buf) for buf in _FREE)
        _FREE.clear()
    return dropped


def _write_direct(path: Path, buf: mmap.mmap, size: int) -> bool:
    """Write the first `size` bytes of the aligned `buf` to `path` with O_DIRECT: whole
    aligned blocks, then the file cut to its length. False, with nothing left at `path`,
    where the system refuses direct I/O."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return False
    padded = -(-size // ALIGN) * ALIGN  # the buffer's length is a multiple of ALIGN
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | flag, 0o666)
    except OSError as err:
        if err.errno == errno.EINVAL:
            return False
        raise
    try:
        with memoryview(buf) as view:
            done = 0
            while done < padded:
                done += os.write(fd, view[done:padded])
        os.ftruncate(fd, size)  # the padding after the data goes
    except OSError as err:
        os.close(fd)
        if err.errno == errno.EINVAL:
            os.unlink(path)
            return False
        raise
    os.close(fd)
    return True

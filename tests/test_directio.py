"""Large write-once files past the page cache (`geoclass.directio`): the same bytes as a
plain write, on which file systems, and the fallback where direct I/O is refused."""

import errno
import os

import numpy as np
import pytest

from geoclass import directio


@pytest.fixture
def small_threshold(monkeypatch):
    monkeypatch.setattr(directio, "DIRECT_MIN", 1)


def _write(path, data) -> None:
    """`data` written as the file `path` the way a chunk is: from an aligned buffer."""
    buf, size = directio.in_buffer(data)
    try:
        directio.write_buffer(path, buf, size)
    finally:
        directio.give_back(buf)


def _direct_here(path) -> bool:
    return directio.direct_allowed(path) and hasattr(os, "O_DIRECT")


@pytest.mark.parametrize("size", [1, 511, 4095, 4096, 4097, 3 * 4096 + 17, 2**20 + 3])
def test_the_file_holds_exactly_the_bytes(tmp_path, small_threshold, size):
    data = np.random.default_rng(size).integers(0, 256, size, np.uint8).tobytes()
    path = tmp_path / "chunk"
    path.write_bytes(b"x" * (size + 9000))  # replaced whole, not overwritten in place
    _write(path, data)
    assert path.read_bytes() == data
    assert path.stat().st_size == size


def test_a_shorter_file_after_a_longer_one_in_the_same_thread(tmp_path, small_threshold):
    # the process's aligned buffer is reused: nothing of the longer file may leak into the next
    long, short = b"a" * 10000, b"b" * 5000
    _write(tmp_path / "long", long)
    _write(tmp_path / "short", short)
    assert (tmp_path / "short").read_bytes() == short
    assert (tmp_path / "long").read_bytes() == long


def test_big_files_on_a_local_disk_take_the_direct_path(tmp_path, monkeypatch):
    if not _direct_here(tmp_path):
        pytest.skip("the temporary folder is not on a local disk file system")
    calls = []
    real = directio._write_direct
    monkeypatch.setattr(directio, "_write_direct",
                        lambda path, buf, size: calls.append(size) or real(path, buf, size))
    big = os.urandom(directio.DIRECT_MIN + 5)
    _write(tmp_path / "big", big)
    _write(tmp_path / "small", b"tiny")
    assert calls == [len(big)]  # the small file went the usual way
    assert (tmp_path / "big").read_bytes() == big
    assert (tmp_path / "small").read_bytes() == b"tiny"


def test_refused_direct_io_falls_back_to_a_plain_write(tmp_path, small_threshold, monkeypatch):
    if not hasattr(os, "O_DIRECT"):
        pytest.skip("no O_DIRECT on this system")
    monkeypatch.setattr(directio, "direct_allowed", lambda path: True)
    real_open = os.open

    def refuse_direct(path, flags, *args):
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refuse_direct)
    data = os.urandom(10000)
    _write(tmp_path / "f", data)
    assert (tmp_path / "f").read_bytes() == data


def test_other_write_errors_are_not_hidden(tmp_path, small_threshold, monkeypatch):
    monkeypatch.setattr(directio, "direct_allowed", lambda path: True)
    with pytest.raises(OSError):
        _write(tmp_path / "no such folder" / "f", b"x" * 10000)


def test_which_file_systems_allow_direct_io(monkeypatch):
    mounts = (("/data/my disk", "xfs"), ("/data", "nfs4"), ("/dev/shm", "tmpfs"),
              ("/", "ext4"))
    monkeypatch.setattr(directio, "_mounts", lambda: mounts)
    assert directio._fs_type("/work/x") == "ext4"
    assert directio._fs_type("/data") == "nfs4"
    assert directio._fs_type("/data/my disk/cubes") == "xfs"
    assert directio._fs_type("/data/my diskette") == "nfs4"  # a prefix of the name only
    assert directio._fs_type("/dev/shm/a") == "tmpfs"
    assert {t for _, t in mounts if t in directio.DIRECT_FS} == {"xfs", "ext4"}


def test_mount_points_are_read_with_their_escapes():
    points = [p for p, _ in directio._mounts()]
    assert "/" in points or not points  # Linux lists the root; elsewhere nothing
    assert all("\\040" not in p for p in points)


def test_buffers_are_dropped_after_a_dataset_is_written(tmp_path, small_threshold):
    directio.release_buffers()
    _write(tmp_path / "a", b"x" * 10000)
    if not _direct_here(tmp_path):
        pytest.skip("the temporary folder is not on a local disk file system")
    assert directio.release_buffers() == 12288  # 10000 bytes in whole 4 KiB blocks
    assert directio.release_buffers() == 0


def test_a_cube_write_leaves_no_buffer_on_the_workers(tmp_path, small_threshold):
    import dask.array as da
    import xarray as xr

    from geoclass import lazy
    from geoclass.cluster import dask_client

    data = np.random.default_rng(0).integers(0, 2**15, (4, 256, 256), np.int16)
    ds = xr.Dataset({"obs": (("t", "y", "x"), da.from_array(data, chunks=(4, 128, 128)))})
    with dask_client(workers=1, threads_per_worker=2, dashboard_address="none") as client:
        client.run(lambda: setattr(directio, "DIRECT_MIN", 1))
        lazy.write_dataset(ds, tmp_path / "c.zarr", "writing")
        workers = client.scheduler_info()["workers"]
        assert client.run(directio.release_buffers) == dict.fromkeys(workers, 0)
        back = lazy.open_zarr(tmp_path / "c.zarr")["obs"].values
    np.testing.assert_array_equal(back, data)


# --- written behind ---------------------------------------------------------------------------


@pytest.fixture
def writers(monkeypatch):
    """A fresh set of writer threads for one task thread (room for one chunk)."""
    behind = directio._Behind(task_threads=1)
    monkeypatch.setattr(directio, "_BEHIND", behind)
    yield behind
    behind.executor.shutdown(wait=True)


def test_chunks_written_behind_are_whole_once_settled(tmp_path, small_threshold, writers):
    chunks = {tmp_path / f"c{i}": os.urandom(5000 + 4096 * i) for i in range(6)}
    for path, data in chunks.items():
        directio.write_behind(path, *directio.in_buffer(data))
    directio.settle(tmp_path)
    assert writers.pending == 0
    assert {path: path.read_bytes() for path in chunks} == chunks


def test_a_failed_write_behind_is_raised_by_the_settle_of_its_folder(tmp_path, writers):
    mine, other = tmp_path / "mine.zarr", tmp_path / "other.zarr"
    directio.write_behind(mine / "no such folder" / "0.0", *directio.in_buffer(b"x" * 100))
    directio.write_behind(other / "no such folder" / "0.0", *directio.in_buffer(b"y" * 100))
    assert directio.settle(tmp_path / "third.zarr") >= 0  # not its failures
    with pytest.raises(FileNotFoundError):
        directio.settle(mine)
    directio.settle(mine)  # raised once
    directio.settle(other, raise_errors=False)  # forgotten
    directio.settle(other)
    assert writers.failed == []


def test_a_task_waits_for_room_before_handing_a_chunk_over(tmp_path, monkeypatch, writers):
    import threading

    release, started = threading.Event(), threading.Event()
    real = directio.write_buffer

    def slow(path, buf, size):
        started.set()
        release.wait(10)
        real(path, buf, size)

    monkeypatch.setattr(directio, "write_buffer", slow)
    directio.write_behind(tmp_path / "a", *directio.in_buffer(b"a" * 10))  # the only room
    assert started.wait(10)
    second = threading.Thread(target=directio.write_behind,
                              args=(tmp_path / "b", *directio.in_buffer(b"b" * 10)))
    second.start()
    second.join(0.3)
    assert second.is_alive()  # one chunk per task thread waits: memory stays chunk-bound
    release.set()
    second.join(10)
    directio.settle(tmp_path)
    assert (tmp_path / "a").read_bytes() == b"a" * 10
    assert (tmp_path / "b").read_bytes() == b"b" * 10


def test_a_chunk_lost_before_it_was_written_fails_the_dataset(tmp_path, monkeypatch, writers):
    import dask.array as da
    import xarray as xr

    from geoclass import lazy
    from geoclass.errors import ClusterError

    real_buffer = directio.write_buffer

    # what a worker lost after its task reported the bytes leaves
    monkeypatch.setattr(directio, "write_buffer", lambda path, buf, size:
                        path.name == "1.0.1" or real_buffer(path, buf, size))
    data = np.arange(4 * 64 * 64, dtype=np.int16).reshape(4, 64, 64)
    ds = xr.Dataset({"obs": (("t", "y", "x"), da.from_array(data, chunks=(2, 32, 32)))})
    with pytest.raises(ClusterError, match=r"1 stored chunks were not written whole.*1\.0\.1"):
        lazy.write_dataset(ds, tmp_path / "c.zarr", "writing")
    assert not (tmp_path / "c.zarr").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no half-written folder left


def test_a_failed_block_is_the_error_reported_and_nothing_is_left(tmp_path, writers):
    import dask.array as da
    import xarray as xr

    from geoclass import lazy

    def block(x, block_info=None):
        if block_info[None]["chunk-location"] == (1, 1, 0):
            raise ValueError("block (1, 1, 0) could not be read")
        return x

    data = da.from_array(np.ones((4, 64, 64), np.int16), chunks=(2, 32, 32))
    ds = xr.Dataset({"obs": (("t", "y", "x"), data.map_blocks(block, dtype=np.int16))})
    with pytest.raises(ValueError, match=r"block \(1, 1, 0\) could not be read"):
        lazy.write_dataset(ds, tmp_path / "c.zarr", "writing")
    assert writers.pending == 0
    assert list(tmp_path.iterdir()) == []

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


def _direct_here(path) -> bool:
    return directio.direct_allowed(path) and hasattr(os, "O_DIRECT")


@pytest.mark.parametrize("size", [1, 511, 4095, 4096, 4097, 3 * 4096 + 17, 2**20 + 3])
def test_the_file_holds_exactly_the_bytes(tmp_path, small_threshold, size):
    data = np.random.default_rng(size).integers(0, 256, size, np.uint8).tobytes()
    path = tmp_path / "chunk"
    path.write_bytes(b"x" * (size + 9000))  # replaced whole, not overwritten in place
    directio.write_file(path, data)
    assert path.read_bytes() == data
    assert path.stat().st_size == size


def test_a_shorter_file_after_a_longer_one_in_the_same_thread(tmp_path, small_threshold):
    # the thread's aligned buffer is reused: nothing of the longer file may leak into the next
    long, short = b"a" * 10000, b"b" * 5000
    directio.write_file(tmp_path / "long", long)
    directio.write_file(tmp_path / "short", short)
    assert (tmp_path / "short").read_bytes() == short
    assert (tmp_path / "long").read_bytes() == long


def test_big_files_on_a_local_disk_take_the_direct_path(tmp_path, monkeypatch):
    if not _direct_here(tmp_path):
        pytest.skip("the temporary folder is not on a local disk file system")
    calls = []
    real = directio._write_direct
    monkeypatch.setattr(directio, "_write_direct",
                        lambda path, data: calls.append(len(data)) or real(path, data))
    big = os.urandom(directio.DIRECT_MIN + 5)
    directio.write_file(tmp_path / "big", big)
    directio.write_file(tmp_path / "small", b"tiny")
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
    directio.write_file(tmp_path / "f", data)
    assert (tmp_path / "f").read_bytes() == data


def test_other_write_errors_are_not_hidden(tmp_path, small_threshold, monkeypatch):
    monkeypatch.setattr(directio, "direct_allowed", lambda path: True)
    with pytest.raises(OSError):
        directio.write_file(tmp_path / "no such folder" / "f", b"x" * 10000)


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
    directio.write_file(tmp_path / "a", b"x" * 10000)
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


def test_buffers_are_released_only_after_writes_that_may_take_the_direct_path(tmp_path):
    from geoclass import storedchunks

    big = (directio.DIRECT_MIN // 2 // 64 // 64) + 1  # int16 chunks of just over DIRECT_MIN
    cube = storedchunks.ChunkSpec(np.dtype("<i2"), (big, 64, 64), 0, ".", None, ())
    small = storedchunks.ChunkSpec(np.dtype("u1"), (256, 256), 0, ".", None, ())
    assert storedchunks.may_write_direct(tmp_path / "c.zarr" / "obs", cube) is \
        _direct_here(tmp_path)
    assert not storedchunks.may_write_direct(tmp_path / "m.zarr" / "map", small)
    assert not storedchunks.may_write_direct("s3://bucket/c.zarr/obs", cube)  # never direct

"""The process's pool of open rasters (`geoclass.io.handles`): a dataset serves one thread at
a time, goes back for the next window of any thread, and the oldest are closed beyond the
capacity; a changed file is opened again."""

import threading

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

from geoclass.io import handles


def _tif(path, value: int):
    with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=1, dtype="int16",
                       crs="EPSG:32631", transform=from_origin(0, 80, 10, 10)) as dst:
        dst.write(np.full((1, 8, 8), value, np.int16))
    return str(path)


@pytest.fixture
def pool(monkeypatch):
    handles.close_all()
    opened = []
    real = rasterio.open

    def counting(path, *args, **kwargs):
        if not args and "mode" not in kwargs:  # opened for reading
            opened.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(handles.rasterio, "open", counting)
    yield opened
    handles.close_all()


def test_a_dataset_goes_back_for_another_thread(tmp_path, pool):
    path = _tif(tmp_path / "a.tif", 7)
    with handles.open_raster(path) as src:
        first = src
    seen = []

    def read():
        with handles.open_raster(path) as src:
            seen.append((src, int(src.read(1)[0, 0])))

    thread = threading.Thread(target=read)
    thread.start()
    thread.join()
    assert seen == [(first, 7)]  # the other thread's window used the same open dataset
    assert pool == [path]


def test_threads_reading_at_once_each_have_their_own_dataset(tmp_path, pool):
    path = _tif(tmp_path / "a.tif", 3)
    inside, leave = threading.Barrier(3), threading.Event()
    used = []

    def read():
        with handles.open_raster(path) as src:
            used.append(src)
            inside.wait(10)
            leave.wait(10)
            assert int(src.read(1)[0, 0]) == 3

    threads = [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    inside.wait(10)  # both hold a dataset now
    leave.set()
    for t in threads:
        t.join()
    assert used[0] is not used[1]
    assert pool == [path, path]
    assert handles.close_all() == 2  # both went back


def test_the_oldest_are_closed_beyond_the_capacity_and_a_changed_file_is_reopened(
        tmp_path, pool, monkeypatch):
    monkeypatch.setattr(handles, "CAPACITY", 2)
    paths = [_tif(tmp_path / f"{i}.tif", i) for i in range(3)]
    kept = []
    for path in paths:
        with handles.open_raster(path) as src:
            kept.append(src)
    assert [src.closed for src in kept] == [True, False, False]
    with handles.open_raster(paths[1]) as src:
        assert src is kept[1]
    _tif(tmp_path / "1.tif", 42)  # rewritten: another size or modification time
    with handles.open_raster(paths[1]) as src:
        assert int(src.read(1)[0, 0]) == 42
    assert pool == [*paths, paths[1]]


def test_neighbouring_windows_start_reading_at_dates_far_apart():
    from rasterio.windows import Window

    from geoclass.grid import TileGrid
    from geoclass.io.sensors.base import _first_date

    grid = TileGrid("T", CRS.from_epsg(32631), from_origin(0, 20480, 10, 10), 2048, 2048, 512)
    windows = [Window(c, r, 512, 512) for r in range(0, 2048, 512) for c in range(0, 2048, 512)]
    starts = [_first_date(grid, w, 24) for w in windows]
    assert all(0 <= s < 24 for s in starts)
    apart = [min(abs(a - b), 24 - abs(a - b)) for a, b in zip(starts, starts[1:])]
    assert min(apart) >= 6  # two threads on neighbouring windows read other dates' files
    assert _first_date(grid, windows[3], 1) == 0 and _first_date(grid, windows[3], 0) == 0

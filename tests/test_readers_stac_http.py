"""A STAC catalog and its COGs served over HTTP by a local server with byte ranges, as object
stores and CDNs serve them (tests/range_server.py, in its own process): the reader follows
the catalog's links over HTTP, GDAL reads only the byte ranges of the blocks it needs, and
the values are those of the files on disk."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from rasterio.windows import Window

from geoclass import fs
from geoclass.config import StacOptions
from geoclass.io.sensors.stac import read_stac
from geoclass.testing.layouts import STAC_CONFIG
from geoclass.views.cube import open_series

from .conftest import make_scene
from .servers import free_port, serving

OPTIONS = StacOptions.model_validate(STAC_CONFIG)
pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    """One tile of 512 x 512 px (10 m bands in 4 blocks of 256), 3 dates, as STAC."""
    return make_scene(tmp_path_factory.mktemp("stachttp"), tiles=1, size=512, dates=3,
                      format="stac")


class Served:
    """What the server sent, from its log: {path: bytes} and the paths sent by ranges."""

    def __init__(self, log: Path):
        self.log = log

    def clear(self) -> None:
        self.log.write_text("")

    def lines(self) -> list[tuple[str, str, int]]:
        return [(p, kind, int(n)) for p, kind, n, *_ in
                (line.split() for line in self.log.read_text().splitlines())]

    @property
    def served(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for path, _, size in self.lines():
            out[path] = out.get(path, 0) + size
        return out

    @property
    def ranges(self) -> list[str]:
        return [path for path, kind, _ in self.lines() if kind == "range"]


@pytest.fixture(scope="module")
def server(scene, tmp_path_factory):
    """tests/range_server.py in its own process on a free port of 127.0.0.1, serving the
    scene's folder."""
    log = tmp_path_factory.mktemp("served") / "served.log"
    log.write_text("")
    port = free_port()
    command = [sys.executable, str(Path(__file__).with_name("range_server.py")),
               str(scene.parent), str(port), str(log)]
    with serving(command, f"http://127.0.0.1:{port}") as url:
        yield url, Served(log)


def test_the_handler_serves_byte_ranges(server, scene):
    url, handler = server
    path = next((scene.parent / "stac").rglob("*.tif"))
    rel = path.relative_to(scene.parent).as_posix()
    handler.clear()
    with fs.open(f"{url}/{rel}", "rb", block_size=64) as f:
        f.seek(10)
        assert f.read(20) == path.read_bytes()[10:30]
    assert handler.ranges == [f"/{rel}"]
    assert handler.served[f"/{rel}"] < path.stat().st_size


def test_a_catalog_over_http_gives_the_series_of_the_files(server, scene):
    url, handler = server
    local = read_stac(scene.parent / "stac" / "catalog.json", "T31TCJ", OPTIONS, chunk=64)
    remote = read_stac(f"{url}/stac/catalog.json", "T31TCJ", OPTIONS, chunk=64)
    assert remote.dates == local.dates and remote.grid == local.grid
    assert all(ref.path.startswith(f"{url}/stac/") for a in remote.acquisitions
               for ref in a.bands + a.masks)
    assert f"{url}/stac/catalog.json" in remote.extra_files
    handler.clear()
    # one 64 x 64 block: only the COG blocks under it are fetched, by byte ranges
    block = open_series(remote, remote.grid)[..., :64, :64].values
    tifs = {p: n for p, n in handler.served.items() if p.endswith(".tif")}
    sizes = sum((scene.parent / p.lstrip("/")).stat().st_size for p in tifs)
    assert handler.ranges and tifs
    assert sum(tifs.values()) < 0.6 * sizes, (sum(tifs.values()), sizes)
    expected = open_series(local, local.grid)[..., :64, :64].values
    np.testing.assert_array_equal(block, expected)


def test_a_raster_over_http_is_read_by_window(server, scene):
    url, handler = server
    path = sorted((scene.parent / "stac").rglob("blue.tif"))[0]
    rel = path.relative_to(scene.parent).as_posix()
    fs.forget_gdal_cache(f"{url}/{rel}")  # read by the test before: GDAL keeps its blocks
    handler.clear()
    with fs.open_raster(f"{url}/{rel}") as src:
        part = src.read(1, window=Window(0, 0, 32, 32))
    with fs.open_raster(path) as src:
        np.testing.assert_array_equal(part, src.read(1, window=Window(0, 0, 32, 32)))
    assert set(handler.served) == {f"/{rel}"} and set(handler.ranges) == {f"/{rel}"}
    assert handler.served[f"/{rel}"] < os.path.getsize(path) / 2

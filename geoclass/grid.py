"""The tile grid: one value (CRS, transform, shape, chunking) that every stage passes around."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window


@dataclass(frozen=True)
class TileGrid:
    """Where the pixels of one tile are: `height` x `width` pixels of `transform` in `crs`."""

    name: str
    crs: CRS
    transform: Affine
    width: int
    height: int
    chunk: int = 1024

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def resolution(self) -> float:
        return abs(self.transform.a)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the grid's CRS."""
        left, top = self.transform @ (0, 0)
        right, bottom = self.transform @ (self.width, self.height)
        return (min(left, right), min(bottom, top), max(left, right), max(bottom, top))

    @property
    def chunks(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Dask chunks of the (y, x) plane."""
        return (_split(self.height, self.chunk), _split(self.width, self.chunk))

    def coords(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre coordinates (y, x)."""
        x = self.transform.c + self.transform.a * (np.arange(self.width) + 0.5)
        y = self.transform.f + self.transform.e * (np.arange(self.height) + 0.5)
        return y, x

    def windows(self) -> Iterator[Window]:
        """The chunk windows, row by row."""
        for _, window in self.block_windows():
            yield window

    def block_windows(self) -> Iterator[tuple[tuple[int, int], Window]]:
        """((row, column) index of each chunk, its window), row by row: the same blocks as a
        dask array chunked with `chunks`."""
        return block_windows(self.chunks)

    def window_transform(self, window: Window) -> Affine:
        return self.transform @ Affine.translation(window.col_off, window.row_off)

    def with_resolution(self, resolution: float) -> TileGrid:
        """The same footprint at another pixel size (the shape is rounded up)."""
        left, bottom, right, top = self.bounds
        width = int(np.ceil(round((right - left) / resolution, 6)))
        height = int(np.ceil(round((top - bottom) / resolution, 6)))
        transform = Affine(resolution, 0, left, 0, -resolution, top)
        return TileGrid(self.name, self.crs, transform, width, height, self.chunk)


def crs_label(crs: CRS) -> str:
    """A short name of a CRS for messages: its EPSG code, else its projection's name."""
    epsg = crs.to_epsg()
    if epsg:
        return f"EPSG:{epsg}"
    from pyproj import CRS as ProjCRS

    proj = ProjCRS.from_user_input(crs.to_wkt())
    method = proj.coordinate_operation.method_name if proj.coordinate_operation else proj.name
    return f"{method} (no EPSG code)"


def block_windows(chunks) -> Iterator[tuple[tuple[int, int], Window]]:
    """((row, column) block index, window) of every block of a (y, x) chunking, row by row."""
    row = 0
    for r, h in enumerate(chunks[0]):
        col = 0
        for c, w in enumerate(chunks[1]):
            yield (r, c), Window(col, row, w, h)
            col += w
        row += h


def north_up_problem(transform: Affine, source: str) -> str | None:
    """Why a raster's geotransform cannot define a tile grid (rotated, south-up, or
    non-square pixels), with the fix; None when it can."""
    if transform.b != 0 or transform.d != 0:
        return (f"{source}: rotated geotransform {tuple(transform)[:6]}; geoclass needs "
                "north-up rasters: warp it first (gdalwarp in.tif out.tif)")
    if transform.e > 0 or transform.a < 0:
        return (f"{source}: south-up or east-to-west geotransform (pixel size "
                f"{transform.a}, {transform.e}); geoclass needs north-up rasters: warp it "
                "first (gdalwarp in.tif out.tif)")
    if not np.isclose(transform.a, -transform.e, rtol=1e-9, atol=0):
        return (f"{source}: non-square pixels ({transform.a} x {-transform.e}); set "
                "chain.spatial_resolution so that the tile grid has square pixels")
    return None


def _split(size: int, chunk: int) -> tuple[int, ...]:
    full, rest = divmod(size, chunk)
    return (chunk,) * full + ((rest,) if rest else ())


def grid_of_raster(path, name: str, chunk: int = 1024) -> TileGrid:
    """The grid of a raster file (InputError naming the file if it is not north-up with
    square pixels)."""
    import rasterio

    from geoclass.errors import InputError

    with rasterio.open(path) as src:
        problem = north_up_problem(src.transform, str(path))
        if problem:
            raise InputError([problem])
        return TileGrid(name, src.crs, src.transform, src.width, src.height, chunk)

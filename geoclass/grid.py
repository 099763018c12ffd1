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
        row = 0
        for h in self.chunks[0]:
            col = 0
            for w in self.chunks[1]:
                yield Window(col, row, w, h)
                col += w
            row += h

    def window_transform(self, window: Window) -> Affine:
        return self.transform @ Affine.translation(window.col_off, window.row_off)

    def with_resolution(self, resolution: float) -> TileGrid:
        """The same footprint at another pixel size (the shape is rounded up)."""
        left, bottom, right, top = self.bounds
        width = int(np.ceil(round((right - left) / resolution, 6)))
        height = int(np.ceil(round((top - bottom) / resolution, 6)))
        transform = Affine(resolution, 0, left, 0, -resolution, top)
        return TileGrid(self.name, self.crs, transform, width, height, self.chunk)


def _split(size: int, chunk: int) -> tuple[int, ...]:
    full, rest = divmod(size, chunk)
    return (chunk,) * full + ((rest,) if rest else ())


def grid_of_raster(path, name: str, chunk: int = 1024) -> TileGrid:
    """The grid of a raster file."""
    import rasterio

    with rasterio.open(path) as src:
        return TileGrid(name, src.crs, src.transform, src.width, src.height, chunk)

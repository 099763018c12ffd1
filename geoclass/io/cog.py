"""Cloud-Optimized GeoTIFFs streamed from a zarr mosaic: windows are copied into a tiled
GeoTIFF, which GDAL's COG driver then rewrites with overviews (both stream by blocks).

No library writes a COG window by window from a zarr store with a palette and band
descriptions (rio-cogeo and odc-geo start from a dataset or an in-memory array), so the two
GDAL passes are driven here."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil

from geoclass.atomic import atomic_output
from geoclass.grid import TileGrid

STAGING_BLOCK = 512
# GDAL's block cache defaults to 5 % of the RAM and fills up with the raster being written:
# bound it so that writing a country-size COG does not grow with the raster.
GDAL_CACHE_MB = 256


def write_cog(
    path: Path, source, grid: TileGrid, *, nodata: float | None, dtype=None,
    colormap: dict[int, tuple[int, int, int]] | None = None,
    descriptions: list[str] | None = None, scale: float | None = None,
    overview_resampling: str = "nearest", metadata: dict | None = None,
) -> Path:
    """Write `source` ((bands, y, x) or (y, x), sliceable like a zarr array) as a COG at
    `path`, atomically. `colormap` (value -> RGB) is embedded as the palette of band 1."""
    bands = source.shape[0] if len(source.shape) == 3 else 1
    dtype = np.dtype(dtype or source.dtype)
    profile = {"driver": "GTiff", "width": grid.width, "height": grid.height, "count": bands,
               "dtype": dtype.name, "crs": grid.crs, "transform": grid.transform,
               "nodata": nodata, "tiled": True, "blockxsize": STAGING_BLOCK,
               "blockysize": STAGING_BLOCK, "compress": "deflate", "BIGTIFF": "IF_SAFER"}
    with atomic_output(path) as tmp, rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        staging = tmp.with_name(tmp.name + ".staging.tif")
        try:
            with rasterio.open(staging, "w", **profile) as dst:
                for window in grid.windows():
                    rows, cols = window.toslices()
                    block = np.asarray(source[..., rows, cols]).astype(dtype, copy=False)
                    dst.write(block.reshape(bands, *block.shape[-2:]), window=window)
                _describe(dst, colormap, descriptions, scale, metadata)
            rasterio.shutil.copy(staging, tmp, driver="COG", COMPRESS="DEFLATE",
                                 BLOCKSIZE=STAGING_BLOCK, BIGTIFF="IF_SAFER",
                                 OVERVIEW_RESAMPLING=overview_resampling.upper(),
                                 NUM_THREADS="ALL_CPUS")
        finally:
            if staging.exists():
                os.remove(staging)
    return path


def _describe(dst, colormap, descriptions, scale, metadata) -> None:
    if colormap:
        dst.write_colormap(1, {int(k): (*v, 255) for k, v in colormap.items()})
    for band, text in enumerate(descriptions or [], start=1):
        dst.set_band_description(band, text)
    if scale is not None:
        dst.scales = (scale,) * dst.count
    if metadata:
        dst.update_tags(**{k: str(v) for k, v in metadata.items()})

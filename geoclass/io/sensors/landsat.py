"""Landsat-8 in THEIA's current L2A layout and in its old N2A layout.

Current layout (`read_landsat8`, `chain.l8_path`):
`LANDSAT8-OLITIRS-XS_<YYYYMMDD>-<HHMMSS>-<mmm>_L2A_<TILE>_<...>/` with one `*_FRE_B<n>.tif` per
band (B1 ... B7, reflectance x 10000, -10000 = no data) and `MASKS/*_CLM_XS.tif` (clouds and
shadows), `*_EDG_XS.tif` (edges), `*_SAT_XS.tif` (saturation), non-zero = invalid.

Old layout (`read_landsat8_old`, `chain.l8_path_old`): one 7-band
`*_ORTHO_SURF_CORR_PENTE_*.TIF` per date plus `MASK/*_NUA.TIF` (clouds: non-zero), `*_SAT.TIF`
(saturation: non-zero) and `*_DIV.TIF` (bit 0: no data). `*_NODATA.TIF` is not used: its value
convention differs between products (the two real crops in iota2's test data hold 1 and 0 over
the same valid pixels), while DIV's no-data bit is consistent."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from geoclass import fs
from geoclass.errors import InputError
from geoclass.grid import grid_of_raster
from geoclass.io.bands import L8_BANDS, L8_INDEX_BANDS
from geoclass.io.sensors.base import Acquisition, BandRef, MaskRef, SensorSeries, left_out

__all__ = ["L8_BANDS", "L8_INDEX_BANDS", "read_landsat8", "read_landsat8_old"]
_PRODUCT = re.compile(r"^LANDSAT8_OLITIRS_XS_(\d{8})_N2A_")
_MASKS = (("NUA", "nonzero"), ("SAT", "nonzero"), ("DIV", "bit0"))
_THEIA_PRODUCT = re.compile(r"^LANDSAT8-OLITIRS-XS_(\d{8})-\d{6}-\d{3}_L2A_T?(\w+?)_")


def _acquisition(product: Path, date: dt.date) -> Acquisition:
    image = sorted(product.glob("*_ORTHO_SURF_CORR_PENTE_*.TIF"))
    if not image:
        raise InputError([f"{product}: no *_ORTHO_SURF_CORR_PENTE_*.TIF reflectance file"])
    bands = tuple(BandRef(str(image[0]), i + 1) for i in range(len(L8_BANDS)))
    masks = []
    for kind, rule in _MASKS:
        found = sorted(product.glob(f"MASK/*_{kind}.TIF"))
        if found:
            masks.append(MaskRef(str(found[0]), rule))
    return Acquisition(date, product.name, bands, tuple(masks))


def read_landsat8_old(root: Path, tile: str, chunk: int = 1024) -> SensorSeries:
    """Find every old-format Landsat-8 product of `tile` under `root/<tile>/`."""
    tile_dir = fs.as_path(root) / tile
    if not tile_dir.is_dir():
        raise InputError([f"no folder for tile {tile} in chain.l8_path_old: {tile_dir}"])
    products = []
    for p in sorted(tile_dir.iterdir()):
        match = _PRODUCT.match(p.name)
        if p.is_dir() and match:
            products.append((dt.datetime.strptime(match.group(1), "%Y%m%d").date(), p))
    if not products:
        raise InputError([f"{tile_dir}: no Landsat-8 N2A product folder (LANDSAT8_OLITIRS_XS_*)"])
    acquisitions = tuple(_acquisition(p, date) for date, p in sorted(products))
    return SensorSeries(
        sensor="landsat_8_old",
        prefix="L8_",
        tile=tile,
        band_names=L8_BANDS,
        acquisitions=acquisitions,
        grid=grid_of_raster(acquisitions[0].bands[0].path, tile, chunk),
        scale=1e-3,
        index_bands=L8_INDEX_BANDS,
        ignored=left_out(tile_dir, {p.name for _, p in products}, "Landsat-8 N2A"),
    )


def _theia_acquisition(product: Path, date: dt.date) -> Acquisition:
    bands, problems = [], []
    for band in L8_BANDS:
        found = sorted(product.glob(f"*_FRE_{band}.tif"))
        if found:
            bands.append(BandRef(str(found[0])))
        else:
            problems.append(f"{product}: no *_FRE_{band}.tif")
    masks = []
    for kind in ("CLM", "EDG", "SAT"):
        found = sorted(product.glob(f"MASKS/*_{kind}_XS.tif"))
        if found:
            masks.append(MaskRef(str(found[0]), "nonzero"))
        elif kind != "SAT":
            problems.append(f"{product}: no MASKS/*_{kind}_XS.tif")
    if problems:
        raise InputError(problems)
    return Acquisition(date, product.name, tuple(bands), tuple(masks))


def read_landsat8(root: Path, tile: str, chunk: int = 1024) -> SensorSeries:
    """Find every THEIA L2A Landsat-8 product of `tile` under `root/<tile>/`."""
    tile_dir = fs.as_path(root) / tile
    if not tile_dir.is_dir():
        raise InputError([f"no folder for tile {tile} in chain.l8_path: {tile_dir}"])
    products = []
    for p in sorted(tile_dir.iterdir()):
        match = _THEIA_PRODUCT.match(p.name)
        if p.is_dir() and match:
            products.append((dt.datetime.strptime(match.group(1), "%Y%m%d").date(), p))
    if not products:
        raise InputError([f"{tile_dir}: no THEIA Landsat-8 L2A product folder "
                          "(LANDSAT8-OLITIRS-XS_*_L2A_*)"])
    acquisitions = tuple(_theia_acquisition(p, date) for date, p in sorted(products))
    return SensorSeries(
        sensor="landsat_8",
        prefix="L8_",
        tile=tile,
        band_names=L8_BANDS,
        acquisitions=acquisitions,
        grid=grid_of_raster(acquisitions[0].bands[0].path, tile, chunk),
        scale=1e-4,
        nodata=-10000,
        index_bands=L8_INDEX_BANDS,
        ignored=left_out(tile_dir, {p.name for _, p in products}, "THEIA Landsat-8 L2A"),
    )

"""THEIA/MUSCATE Sentinel-2 L2A products (`SENTINEL2X_YYYYMMDD-HHMMSS-mmm_L2A_TXXXXX_C_V*`)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from geoclass import fs
from geoclass.errors import InputError
from geoclass.grid import TileGrid, grid_of_raster
from geoclass.io.bands import S2_BANDS, S2_INDEX_BANDS
from geoclass.io.sensors.base import Acquisition, BandRef, MaskRef, SensorSeries, left_out

__all__ = ["S2_BANDS", "S2_INDEX_BANDS", "read_theia_s2"]
_PRODUCT = re.compile(r"^SENTINEL2[ABCD]?_(\d{8})-\d{6}-\d{3}_L2A_T?(\w+?)_")


def _product_date(name: str) -> dt.date | None:
    match = _PRODUCT.match(name)
    return dt.datetime.strptime(match.group(1), "%Y%m%d").date() if match else None


def _band_refs(product: Path) -> tuple[BandRef, ...]:
    """Bands of one product: one `*_FRE_Bx.tif` per band, or the `*_FRE_STACK.tif` variant."""
    stack = sorted(product.glob("*_FRE_STACK.tif"))
    if stack:
        return tuple(BandRef(str(stack[0]), i + 1) for i in range(len(S2_BANDS)))
    refs, missing = [], []
    for band in S2_BANDS:
        found = sorted(product.glob(f"*_FRE_{band}.tif"))
        if found:
            refs.append(BandRef(str(found[0])))
        else:
            missing.append(band)
    if missing:
        raise InputError([f"{product}: no *_FRE_{b}.tif (nor *_FRE_STACK.tif)" for b in missing])
    return tuple(refs)


def _mask_refs(product: Path) -> tuple[MaskRef, ...]:
    """Cloud (CLM), edge (EDG) and, when present, saturation (SAT) masks, at 10 m (R1) or else
    20 m (R2); 0 means valid."""
    masks = []
    for kind in ("CLM", "EDG", "SAT"):
        found = sorted(product.glob(f"MASKS/*_{kind}_R1.tif")) or sorted(
            product.glob(f"MASKS/*_{kind}_R2.tif")
        )
        if found:
            masks.append(MaskRef(str(found[0]), "nonzero"))
        elif kind != "SAT":
            raise InputError([f"{product}: no MASKS/*_{kind}_R1.tif (nor _R2)"])
    return tuple(masks)


def read_theia_s2(root: Path, tile: str, chunk: int = 1024) -> SensorSeries:
    """Find every product of `tile` under `root/<tile>/` and describe it as a series."""
    tile_dir = fs.as_path(root) / tile
    if not tile_dir.is_dir():
        raise InputError([f"no folder for tile {tile} in chain.s2_path: {tile_dir} does not exist"])
    products = sorted(
        (date, p) for p in tile_dir.iterdir() if p.is_dir() and (date := _product_date(p.name))
    )
    if not products:
        raise InputError([f"{tile_dir}: no THEIA Sentinel-2 L2A product folder (SENTINEL2*_L2A_*)"])
    acquisitions = tuple(
        Acquisition(date, p.name, _band_refs(p), _mask_refs(p)) for date, p in products
    )
    first = acquisitions[0].bands[0]
    grid: TileGrid = grid_of_raster(first.path, tile, chunk)
    return SensorSeries(
        sensor="sentinel_2",
        prefix="",
        tile=tile,
        band_names=S2_BANDS,
        acquisitions=acquisitions,
        grid=grid,
        scale=1e-4,
        nodata=-10000,
        index_bands=S2_INDEX_BANDS,
        ignored=left_out(tile_dir, {p.name for _, p in products}, "THEIA Sentinel-2 L2A"),
    )

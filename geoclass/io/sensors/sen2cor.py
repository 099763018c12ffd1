"""Sen2Cor Sentinel-2 L2A products (ESA's SAFE layout):
`<root>/<TILE>/S2?_MSIL2A_<YYYYMMDDTHHMMSS>_Nxxxx_Rxxx_T<TILE>_<...>.SAFE/GRANULE/*/IMG_DATA/`
`R10m/*_B02_10m.jp2` (B02, B03, B04, B08), `R20m/*_B05_20m.jp2` (B05, B06, B07, B8A, B11, B12)
and `R20m/*_SCL_20m.jp2`.

Reflectance = (DN + BOA_ADD_OFFSET) / BOA_QUANTIFICATION_VALUE from the product's
`MTD_MSIL2A.xml` (0 and 10000 when absent: processing baselines before 04.00 have no offset),
DN 0 is no data, and the scene classes 0 (no data), 1 (saturated or defective), 3 (cloud
shadow), 8, 9 (cloud, medium and high probability) and 10 (thin cirrus) are invalid, as in
iota2. Band names are THEIA's (B2 ... B12, B8A), so the features of both readers match."""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from geoclass import fs
from geoclass.errors import InputError
from geoclass.grid import TileGrid, grid_of_raster
from geoclass.io.sensors.base import Acquisition, BandRef, MaskRef, SensorSeries, left_out
from geoclass.io.sensors.theia import S2_BANDS, S2_INDEX_BANDS

SCL_INVALID = (0, 1, 3, 8, 9, 10)
BANDS_10M = frozenset({"B2", "B3", "B4", "B8"})
# band_id of each band in the metadata's per-band lists (Spectral_Information_List order)
BAND_IDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
_PRODUCT = re.compile(
    r"^S2[A-D]_MSIL2A_(\d{8})T\d{6}_N\d{4}_R\d{3}_T?(\w{5})_\w+?(\.SAFE)?$", re.IGNORECASE)


def safe_band(band: str) -> str:
    """THEIA band name -> the SAFE file's (`B2` -> `B02`, `B8A` stays)."""
    return band if band == "B8A" or len(band) == 3 else f"B0{band[1:]}"


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def quantification(metadata: Path | None) -> tuple[float, dict[str, float]]:
    """BOA quantification value and additive offset per band from a product's metadata."""
    if metadata is None:
        return 10000.0, {}
    root = ET.parse(metadata).getroot()
    value, offsets, ids = 10000.0, {}, {}
    for element in root.iter():
        tag = _local(element.tag)
        if tag.endswith("BOA_QUANTIFICATION_VALUE") and element.text:
            value = float(element.text)
        elif tag == "BOA_ADD_OFFSET" and element.text:
            offsets[element.get("band_id")] = float(element.text)
        elif tag == "Spectral_Information" and element.get("physicalBand"):
            ids[element.get("bandId")] = element.get("physicalBand")
    named = {ids.get(k) or BAND_IDS[int(k)]: v for k, v in offsets.items()}
    return value, named


def _find(granule: Path, folder: str, name: str) -> Path | None:
    for ext in ("jp2", "tif"):
        found = sorted(granule.glob(f"IMG_DATA/{folder}/*_{name}.{ext}"))
        if found:
            return found[0]
    return None


def _acquisition(product: Path, date: dt.date) -> Acquisition:
    granules = sorted(p for p in (product / "GRANULE").glob("*") if p.is_dir())
    if not granules:
        raise InputError([f"{product}: no GRANULE/* folder"])
    granule = granules[0]
    metadata = next(iter(sorted(product.glob("MTD_MSIL2A.xml"))), None) or next(
        iter(sorted(product.glob("*MTD*L2A*.xml"))), None)
    value, offsets = quantification(metadata)
    refs, missing = [], []
    for band in S2_BANDS:
        res = "10m" if band in BANDS_10M else "20m"
        path = _find(granule, f"R{res}", f"{safe_band(band)}_{res}")
        if path is None:
            missing.append(f"{product}: no IMG_DATA/R{res}/*_{safe_band(band)}_{res}.jp2")
            continue
        refs.append(BandRef(str(path), 1, 1.0 / value, offsets.get(band, 0.0) / value))
    scl = _find(granule, "R20m", "SCL_20m")
    if scl is None:
        missing.append(f"{product}: no IMG_DATA/R20m/*_SCL_20m.jp2 (scene classification)")
    if missing:
        raise InputError(missing)
    return Acquisition(date, product.name, tuple(refs), (MaskRef(str(scl), SCL_INVALID),))


def _same_tile(a: str, b: str) -> bool:
    return a.upper().lstrip("T") == b.upper().lstrip("T")


def read_sen2cor(root: Path, tile: str, chunk: int = 1024) -> SensorSeries:
    """Find every Sen2Cor L2A product of `tile` under `root/<tile>/` (the 10 m grid of the
    first product's B02 is the sensor's grid)."""
    tile_dir = fs.as_path(root) / tile
    if not tile_dir.is_dir():
        raise InputError([f"no folder for tile {tile} in chain.s2_s2c_path: {tile_dir}"])
    products = []
    for p in sorted(tile_dir.iterdir()):
        match = _PRODUCT.match(p.name)
        if p.is_dir() and match and _same_tile(match.group(2), tile):
            products.append((dt.datetime.strptime(match.group(1), "%Y%m%d").date(), p))
    if not products:
        raise InputError([f"{tile_dir}: no Sen2Cor L2A product of {tile} (S2?_MSIL2A_*.SAFE)"])
    acquisitions = tuple(_acquisition(p, date) for date, p in sorted(products))
    metadata = [str(m) for _, p in products for m in p.glob("MTD_MSIL2A.xml")]
    grid: TileGrid = grid_of_raster(acquisitions[0].bands[0].path, tile, chunk)
    return SensorSeries(
        sensor="sentinel_2_s2c",
        prefix="",
        tile=tile,
        band_names=S2_BANDS,
        acquisitions=acquisitions,
        grid=grid,
        scale=1e-4,
        nodata=0,
        index_bands=S2_INDEX_BANDS,
        extra_files=tuple(metadata),
        ignored=left_out(tile_dir, {p.name for _, p in products}, "Sen2Cor L2A (.SAFE)"),
    )

"""A STAC catalog, collection or ItemCollection (`chain.stac_path`: a file, or a URL: https://,
s3://...) whose assets are files or objects (COGs are read by byte ranges), loaded lazily
onto the tile grid with odc-stac.

Items of a tile: those whose `s2:mgrs_tile`, `grid:code` (`MGRS-31TCJ`) or `mgrs:*` properties
name the tile, or, for items without such a property, whose footprint meets the tile grid.
`stac.bands` maps band names to asset keys; `stac.cloud_asset` names a classification asset
whose `invalid_values` are masked (Sen2Cor's SCL classes by default). Values: raw `nodata`
and values outside `valid_range` are masked, then `value * scale + offset`, with `scale` and
`offset` from the config or else each asset's `raster:bands`. Items of one (solar) day are one
observation."""

from __future__ import annotations

import datetime as dt
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlparse

import dask.array as da
import numpy as np
import odc.stac
import pystac
from rasterio.errors import NotGeoreferencedWarning

from geoclass import fs
from geoclass.errors import InputError
from geoclass.grid import TileGrid, grid_of_raster
from geoclass.io.sensors.base import (
    Acquisition,
    BandRef,
    Encoding,
    MaskRef,
    SensorSeries,
    encoding_of,
)
from geoclass.io.sensors.footprint import overlaps
from geoclass.lazy import map_yx

# odc-stac reprojects between in-memory arrays, which rasterio warns have no geotransform
warnings.filterwarnings("ignore", "Dataset has no geotransform", NotGeoreferencedWarning,
                        "rasterio")


@dataclass(frozen=True)
class StacSeries(SensorSeries):
    """A series whose pixels odc-stac loads from STAC items (one item dict per acquisition)."""

    items: tuple[dict, ...] = ()
    assets: tuple[str, ...] = ()
    cloud_asset: str | None = None


class FsspecStacIO(pystac.StacIO):
    """pystac's reads through fsspec: catalogs on object stores and HTTP servers alike."""

    def read_text(self, source, *args, **kwargs) -> str:
        href = source if isinstance(source, str) else source.get_absolute_href()
        return fs.as_path(href).read_text(encoding="utf-8")

    def write_text(self, dest, txt: str, *args, **kwargs) -> None:
        raise NotImplementedError("geoclass only reads STAC catalogs")


def _load_items(path: Path) -> list:
    path = fs.as_path(path)
    if not path.is_file():
        raise InputError([f"chain.stac_path: {path} does not exist"])
    io = FsspecStacIO()
    kind = json.loads(path.read_text()).get("type")
    if kind == "FeatureCollection":
        items = list(pystac.ItemCollection.from_file(str(path), stac_io=io))
    elif kind == "Feature":
        items = [pystac.Item.from_file(str(path), stac_io=io)]
    else:
        items = list(pystac.read_file(str(path), stac_io=io).get_items(recursive=True))
    for item in items:
        base = item.get_self_href() or str(path)
        for asset in item.assets.values():
            href = urlparse(asset.href)
            if fs.is_url(asset.href):
                continue
            if href.scheme == "file":
                asset.href = href.path
            elif fs.is_url(base):
                asset.href = urljoin(base, asset.href)
            elif not Path(href.path).is_absolute():
                asset.href = str((Path(base).parent / href.path).resolve())
    return items


def tile_code(properties: dict) -> str | None:
    """The MGRS tile an item names, without a leading `T` (`31TCJ`), if it names one."""
    if properties.get("s2:mgrs_tile"):
        return str(properties["s2:mgrs_tile"]).upper().lstrip("T")
    code = properties.get("grid:code")
    if code and str(code).upper().startswith("MGRS-"):
        return str(code)[5:].upper()
    parts = [properties.get(f"mgrs:{k}") for k in ("utm_zone", "latitude_band", "grid_square")]
    if all(parts):
        return f"{int(parts[0]):02d}{parts[1]}{parts[2]}".upper()
    return None


def solar_date(item) -> dt.date:
    """The item's date in local solar time (as odc-stac's `solar_day`)."""
    lon = 0.0 if item.bbox is None else (item.bbox[0] + item.bbox[2]) / 2
    return (item.datetime + dt.timedelta(hours=lon / 15)).date()


def _conversion(asset, options) -> tuple[float, float]:
    bands = asset.extra_fields.get("raster:bands") or [{}]
    scale = options.scale if options.scale is not None else bands[0].get("scale", 1.0)
    offset = options.offset if options.offset is not None else bands[0].get("offset", 0.0)
    return float(scale), float(offset)


def _local(item, key: str, problems: list[str]) -> str | None:
    asset = item.assets.get(key)
    if asset is None:
        problems.append(f"STAC item {item.id}: no asset '{key}'")
        return None
    if not fs.is_file(asset.href):
        problems.append(f"STAC item {item.id}: asset '{key}' is not a file: {asset.href}")
        return None
    return asset.href


def _acquisition(item, options, problems: list[str]) -> Acquisition | None:
    bands = []
    for key in options.bands.values():
        href = _local(item, key, problems)
        if href:
            bands.append(BandRef(href, 1, *_conversion(item.assets[key], options)))
    masks = ()
    if options.cloud_asset:
        href = _local(item, options.cloud_asset, problems)
        masks = (MaskRef(href, tuple(options.invalid_values)),) if href else ()
    if len(bands) < len(options.bands) or (options.cloud_asset and not masks):
        return None
    return Acquisition(solar_date(item), item.id, tuple(bands), masks)


def _of_tile(items: list, tile: str, grid: TileGrid | None, options) -> list:
    code = tile.upper().lstrip("T")
    named = [i for i in items if tile_code(i.properties) == code]
    unnamed = [i for i in items if tile_code(i.properties) is None]
    if unnamed and grid is not None:
        first = next(iter(options.bands.values()))
        named += [i for i in unnamed if first in i.assets
                  and fs.is_file(i.assets[first].href)
                  and overlaps(i.assets[first].href, grid)]
    elif unnamed and not named:
        raise InputError([f"STAC items without a tile property (s2:mgrs_tile, grid:code) can "
                          f"only be matched to tile {tile} by footprint: configure another "
                          "sensor to define the tile grid"])
    return named


def read_stac(
    path: Path, tile: str, options, grid: TileGrid | None = None, chunk: int = 1024
) -> StacSeries:
    """The STAC items of `tile` as a series (its own grid: the first item's first band)."""
    if not options.bands:
        raise InputError(["stac.bands is required with chain.stac_path ({name: asset key})"])
    items = _of_tile(_load_items(path), tile, grid, options)
    if not items:
        raise InputError([f"{path}: no STAC item for tile {tile} (by its tile property or "
                          "footprint)"])
    items.sort(key=lambda i: (solar_date(i), i.datetime, i.id))
    problems: list[str] = []
    pairs = [(i, a) for i in items if (a := _acquisition(i, options, problems))]
    if problems:
        raise InputError(problems)
    acquisitions = tuple(a for _, a in pairs)
    hrefs = {i.get_self_href() for i, _ in pairs} | {
        fs.url(path) if fs.is_url(path) else str(Path(path).resolve())}
    return StacSeries(
        sensor="stac",
        prefix=options.prefix,
        tile=tile,
        band_names=tuple(options.bands),
        acquisitions=acquisitions,
        grid=grid_of_raster(acquisitions[0].bands[0].path, tile, chunk),
        nodata=options.nodata,
        index_bands={k: v for k, v in options.index_bands.items() if v in options.bands},
        valid_range=tuple(options.valid_range) if options.valid_range else None,
        resampling=options.resampling,
        extra_files=tuple(sorted(h for h in hrefs if h and fs.is_file(h))),
        items=tuple(i.to_dict() for i, _ in pairs),
        assets=tuple(options.bands.values()),
        cloud_asset=options.cloud_asset,
    )


class _ByDate:
    """odc-stac group key: the acquisition date of each item (picklable)."""

    def __init__(self, dates: dict[str, dt.date]):
        self.dates = dates

    def __call__(self, item, parsed, index) -> dt.date:
        return self.dates[item.id]


def mask_block(raw, cloud, nodata, valid_range, invalid_values, sentinel):
    """Raw (time, band, y, x) values and the cloud asset (time, y, x) -> the raw values with
    `sentinel` where any band is missing, nodata or out of range, or the cloud asset flags."""
    invalid = np.isnan(raw).any(axis=1) if raw.dtype.kind == "f" else \
        np.zeros((raw.shape[0], *raw.shape[2:]), bool)
    if nodata is not None:
        invalid |= (raw == nodata).any(axis=1)
    if valid_range is not None:
        invalid |= ((raw < valid_range[0]) | (raw > valid_range[1])).any(axis=1)
    if cloud is not None:
        invalid |= np.isin(cloud, invalid_values)
    out = raw.copy()
    out[np.broadcast_to(invalid[:, None], out.shape)] = sentinel
    return out


def open_stac_observations(series: StacSeries, grid: TileGrid) -> tuple[object, Encoding]:
    """The lazy (time, band, y, x) raw observations of a STAC source on `grid`, and how they
    are stored (the assets' dtype; scale and offset from the config or `raster:bands`):
    odc-stac reads each chunk of each asset and date in its own task, then one task per
    chunk masks all dates and bands."""
    items = [pystac.Item.from_dict(d) for d in series.items]
    keys = list(dict.fromkeys([*series.assets, *filter(None, [series.cloud_asset])]))
    resampling = {k: series.resampling for k in series.assets}
    if series.cloud_asset:
        resampling[series.cloud_asset] = "nearest"
    extra = {} if series.nodata is None else {"nodata": series.nodata}
    if fs.gdal_options():  # an S3-compatible endpoint named in the environment
        odc.stac.configure_rio(**fs.gdal_options())
    ds = odc.stac.load(
        items, bands=keys, geobox=grid.geobox, chunks={"x": grid.chunk, "y": grid.chunk},
        groupby=_ByDate({a.product: a.date for a in series.acquisitions}),
        resampling=resampling, fail_on_error=True, **extra,
    )
    raw = da.stack([ds[k].data for k in series.assets], axis=1).rechunk({0: -1, 1: -1})
    encoding = encoding_of(series, raw.dtype)
    invalid = list(series.acquisitions[0].masks[0].rule) if series.cloud_asset else []
    args = dict(nodata=series.nodata, valid_range=series.valid_range,
                invalid_values=invalid, sentinel=encoding.sentinel)
    if series.cloud_asset:
        cloud = ds[series.cloud_asset].data.rechunk({0: -1})
        observations = map_yx(_mask_with_cloud, raw, cloud, lead=raw.shape[:2],
                              dtype=raw.dtype, **args)
    else:
        observations = map_yx(mask_block, raw, lead=raw.shape[:2], dtype=raw.dtype,
                              cloud=None, **args)
    return observations, encoding


def _mask_with_cloud(raw, cloud, **args):
    return mask_block(raw, cloud, **args)

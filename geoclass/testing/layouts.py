"""The synthetic scene in other layouts than THEIA's: Sen2Cor SAFE, a local STAC catalog, a
dated raster series (optionally in another CRS), THEIA Landsat-8, and Sentinel-1 backscatter.

Every optical layout writes the same reflectances (quantized to 1e-4) as the THEIA layout with
`r2_20m=True` (Sen2Cor, STAC: 20 m bands at 20 m) or at 10 m (series), so readers can be
checked against each other."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pystac
import rasterio
import shapely
from affine import Affine
from rasterio.warp import Resampling, calculate_default_transform, reproject, transform_geom
from rasterio.windows import Window

from geoclass.testing import scene as base

SCL_VEGETATION, SCL_SHADOW, SCL_CLOUD_MEDIUM, SCL_CLOUD_HIGH = 4, 3, 8, 9
SCL_RANK = {0: 4, SCL_CLOUD_HIGH: 3, SCL_CLOUD_MEDIUM: 2, SCL_SHADOW: 1}  # worst class wins
SCL_INVALID = (0, 1, 3, 8, 9, 10)
STAC_ASSETS = {"B2": "blue", "B3": "green", "B4": "red", "B5": "rededge1", "B6": "rededge2",
               "B7": "rededge3", "B8": "nir", "B8A": "nir08", "B11": "swir16", "B12": "swir22"}
L8_FROM_S2 = {"B2": ("B1", "B2"), "B3": ("B3",), "B4": ("B4",), "B8A": ("B5",), "B11": ("B6",),
              "B12": ("B7",)}
LOSSY_FILL = -10000  # the series' fill value, jittered as lossy compression leaves it
S1_DB = {"soil": -13.0, "litter": -11.0, "water": -22.0, "urban": -5.0, "sand": -16.0,
         "snow": -14.0}


@dataclass
class DateInfo:
    """One acquisition of one tile, as the THEIA writer sees it."""

    seed: int
    tile: str
    k: int
    d: int
    date: dt.date
    transform: Affine
    edge: np.ndarray | None
    clm: np.ndarray
    opacity: np.ndarray | None

    @property
    def size(self) -> int:
        return self.clm.shape[0]

    def nodata(self) -> np.ndarray:
        return np.zeros_like(self.clm, bool) if self.edge is None else self.edge


def reduce(array: np.ndarray, factor: int, how: str = "mean") -> np.ndarray:
    """Block mean (signals) or maximum (masks) over factor x factor pixels."""
    h, w = array.shape
    blocks = array.reshape(h // factor, factor, w // factor, factor)
    return blocks.mean(axis=(1, 3), dtype=np.float32) if how == "mean" else blocks.max(axis=(1, 3))


def quantize(reflectance: np.ndarray) -> np.ndarray:
    """Reflectance x 10000, rounded and clipped as the THEIA layout writes it (int32)."""
    return np.clip(np.rint(reflectance * np.float32(10000)), 0, 15000).astype(np.int32)


def l2a_dn(reflectance: np.ndarray, nodata: np.ndarray, offset: int) -> np.ndarray:
    """Sen2Cor/STAC digital numbers: reflectance x 10000 - BOA offset (uint16, 0 = no data)."""
    dn = quantize(reflectance) + offset
    dn = np.maximum(dn, 1)  # 0 is no data
    dn[nodata] = 0
    return dn.astype(np.uint16)


def scene_classes(info: DateInfo) -> np.ndarray:
    """Sen2Cor scene classes at 10 m from the cloud/shadow mask, the opacity and the edge."""
    scl = np.full(info.clm.shape, SCL_VEGETATION, np.uint8)
    cloud = info.clm == base.CLOUD_BITS
    thick = cloud if info.opacity is None else cloud & (info.opacity > 0.5)
    scl[cloud] = SCL_CLOUD_MEDIUM
    scl[thick] = SCL_CLOUD_HIGH
    scl[info.clm == base.SHADOW_BITS] = SCL_SHADOW
    scl[info.nodata()] = 0
    return scl


def scl_20m(scl: np.ndarray) -> np.ndarray:
    """A 20 m scene classification: the worst invalid class of the 2x2 block, if any."""
    rank = np.zeros(scl.shape, np.uint8)
    for value, r in SCL_RANK.items():
        rank[scl == value] = r
    worst = reduce(rank, 2, "max")
    by_rank = np.array([SCL_VEGETATION] + [v for v, _ in sorted(SCL_RANK.items(),
                                                                  key=lambda kv: kv[1])], np.uint8)
    return by_rank[worst]


def write(path: Path, array: np.ndarray, transform: Affine, nodata=None, crs=base.CRS,
          driver: str = "GTiff") -> None:
    """One single-band raster: a tiled GeoTIFF, or a lossless JPEG 2000."""
    h, w = array.shape
    profile = dict(driver=driver, width=w, height=h, count=1, dtype=array.dtype.name, crs=crs,
                   transform=transform, nodata=nodata)
    if driver == "JP2OpenJPEG":
        profile.update(QUALITY=100, REVERSIBLE="YES")
    else:
        profile.update(tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array, 1)


# ---------------------------------------------------------------- Sen2Cor


MTD = """<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd">
<n1:General_Info><Product_Info><PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE></Product_Info>
<Product_Image_Characteristics>
<QUANTIFICATION_VALUES_LIST><BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE>
</QUANTIFICATION_VALUES_LIST>
{offsets}<Spectral_Information_List>
{spectral}</Spectral_Information_List>
</Product_Image_Characteristics></n1:General_Info></n1:Level-2A_User_Product>
"""
BAND_IDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")


def sen2cor_metadata(baseline: str) -> str:
    offsets = ""
    if baseline >= "04.00":
        rows = "".join(f'<BOA_ADD_OFFSET band_id="{i}">-1000</BOA_ADD_OFFSET>\n'
                       for i in range(len(BAND_IDS)))
        offsets = f"<BOA_ADD_OFFSET_VALUES_LIST>\n{rows}</BOA_ADD_OFFSET_VALUES_LIST>\n"
    spectral = "".join(f'<Spectral_Information bandId="{i}" physicalBand="{b}"/>\n'
                       for i, b in enumerate(BAND_IDS))
    return MTD.format(baseline=baseline, offsets=offsets, spectral=spectral)


def safe_band(band: str) -> str:
    return band if band == "B8A" or len(band) == 3 else f"B0{band[1:]}"


def write_sen2cor(root: Path, info: DateInfo, bands: Iterable) -> str:
    """One SAFE product: JP2 bands at 10/20 m, SCL at 20 m, MTD_MSIL2A.xml. Even dates use
    processing baseline 04.00 (BOA offset -1000), odd ones 02.12 (no offset)."""
    baseline = "04.00" if info.d % 2 == 0 else "02.12"
    offset = 1000 if baseline >= "04.00" else 0
    stamp = f"{info.date:%Y%m%d}T105031"
    platform = "S2A" if info.d % 2 == 0 else "S2B"
    name = (f"{platform}_MSIL2A_{stamp}_N{baseline.replace('.', '')}_R051_{info.tile}_"
            f"{info.date:%Y%m%d}T120000.SAFE")
    product = root / info.tile / name
    img = product / "GRANULE" / f"L2A_{info.tile}_A0{info.k}{info.d:04d}_{stamp}" / "IMG_DATA"
    for res in ("R10m", "R20m"):
        (img / res).mkdir(parents=True, exist_ok=True)
    (product / "MTD_MSIL2A.xml").write_text(sen2cor_metadata(baseline))
    nodata = info.nodata()
    coarse = info.transform @ Affine.scale(2)
    for band, refl in bands:
        file = f"{info.tile}_{stamp}_{safe_band(band)}"
        if band in base.BANDS_20M:
            dn = l2a_dn(reduce(refl, 2), reduce(nodata, 2, "max"), offset)
            write(img / "R20m" / f"{file}_20m.jp2", dn, coarse, driver="JP2OpenJPEG")
        else:
            dn = l2a_dn(refl, nodata, offset)
            write(img / "R10m" / f"{file}_10m.jp2", dn, info.transform, driver="JP2OpenJPEG")
    write(img / "R20m" / f"{info.tile}_{stamp}_SCL_20m.jp2", scl_20m(scene_classes(info)),
          coarse, driver="JP2OpenJPEG")
    return name


# ---------------------------------------------------------------- STAC


class StacWriter:
    """Item folders of GeoTIFF assets (uint16 DN, offset -0.1 in raster:bands as baseline
    04.00, nodata 0; SCL at 20 m), gathered in `stac/catalog.json` by `finish`. The first tile's
    items name their tile with `s2:mgrs_tile`, the others with `grid:code`."""

    def __init__(self, root: Path):
        self.root = root
        self.items = []

    def write(self, info: DateInfo, bands: Iterable) -> str:
        item_id = f"S2{'A' if info.d % 2 == 0 else 'B'}_{info.tile[1:]}_{info.date:%Y%m%d}_0_L2A"
        folder = self.root / item_id
        folder.mkdir(parents=True, exist_ok=True)
        nodata = info.nodata()
        coarse = info.transform @ Affine.scale(2)
        size = info.size
        when = dt.datetime.combine(info.date, dt.time(10, 50, 31), dt.timezone.utc)
        left, top, res = info.transform.c, info.transform.f, info.transform.a
        box = {"type": "Polygon", "coordinates": [[
            (left, top), (left + size * res, top), (left + size * res, top - size * res),
            (left, top - size * res), (left, top)]]}
        geometry = transform_geom(base.CRS, "EPSG:4326", box)
        xs, ys = zip(*geometry["coordinates"][0])
        code = info.tile[1:]
        props = {"s2:mgrs_tile": code} if info.k == 0 else {"grid:code": f"MGRS-{code}"}
        props["proj:code"] = base.CRS
        item = pystac.Item(item_id, geometry, [min(xs), min(ys), max(xs), max(ys)], when, props)

        def add(key: str, array: np.ndarray, transform: Affine, raster: dict) -> None:
            path = folder / f"{key}.tif"
            write(path, array, transform, nodata=0)
            item.add_asset(key, pystac.Asset(str(path), media_type=pystac.MediaType.GEOTIFF,
                                             roles=["data"], extra_fields={
                "raster:bands": [raster], "proj:shape": list(array.shape),
                "proj:transform": list(transform)[:6]}))

        for band, refl in bands:
            raster = {"nodata": 0, "data_type": "uint16", "scale": 0.0001, "offset": -0.1}
            if band in base.BANDS_20M:
                add(STAC_ASSETS[band], l2a_dn(reduce(refl, 2), reduce(nodata, 2, "max"), 1000),
                    coarse, raster)
            else:
                add(STAC_ASSETS[band], l2a_dn(refl, nodata, 1000), info.transform, raster)
        add("scl", scl_20m(scene_classes(info)), coarse, {"nodata": 0, "data_type": "uint8"})
        self.items.append(item)
        return item_id

    def finish(self) -> None:
        catalog = pystac.Catalog("synth", "The synthetic scene as a STAC catalog")
        for item in self.items:
            catalog.add_item(item)
        catalog.normalize_hrefs(str(self.root))
        catalog.make_all_asset_hrefs_relative()
        catalog.save(pystac.CatalogType.SELF_CONTAINED)


STAC_CONFIG = {"bands": dict(STAC_ASSETS), "cloud_asset": "scl",
               "invalid_values": list(SCL_INVALID)}


# ---------------------------------------------------------------- dated series


def series_grid(transform: Affine, size: int, crs: str | None) -> tuple[str, Affine, int, int]:
    """The grid of the series' files: the tile's, or its footprint in `crs` at about the
    tile's pixel size (GDAL's estimate: not a round number, not square in pixels)."""
    if crs is None:
        return base.CRS, transform, size, size
    res = transform.a
    left, top = transform.c, transform.f
    bounds = (left, top - size * res, left + size * res, top)
    if rasterio.crs.CRS.from_user_input(crs).is_geographic:
        out, w, h = calculate_default_transform(base.CRS, crs, size, size, *bounds)
    else:
        out, w, h = calculate_default_transform(base.CRS, crs, size, size, *bounds, resolution=res)
    return crs, out, w, h


def lossy_fill(shape, rng: np.random.Generator, fill: int = LOSSY_FILL) -> np.ndarray:
    """Fill values as lossy compression leaves them: near, not at, the fill value."""
    return (fill + rng.integers(-40, 41, shape)).astype(np.int16)


def ndvi_band(bands: Iterable) -> Iterable:
    """('NDVI', NDVI) from the B4 and B8 reflectances of a date's bands."""
    red = nir = None
    for band, refl in bands:
        if band == "B4":
            red = refl.copy()
        elif band == "B8":
            nir = refl.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        ndvi = np.where(nir + red > 0, (nir - red) / (nir + red), 0).astype(np.float32)
    yield "NDVI", ndvi


@dataclass(frozen=True)
class SeriesStyle:
    """How the dated series is written: its CRS, its bands (the reflectances, or NDVI),
    the raster format (GeoTIFF, or lossy JPEG 2000), and masked pixels as a mask file per
    date or as (jittered) fill values in the data, as MODIS composites have them."""

    crs: str | None = None
    ndvi: bool = False
    jp2: bool = False

    @property
    def mask_files(self) -> bool:
        return not self.ndvi

    @property
    def suffix(self) -> str:
        return "jp2" if self.jp2 else "tif"


def write_series(root: Path, info: DateInfo, bands: Iterable,
                 style: SeriesStyle = SeriesStyle()) -> str:
    """One file per date: the 10 reflectance bands (int16 x 10000, no nodata tag: masked
    pixels hold jittered fill values, plus a mask file: 1 = cloud or shadow), or one NDVI
    band (int16 x 10000, clouds and edges as jittered fill values, no mask file), as a tiled
    GeoTIFF or a lossy JPEG 2000, in the tile CRS or `style.crs`."""
    folder = root / info.tile
    folder.mkdir(parents=True, exist_ok=True)
    prefix = "NDVI" if style.ndvi else "S2"
    name = f"{prefix}_{info.tile}_{info.date:%Y%m%d}.{style.suffix}"
    dst_crs, transform, width, height = series_grid(info.transform, info.size, style.crs)
    rng = base._rng(info.seed, 99, info.k, info.d)
    masked = info.nodata() | ((info.clm != 0) if style.ndvi else False)
    fill = NDVI_FILL if style.ndvi else LOSSY_FILL
    if style.ndvi:
        bands = ndvi_band(bands)

    def place(array: np.ndarray, outside: np.ndarray) -> np.ndarray:
        if style.crs is None:
            return array
        out = outside.copy()
        reproject(array, out, src_transform=info.transform, src_crs=base.CRS,
                  dst_transform=transform, dst_crs=dst_crs, resampling=Resampling.nearest)
        return out

    count = 1 if style.ndvi else len(base.BANDS)
    profile = dict(width=width, height=height, count=count, dtype="int16", crs=dst_crs,
                   transform=transform)
    if style.jp2:  # lossy: values (and fill values) come back shifted
        profile.update(driver="JP2OpenJPEG", QUALITY=25, REVERSIBLE="NO", RESOLUTIONS=1)
    else:
        profile.update(driver="GTiff", tiled=True, blockxsize=256, blockysize=256,
                       compress="deflate")
    with rasterio.open(folder / name, "w", **profile) as dst:
        for i, (band, values) in enumerate(bands, 1):
            scaled = (np.clip(np.rint(values * 10000), -10000, 10000) if style.ndvi
                      else quantize(values)).astype(np.int16)
            scaled[masked] = lossy_fill(int(masked.sum()), rng, fill)
            dst.write(place(scaled, lossy_fill((height, width), rng, fill)), i)
            if not style.jp2:
                dst.set_band_description(i, band)
    if style.mask_files:
        mask = (info.clm != 0).astype(np.uint8)
        write(folder / f"MASK_{info.tile}_{info.date:%Y%m%d}.tif",
              place(mask, np.ones((height, width), np.uint8)), transform, crs=dst_crs)
    return name


NDVI_FILL = -3000  # MODIS NDVI's fill value
SERIES_CONFIG = {
    "pattern": "S2_{tile}_{date:%Y%m%d}.tif",
    "mask_pattern": "MASK_{tile}_{date:%Y%m%d}.tif",
    "band_names": list(base.BANDS),
    "valid_range": [0, 15000],
    "nodata": None,
    "scale": 0.0001,
    "offset": 0,
    "temporal_resolution": 10,
    "index_bands": {"green": "B3", "red": "B4", "nir": "B8", "swir": "B11"},
}


def series_config(style: SeriesStyle) -> dict:
    """The `series:` section that reads what `write_series` wrote in `style`."""
    if not style.ndvi:
        config = dict(SERIES_CONFIG)
        config["pattern"] = f"S2_{{tile}}_{{date:%Y%m%d}}.{style.suffix}"
        return config
    return {"pattern": f"NDVI_{{tile}}_{{date:%Y%m%d}}.{style.suffix}", "band_names": ["NDVI"],
            "valid_range": [-2000, 10000], "nodata": None, "scale": 0.0001, "offset": 0,
            "temporal_resolution": None}


# ---------------------------------------------------------------- Landsat-8 (THEIA L2A)


def write_landsat8(root: Path, info: DateInfo, bands: Iterable) -> str:
    """A THEIA L2A Landsat-8 product at 30 m: B1 ... B7 from the matching Sentinel-2 bands,
    CLM/EDG/SAT masks at 30 m."""
    name = f"LANDSAT8-OLITIRS-XS_{info.date:%Y%m%d}-103000-000_L2A_{info.tile}_D_V1-9"
    folder = root / info.tile / name
    (folder / "MASKS").mkdir(parents=True, exist_ok=True)
    coarse = info.transform @ Affine.scale(3)
    nodata = reduce(info.nodata(), 3, "max")
    for band, refl in bands:
        for l8_band in L8_FROM_S2.get(band, ()):
            values = quantize(reduce(refl, 3)).astype(np.int16)
            values[nodata] = base.NODATA
            write(folder / f"{name}_FRE_{l8_band}.tif", values, coarse, base.NODATA)
    write(folder / "MASKS" / f"{name}_CLM_XS.tif", reduce(info.clm, 3, "max"), coarse)
    write(folder / "MASKS" / f"{name}_EDG_XS.tif", nodata.astype(np.uint8), coarse)
    write(folder / "MASKS" / f"{name}_SAT_XS.tif", np.zeros_like(nodata, np.uint8), coarse)
    return name


# ---------------------------------------------------------------- Sentinel-1


def s1_dates(first: dt.date, last: dt.date, count: int, orbit: str) -> list[dt.date]:
    """`count` dates spread evenly over [first, last]; descending passes 3 days later."""
    shift = 0 if orbit == "ASC" else 3
    span = max((last - first).days - 3, count)
    return [first + dt.timedelta(days=int(round(i * span / max(count - 1, 1))) + shift)
            for i in range(count)]


def parcel_backscatter(doy: float, table, parcels) -> tuple[np.ndarray, np.ndarray]:
    """VV and VH backscatter (dB) of every parcel: the background's, raised by green cover
    (volume scattering, stronger in VH) and by dry vegetation."""
    green, dry, _ = base.cover_fractions(doy, table, parcels)
    background = np.array([S1_DB[a.background] for a in table])[parcels.cls]
    vv = background + 5.0 * green + 2.0 * dry + (parcels.soil - 1.0) * 4.0
    vh = vv - 9.0 + 4.0 * green
    return vv.astype(np.float32), vh.astype(np.float32)


def write_s1(root: Path, scene, k: int, tile: str, transform: Affine, pid: np.ndarray,
             dates: list[dt.date], last: bool) -> dict[str, list[str]]:
    """Linear VV/VH GeoTIFFs per date and orbit (speckled, nodata 0 on a swath edge)."""
    folder = root / tile
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[str]] = {}
    for o, orbit in enumerate(("ASC", "DES")):
        hour = "174000" if orbit == "ASC" else "060000"
        for d, date in enumerate(s1_dates(dates[0], dates[-1], len(dates), orbit)):
            vv, vh = parcel_backscatter(date.timetuple().tm_yday, scene.table, scene.parcels)
            edge = base.swath_edge(scene.seed + 7 + o, d, scene.size) if last else None
            for p, (pol, db) in enumerate((("vv", vv), ("vh", vh))):
                rng = base._rng(scene.seed, 11, k, o, d, p)
                linear = np.power(10.0, db[pid] / 10.0).astype(np.float32)
                linear *= rng.gamma(5.0, 1 / 5.0, linear.shape).astype(np.float32)  # speckle
                if edge is not None:
                    linear[edge] = 0
                name = f"s1a_{tile}_{pol}_{orbit}_{date:%Y%m%d}t{hour}.tif"
                write(folder / name, linear, transform, nodata=0)
                written.setdefault(orbit, []).append(name)
    return written


# ---------------------------------------------------------------- point ground truth, tables


def ground_truth_points(parcels, table, codes, count: int, seed: int, res: float):
    """`count` points inside the ground-truth fields (one pixel in from their edges), classes
    dealt round-robin, in EPSG:4326 (a GeoPackage's usual CRS), with `class` and `code`."""
    rng = base._rng(seed, 97)
    fields = np.flatnonzero(parcels.ground_truth)
    inner = base.shrink(parcels.cells[fields], res)
    keep = ~shapely.is_empty(inner)
    fields, inner = fields[keep], inner[keep]
    by_class = [rng.permutation(np.flatnonzero(parcels.cls[fields] == c))
                for c in range(len(table))]
    by_class = [f for f in by_class if len(f)]
    points, cls = [], []
    for i in range(count):
        choices = by_class[i % len(by_class)]
        field = choices[(i // len(by_class)) % len(choices)]
        left, bottom, right, top = shapely.bounds(inner[field])
        while True:  # rejection sampling inside the field
            point = shapely.Point(rng.uniform(left, right), rng.uniform(bottom, top))
            if shapely.contains(inner[field], point):
                break
        points.append(point)
        cls.append(parcels.cls[fields[field]])
    frame = gpd.GeoDataFrame({"class": [table[c].name for c in cls],
                              "code": codes[np.array(cls)].astype(np.int32)},
                             geometry=points, crs=base.CRS)
    return frame.to_crs("EPSG:4326")


def ndvi_table(scene, dates: list[dt.date], count: int):
    """`count` labelled NDVI series (one column per date, in date order: matched to the cube
    by position) of random pixels, as a field campaign would give them: no clouds, some
    measurement noise; every class alike, from fields outside the ground truth where the
    class has some."""
    rng = base._rng(scene.seed, 98)
    tiles, n_classes = scene.tiles, len(scene.table)
    outside = ~scene.parcels.ground_truth
    wanted = np.bincount(np.arange(count) % n_classes, minlength=n_classes)
    picks, tries = [], 0
    while len(picks) < count and tries < 200 * count:
        tries += 1
        k = int(rng.integers(tiles))
        row, col = (int(v) for v in rng.integers(0, scene.size, 2))
        x, y = base.tile_transform(k, scene.size, scene.res) * (col + 0.5, row + 0.5)
        parcel = int(np.argmin(((scene.parcels.seeds - (x, y)) ** 2).sum(axis=1)))
        cls = scene.parcels.cls[parcel]
        has_outside = (outside & (scene.parcels.cls == cls)).any()
        if wanted[cls] > 0 and (outside[parcel] or not has_outside):
            wanted[cls] -= 1
            picks.append((k, row, col, parcel))
    parcels = np.array([p[3] for p in picks])
    tex = np.array([base.texture_window(scene.seed, k, Window(col, row, 1, 1))[0, 0]
                    for k, row, col, _ in picks], np.float32)  # the texture at the pixel only
    red, nir = base.BANDS.index("B4"), base.BANDS.index("B8")
    columns = {}
    for d, date in enumerate(dates):
        flat, green = base.parcel_spectra(date.timetuple().tm_yday, scene.table, scene.parcels)
        refl = flat[parcels] + green[parcels] * tex[:, None]
        ndvi = (refl[:, nir] - refl[:, red]) / (refl[:, nir] + refl[:, red])
        columns[f"ndvi_{d + 1:02d}"] = np.round(ndvi + rng.normal(0, 0.02, len(ndvi)), 4)
    labels = [scene.table[c].name for c in scene.parcels.cls[parcels]]
    return pd.DataFrame({"sample_id": np.arange(1, count + 1), "class": labels, **columns})

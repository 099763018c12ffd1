"""Deterministic synthetic Sentinel-2 L2A scenes, truth, references and config: THEIA layout
here, the same scene as Sen2Cor SAFE, STAC, a dated series or Landsat-8, and Sentinel-1
backscatter, in `layouts`; the scene itself (parcels, phenology, clouds) in `scene`.

The THEIA layout (and the truth rasters) are written window by window (`scene.WINDOW`
pixels): generating a tile takes memory bounded by the window, whatever the tile size (the
parcels' polygons, for the whole scene, grow with the number of parcels). The other layouts
receive full-tile arrays assembled from the same windows, so they hold the same values."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
import yaml
from affine import Affine
from rasterio.windows import Window

from geoclass.testing import layouts
from geoclass.testing.scene import (
    _DATES,
    _GAIN,
    _NOISE,
    BANDS,
    BANDS_20M,
    CRS,
    FORMAT_PATHS,
    FORMATS,
    MAX_DATES,
    NODATA,
    NOMENCLATURE,
    RES,
    SPECTRA,
    Archetype,
    CloudField,
    Clouds,
    Parcels,
    SceneOptionError,
    _rng,
    acquisition_dates,
    class_archetypes,
    cloud_covers,
    cloud_field,
    clouds,
    make_parcels,
    parcel_ids_window,
    parcel_spectra,
    product_name,
    region_polygons,
    shrink,
    swath,
    texture_window,
    tile_name,
    tile_transform,
    tile_windows,
    window_key,
)

__all__ = ["synth", "SceneOptionError", "BANDS", "BANDS_20M", "NODATA", "class_archetypes",
           "clouds", "make_parcels", "region_polygons"]


# ---------------------------------------------------------------- writers


def _profile(transform: Affine, size: int, dtype: str, count: int = 1, nodata=None) -> dict:
    return dict(
        driver="GTiff",
        width=size,
        height=size,
        count=count,
        dtype=dtype,
        crs=CRS,
        transform=transform,
        nodata=nodata,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
        predictor=2,
        zlevel=1,  # fast: noisy reflectances hardly compress better at higher levels
    )


def write_raster(path: Path, array: np.ndarray, transform: Affine, nodata=None) -> None:
    """A single-band tiled GeoTIFF."""
    with rasterio.open(
        path, "w", **_profile(transform, array.shape[0], array.dtype.name, nodata=nodata)
    ) as dst:
        dst.write(array, 1)


def to_int16(reflectance: np.ndarray, nodata: np.ndarray | None) -> np.ndarray:
    """Reflectance x 10000 as int16, -10000 where `nodata` (overwrites `reflectance`)."""
    reflectance *= np.float32(10000)
    np.rint(reflectance, out=reflectance)
    out = np.clip(reflectance, 0, 15000, out=reflectance).astype(np.int16)
    if nodata is not None:
        out[nodata] = NODATA
    return out


def block_mean(array: np.ndarray) -> np.ndarray:
    """2x2 mean: the 20 m pixel of a 10 m signal."""
    h, w = array.shape
    return array.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3), dtype=np.float32)


def block_max(array: np.ndarray) -> np.ndarray:
    """2x2 maximum: a 20 m mask (any flagged 10 m pixel flags the 20 m one)."""
    h, w = array.shape
    return array.reshape(h // 2, 2, w // 2, 2).max(axis=(1, 3))


class TheiaProduct:
    """One THEIA acquisition's files (FRE bands or one stack, CLM/EDG masks, and the 20 m
    ones with `r2_20m`), open for writing window by window."""

    def __init__(self, folder: Path, product: str, transform: Affine, size: int, layout: str,
                 r2_20m: bool):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "MASKS").mkdir(exist_ok=True)
        self.layout, self.r2_20m = layout, r2_20m
        self.files: dict[str, rasterio.io.DatasetWriter] = {}
        coarse = transform @ Affine.scale(2)
        try:
            for mask in ("CLM", "EDG"):
                self._open(mask, folder / "MASKS" / f"{product}_{mask}_R1.tif", transform, size,
                           "uint8")
                if r2_20m:
                    self._open(f"{mask}_R2", folder / "MASKS" / f"{product}_{mask}_R2.tif",
                               coarse, size // 2, "uint8")
            if layout == "stack":
                dst = self._open("stack", folder / f"{product}_FRE_STACK.tif", transform, size,
                                 "int16", len(BANDS), NODATA)
                for i, band in enumerate(BANDS, 1):
                    dst.set_band_description(i, band)
            else:
                for band in BANDS:
                    half = r2_20m and band in BANDS_20M
                    self._open(band, folder / f"{product}_FRE_{band}.tif",
                               coarse if half else transform, size // 2 if half else size,
                               "int16", nodata=NODATA)
        except BaseException:
            self.close()
            raise

    def _open(self, key: str, path: Path, transform: Affine, size: int, dtype: str,
              count: int = 1, nodata=None):
        dst = rasterio.open(path, "w", **_profile(transform, size, dtype, count, nodata))
        self.files[key] = dst
        return dst

    def write(self, window: Window, clm: np.ndarray, edge: np.ndarray | None,
              bands: Iterable[tuple[str, np.ndarray]]) -> None:
        """A window of every file: the masks, then the bands (each array is overwritten)."""
        edg = np.zeros_like(clm) if edge is None else edge.astype(np.uint8)
        self.files["CLM"].write(clm, 1, window=window)
        self.files["EDG"].write(edg, 1, window=window)
        half = Window(window.col_off // 2, window.row_off // 2, window.width // 2,
                      window.height // 2)
        if self.r2_20m:
            self.files["CLM_R2"].write(block_max(clm), 1, window=half)
            self.files["EDG_R2"].write(block_max(edg), 1, window=half)
        coarse_edge = None if edge is None or not self.r2_20m else block_max(edge)
        for i, (band, reflectance) in enumerate(bands, 1):
            if self.layout == "stack":
                self.files["stack"].write(to_int16(reflectance, edge), i, window=window)
            elif self.r2_20m and band in BANDS_20M:
                array = to_int16(block_mean(reflectance), coarse_edge)
                self.files[band].write(array, 1, window=half)
            else:
                self.files[band].write(to_int16(reflectance, edge), 1, window=window)

    def close(self) -> None:
        while self.files:
            self.files.popitem()[1].close()

    def __enter__(self) -> TheiaProduct:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_date(
    folder: Path,
    product: str,
    bands: Iterable[tuple[str, np.ndarray]],
    transform: Affine,
    edge: np.ndarray | None,
    clm: np.ndarray,
    layout: str,
    r2_20m: bool,
) -> None:
    """Write one acquisition from full-tile arrays: FRE bands (or one stack), CLM/EDG masks."""
    size = clm.shape[0]
    with TheiaProduct(folder, product, transform, size, layout, r2_20m) as dst:
        dst.write(Window(0, 0, size, size), clm, edge, bands)


@dataclass
class Scene:
    """What every tile of one scene shares."""

    out: Path
    seed: int
    size: int
    table: list[Archetype]
    codes: np.ndarray  # nomenclature code of each class
    parcels: Parcels
    layout: str
    r2_20m: bool
    format: str = "theia"
    series: object = None  # synth_layouts.SeriesStyle of the `series` format
    s1: bool = False
    stac: object = None  # the STAC writer, gathering items until the catalog is written
    noise: float = 0.08  # pixel noise, relative to the reflectance
    res: float = RES  # pixel size, metres
    tiles: int = 1


class DateSignal:
    """Tile k's date d as per-parcel spectra (the atmosphere residual included), turning a
    window's parcel ids, texture and clouds into its ten bands' reflectances."""

    def __init__(self, scene: Scene, k: int, d: int, doy: int):
        base, green = parcel_spectra(doy, scene.table, scene.parcels)
        gains = _rng(scene.seed, _GAIN, k, d).normal(1.0, 0.015, len(BANDS))  # atmosphere
        gains = gains.astype(np.float32)
        self.base = np.ascontiguousarray((base * gains).T)  # (bands, parcels)
        self.green = np.ascontiguousarray((green * gains).T)
        self.white = np.array(SPECTRA["cloud"], np.float32)
        self.scene, self.k, self.d = scene, k, d

    def band(self, b: int, window: Window, pid: np.ndarray, tex: np.ndarray,
             sky: Clouds | None) -> np.ndarray:
        """Band b's float32 reflectance over a window: fields, noise, clouds, shadows."""
        refl = np.take(self.base[b], pid, mode="clip")
        work = np.take(self.green[b], pid, mode="clip")
        refl += np.multiply(work, tex, out=work)
        rng = _rng(self.scene.seed, _NOISE, self.k, self.d, b, *window_key(window))
        noise = rng.standard_normal(refl.shape, dtype=np.float32)
        np.multiply(refl, np.float32(self.scene.noise), out=work)
        work += np.float32(0.01)
        refl += np.multiply(noise, work, out=noise)  # noise grows with the signal
        del noise
        if sky is not None:
            np.multiply(refl, np.float32(0.45), out=refl, where=sky.shadow)
            np.subtract(self.white[b], refl, out=work)
            refl += np.multiply(work, sky.opacity, out=work)
        return refl

    def bands(self, window: Window, pid: np.ndarray, tex: np.ndarray,
              sky: Clouds | None) -> Iterator[tuple[str, np.ndarray]]:
        for b, band in enumerate(BANDS):
            yield band, self.band(b, window, pid, tex, sky)


def date_bands(
    scene: Scene, k: int, d: int, doy: int, pid: np.ndarray, tex: np.ndarray, sky: Clouds | None
) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (band, float32 reflectance) of tile k's date d over the full tile, from full-tile
    parcel ids, texture and clouds, window by window (the values of the windowed writer).

    One full-tile buffer is reused from band to band: use each array before the next.
    """
    signal = DateSignal(scene, k, d, doy)
    out = np.empty(pid.shape, np.float32)
    windows = tile_windows(pid.shape[0])
    for b, band in enumerate(BANDS):
        for window in windows:
            part = window.toslices()
            part_sky = None if sky is None else Clouds(*(getattr(sky, n)[part] for n in
                                                         ("opacity", "shadow", "clm")))
            out[part] = signal.band(b, window, pid[part], tex[part], part_sky)
        yield band, out


class StaticLayers:
    """A tile's parcel ids and texture, window by window: computed once, then read back for
    every date (from a temporary folder in `out` when the tile has more than one window)."""

    def __init__(self, out: Path, windows: list[Window]):
        self.windows = windows
        self._memory: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._folder = (tempfile.TemporaryDirectory(prefix=".synth-", dir=out)
                        if len(windows) > 1 else None)

    def put(self, i: int, pid: np.ndarray, tex: np.ndarray) -> None:
        if self._folder is None:
            self._memory[i] = (pid, tex)
        else:
            np.save(Path(self._folder.name) / f"pid_{i}.npy", pid.astype(np.int32, copy=False))
            np.save(Path(self._folder.name) / f"tex_{i}.npy", tex)

    def get(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Window i's parcel ids (intp) and texture (float32)."""
        if self._folder is None:
            pid, tex = self._memory[i]
        else:
            pid = np.load(Path(self._folder.name) / f"pid_{i}.npy")
            tex = np.load(Path(self._folder.name) / f"tex_{i}.npy")
        return pid.astype(np.intp, copy=False), tex

    def full(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """The whole tile's parcel ids and texture (for the layouts written from full tiles)."""
        pid, tex = np.empty((size, size), np.intp), np.empty((size, size), np.float32)
        for i, window in enumerate(self.windows):
            pid[window.toslices()], tex[window.toslices()] = self.get(i)
        return pid, tex

    def close(self) -> None:
        self._memory.clear()
        if self._folder is not None:
            self._folder.cleanup()

    def __enter__(self) -> StaticLayers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_products(scene: Scene, info, product: str, bands) -> str:
    """Write one acquisition in the scene's format; returns its product (or file) name."""
    root = scene.out / FORMAT_PATHS[scene.format][0]
    if scene.format == "theia":
        folder = root / info.tile / product
        write_date(folder, product, bands, info.transform, info.edge, info.clm, scene.layout,
                   scene.r2_20m)
        return product
    if scene.format == "sen2cor":
        return layouts.write_sen2cor(root, info, bands)
    if scene.format == "stac":
        return scene.stac.write(info, bands)
    if scene.format == "series":
        return layouts.write_series(root, info, bands, scene.series)
    return layouts.write_landsat8(root, info, bands)


def write_theia_date(scene: Scene, signal: DateSignal, folder: Path, product: str,
                     transform: Affine, static: StaticLayers, sky: CloudField | None,
                     edge) -> int:
    """One THEIA acquisition, window by window; returns its number of flagged pixels."""
    flagged = 0
    with TheiaProduct(folder, product, transform, scene.size, scene.layout,
                      scene.r2_20m) as dst:
        for i, window in enumerate(static.windows):
            pid, tex = static.get(i)
            part = None if sky is None else sky.window(window)
            nodata = None if edge is None else edge.window(window)
            clm = part.clm if part is not None else np.zeros(pid.shape, np.uint8)
            if nodata is not None:
                clm[nodata] = 0
            dst.write(window, clm, nodata, signal.bands(window, pid, tex, part))
            flagged += int(np.count_nonzero(clm))
    return flagged


def write_tile(scene: Scene, k: int, dates: list[dt.date], covers: np.ndarray, last: bool) -> dict:
    """Truth raster and every acquisition of tile k; returns the products and cloud fractions.

    The truth and the THEIA products are written window by window; the other layouts get
    full-tile arrays."""
    name, size = tile_name(k), scene.size
    transform = tile_transform(k, size, scene.res)
    windows = tile_windows(size)
    codes = scene.codes.astype(np.uint8 if scene.codes.max() <= 255 else np.uint16)
    parcel_codes = codes[scene.parcels.cls]
    (scene.out / "truth").mkdir(parents=True, exist_ok=True)
    names_rng = _rng(scene.seed, _DATES, k, 1)
    products, fractions = [], []
    with StaticLayers(scene.out, windows) as static:
        truth = scene.out / "truth" / f"{name}.tif"
        with rasterio.open(truth, "w", **_profile(transform, size, codes.dtype.name,
                                                  nodata=0)) as dst:
            for i, window in enumerate(windows):
                pid = parcel_ids_window(scene.parcels, transform, window)
                dst.write(parcel_codes[pid], 1, window=window)
                static.put(i, pid, texture_window(scene.seed, k, window))
        windowed = scene.format == "theia"
        pid = tex = None
        if not windowed or scene.s1:
            pid, tex = static.full(size)
        for d, date in enumerate(dates):
            product = product_name(name, date, d, names_rng)
            doy = date.timetuple().tm_yday
            sky = cloud_field(scene.seed, k, d, size, covers[d])
            edge = swath(scene.seed, d, size) if last else None
            if windowed:
                folder = scene.out / FORMAT_PATHS["theia"][0] / name / product
                flagged = write_theia_date(scene, DateSignal(scene, k, d, doy), folder, product,
                                           transform, static, sky, edge)
                products.append(product)
            else:
                full_sky = None if sky is None else sky.full()
                nodata = None if edge is None else edge.window(Window(0, 0, size, size))
                clm = full_sky.clm if full_sky is not None else np.zeros((size, size), np.uint8)
                if nodata is not None:
                    clm[nodata] = 0
                bands = date_bands(scene, k, d, doy, pid, tex, full_sky)
                info = layouts.DateInfo(scene.seed, name, k, d, date, transform, nodata, clm,
                                        None if full_sky is None else full_sky.opacity)
                products.append(write_products(scene, info, product, bands))
                flagged = int(np.count_nonzero(clm))
            fractions.append(round(flagged / (size * size), 4))
    summary = {"products": products, "cloud_fraction": fractions}
    if scene.s1:
        summary["s1"] = layouts.write_s1(scene.out / "s1", scene, k, name, transform, pid,
                                         dates, last)
    return summary


def write_vectors(out: Path, parcels: Parcels, table, codes, regions,
                  res: float = RES) -> int:
    """vector/ground_truth.shp (shrunk fields, class + code) and vector/regions.shp."""
    (out / "vector").mkdir(parents=True, exist_ok=True)
    index = np.flatnonzero(parcels.ground_truth)
    fields = shrink(parcels.cells[index], res)
    keep = ~shapely.is_empty(fields)
    # A field pinched in two by the shrinking keeps its largest part.
    polygons = [max(shapely.get_parts(g), key=shapely.area) for g in fields[keep]]
    cls = parcels.cls[index[keep]]
    gt = gpd.GeoDataFrame(
        {"class": [table[c].name for c in cls], "code": codes[cls].astype(np.int32)},
        geometry=polygons,
        crs=CRS,
    )
    gt.to_file(out / "vector" / "ground_truth.shp", encoding="utf-8")
    labels = [str(r + 1) for r in range(len(regions))]
    gpd.GeoDataFrame({"region": labels}, geometry=list(regions), crs=CRS).to_file(
        out / "vector" / "regions.shp", encoding="utf-8"
    )
    return len(gt)


def write_tables(out: Path, table: list[Archetype]) -> None:
    """iota2's nomenclature.txt (`name:code`) and colors.txt (`code R G B`), in code order."""
    entries = sorted((NOMENCLATURE[a.name][0], a.name) for a in table)
    (out / "nomenclature.txt").write_text(
        "".join(f"{name}:{code}\n" for code, name in entries), encoding="utf-8"
    )
    colors = [(code, NOMENCLATURE[name][1]) for code, name in entries]
    (out / "colors.txt").write_text("".join(f"{c} {r} {g} {b}\n" for c, (r, g, b) in colors))


def write_config(
    out: Path, tiles: list[str], size: int, labels: str, seed: int, format: str = "theia",
    s1: bool = False, series=None, res: float = RES, points: bool = False,
    external: bool = False, chunk_size: int | None = None,
) -> Path:
    folder, key = FORMAT_PATHS[format]
    config = {
        "chain": {
            "output_path": "run",
            "list_tile": tiles,
            key: folder if format != "stac" else f"{folder}/catalog.json",
            "ground_truth": "vector/ground_truth.gpkg" if points else "vector/ground_truth.shp",
            "data_field": "class" if labels == "string" else "code",
            "region_path": "vector/regions.shp",
            "region_field": "region",
            "nomenclature_path": "nomenclature.txt",
            "color_table": "colors.txt",
            "spatial_resolution": res,
            "ratio": 0.5,
            "runs": 1,
            "random_seed": seed,
        },
        "dask": {"chunk_size": chunk_size or min(512, max(64, size // 2))},
    }
    if format == "series":
        config["series"] = layouts.series_config(series)
        if res != RES:  # the grid of the series' files, as a user of such data leaves it
            del config["chain"]["spatial_resolution"]
    elif format == "stac":
        config["stac"] = dict(layouts.STAC_CONFIG)
    if external:
        config["chain"]["external_samples"] = {"path": "samples.csv", "label_field": "class",
                                               "match": "position"}
        config["chain"]["ground_truth_role"] = "validation"
    if s1:
        config["chain"]["s1_path"] = "s1"
    path = out / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path


# ---------------------------------------------------------------- entry point



def _check_options(tiles, size, dates, regions, seed, noise, cloud_cover, labels, layout,
                   r2_20m, format, series_crs, resolution, series_ndvi, series_jp2, points,
                   external_samples, chunk_size) -> None:
    """Every option's rule; a ValueError naming the option and the fix."""
    for name, value, low in (("tiles", tiles, 1), ("regions", regions, 1), ("size", size, 32),
                             ("seed", seed, 0)):
        if value < low:
            raise SceneOptionError(f"{name} must be >= {low}, got {value}")
    if not 1 <= dates <= MAX_DATES:
        raise SceneOptionError(f"dates must be in 1..{MAX_DATES}, got {dates}")
    if noise < 0:
        raise SceneOptionError(f"noise must be >= 0, got {noise}")
    if not 0 <= cloud_cover < 1:
        raise SceneOptionError(f"cloud_cover must be in [0, 1), got {cloud_cover}")
    if labels not in ("string", "int") or layout not in ("bands", "stack"):
        raise SceneOptionError("labels must be 'string' or 'int', layout 'bands' or 'stack'")
    if r2_20m and (size % 2 or layout != "bands"):
        raise SceneOptionError("r2_20m needs an even size and layout='bands'")
    if format not in FORMATS:
        raise SceneOptionError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    if size % (6 if format == "landsat8" else 2) and format != "theia":
        raise SceneOptionError(f"format '{format}' needs a size multiple of "
                         f"{6 if format == 'landsat8' else 2}")
    series_only = {"series_crs": series_crs, "series_ndvi": series_ndvi,
                   "series_jp2": series_jp2, "external_samples": external_samples}
    for name, value in series_only.items():
        if value and format != "series":
            raise SceneOptionError(f"{name} applies to format='series' only")
    if resolution <= 0 or (resolution != RES and format not in ("theia", "series")):
        raise SceneOptionError("resolution must be > 0, and other than 10 m for the theia and "
                         "series formats only")
    if external_samples and not series_ndvi:
        raise SceneOptionError("external_samples are NDVI series: they need series_ndvi")
    if points < 0 or external_samples < 0 or (chunk_size is not None and chunk_size < 16):
        raise SceneOptionError("points and external_samples must be >= 0, chunk_size >= 16")


def synth(
    out_dir,
    tiles: int = 2,
    size: int = 256,
    dates: int = 12,
    classes: int = 8,
    regions: int = 2,
    cloud_cover: float = 0.2,
    labels: str = "string",
    seed: int = 0,
    layout: str = "bands",
    r2_20m: bool = False,
    format: str = "theia",
    s1: bool = False,
    series_crs: str | None = None,
    noise: float = 0.08,
    resolution: float = RES,
    series_ndvi: bool = False,
    series_jp2: bool = False,
    points: int = 0,
    external_samples: int = 0,
    chunk_size: int | None = None,
) -> Path:
    """Write a synthetic scene under `out_dir`; returns the path of its config.yaml.

    `format`: the optical products' layout, `theia` (`layout`, `r2_20m` apply), `sen2cor`,
    `stac`, `series` (in `series_crs`, default the tiles' UTM zone) or `landsat8` (30 m: size
    a multiple of 6); every format holds the same reflectances. `s1`: Sentinel-1 VV/VH
    backscatter too, ascending and descending, `dates` dates each. `noise`: the pixel noise's
    standard deviation, relative to the reflectance (plus 0.01). `resolution`: the pixel size
    in metres (theia and series formats). Series only: `series_ndvi` writes one NDVI band
    per date (MODIS-like: masked pixels as fill values, no mask file, the same dates on every
    tile); `series_jp2` writes lossy JPEG 2000 files; `external_samples` writes
    `samples.csv`, that many labelled NDVI series to learn from (matched by position), and
    the config then keeps the ground truth for validation. `points`: the ground truth is
    that many points (`vector/ground_truth.gpkg`, EPSG:4326) in the ground-truth fields.
    `chunk_size`: the config's dask chunk (default: half the tile, 64 to 512)."""
    _check_options(tiles, size, dates, regions, seed, noise, cloud_cover, labels, layout,
                   r2_20m, format, series_crs, resolution, series_ndvi, series_jp2, points,
                   external_samples, chunk_size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = class_archetypes(classes)
    codes = np.array([NOMENCLATURE[a.name][0] for a in table])
    names = [tile_name(k) for k in range(tiles)]
    date_lists = acquisition_dates(seed, tiles, dates)
    if series_ndvi:  # composites: one date grid for every tile
        date_lists = [date_lists[0]] * tiles
    region_shapes = region_polygons(seed, regions, tiles, size, resolution)
    parcels = make_parcels(seed, tiles, size, classes, region_shapes, resolution)
    style = layouts.SeriesStyle(series_crs, series_ndvi, series_jp2)
    scene = Scene(out, seed, size, table, codes, parcels, layout, r2_20m, format, style, s1,
                  noise=noise, res=resolution, tiles=tiles)
    if format == "stac":
        scene.stac = layouts.StacWriter(out / FORMAT_PATHS["stac"][0])
    summary = {}
    for k, name in enumerate(names):
        covers = cloud_covers(seed, k, len(date_lists[k]), cloud_cover)
        summary[name] = write_tile(scene, k, date_lists[k], covers, last=k == tiles - 1)
    if scene.stac is not None:
        scene.stac.finish()
    polygons = write_vectors(out, parcels, table, codes, region_shapes, resolution)
    if points:
        layouts.ground_truth_points(parcels, table, codes, points, seed, resolution).to_file(
            out / "vector" / "ground_truth.gpkg")
    if external_samples:
        layouts.ndvi_table(scene, date_lists[0], external_samples).to_csv(
            out / "samples.csv", index=False)
    write_tables(out, table)
    summary_json = {
        "seed": seed,
        "size": size,
        "resolution": resolution,
        "crs": CRS,
        "format": format,
        "layout": layout,
        "r2_20m": r2_20m,
        "series_crs": series_crs,
        "series_ndvi": series_ndvi,
        "series_jp2": series_jp2,
        "labels": labels,
        "cloud_cover": cloud_cover,
        "noise": noise,
        "tiles": names,
        "dates": {n: [d.isoformat() for d in ds] for n, ds in zip(names, date_lists)},
        "products": {n: summary[n]["products"] for n in names},
        **({"s1": {n: summary[n]["s1"] for n in names}} if s1 else {}),
        "cloud_fraction": {n: summary[n]["cloud_fraction"] for n in names},
        "classes": [{"name": a.name, "code": int(c)} for a, c in zip(table, codes)],
        "regions": [str(r + 1) for r in range(regions)],
        "ground_truth_polygons": polygons,
        "ground_truth_points": points,
        "external_samples": external_samples,
    }
    (out / "scene.json").write_text(json.dumps(summary_json, indent=1, ensure_ascii=False))
    return write_config(out, names, size, labels, seed, format, s1, style, resolution,
                        bool(points), bool(external_samples), chunk_size)

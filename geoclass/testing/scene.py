"""The synthetic scene itself: tiles in UTM, regions, parcels with per-class phenology, their
spectra, texture, clouds and swath edges (shared by every writer: synth.py, layouts.py).

Every raster layer is computed window by window (`tile_windows`: blocks of `WINDOW` pixels,
fixed whatever the tile size), so generating a tile takes memory bounded by the window, not by
the tile; a layer's value at a pixel does not depend on the window it is computed in (texture
from counter-based noise, clouds sampled from a coarse field), and the full-tile functions
(`parcel_ids`, `texture`, `clouds`, `swath_edge`) assemble those windows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import shapely
from affine import Affine
from rasterio.features import rasterize
from rasterio.windows import Window
from scipy.ndimage import gaussian_filter, shift
from scipy.spatial import cKDTree

from geoclass.errors import GeoclassError

BANDS = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
BANDS_20M = frozenset({"B5", "B6", "B7", "B8A", "B11", "B12"})
NODATA = -10000
RES = 10.0
X0, Y_TOP = 300000.0, 4900000.0
CRS = "EPSG:32631"
CLOUD_BITS = 0b0000_0111  # MUSCATE CLM: any cloud (bit 0) | cloud (1) | mono-temporal test (2)
SHADOW_BITS = 0b0010_0001  # MUSCATE CLM: any cloud or shadow (bit 0) | cloud shadow (5)
PARCEL_AREA = 26.0**2  # mean Voronoi parcel area, pixels
GT_FRACTION = 0.4  # share of the parcels that become ground-truth polygons
MAX_DATES = 72
WINDOW = 1024  # side of the generation windows, px (even: 20 m bands are 2x2 means of them)
FORMATS = ("theia", "sen2cor", "stac", "series", "landsat8")
# where each format's products go and the chain key that points there
FORMAT_PATHS = {"theia": ("sensor_data", "s2_path"), "sen2cor": ("sen2cor", "s2_s2c_path"),
                "stac": ("stac", "stac_path"), "series": ("series", "series_path"),
                "landsat8": ("landsat8", "l8_path")}

# iota2's French nomenclature (running_iota2/nomenclature.txt and color.txt): name -> code, RGB.
NOMENCLATURE: dict[str, tuple[int, tuple[int, int, int]]] = {
    "batis denses": (1, (255, 0, 255)),
    "batis diffus": (2, (255, 85, 255)),
    "zones ind et com": (3, (255, 170, 255)),
    "surfaces routes": (4, (0, 255, 255)),
    "colza": (5, (255, 255, 0)),
    "cereales à pailles": (6, (208, 255, 0)),
    "protéagineux": (7, (161, 214, 0)),
    "soja": (8, (255, 171, 68)),
    "tournesol": (9, (214, 214, 0)),
    "maïs": (10, (255, 85, 0)),
    "riz": (11, (197, 255, 255)),
    "tubercules/racines": (12, (170, 170, 97)),
    "prairies": (13, (170, 170, 0)),
    "vergers": (14, (170, 170, 255)),
    "vignes": (15, (85, 0, 0)),
    "forets de feuillus": (16, (0, 156, 0)),
    "forets de coniferes": (17, (0, 50, 0)),
    "pelouses": (18, (170, 255, 0)),
    "landes ligneuses": (19, (85, 170, 127)),
    "surfaces minérales": (20, (255, 0, 0)),
    "plages et dunes": (21, (255, 184, 2)),
    "glaciers ou neiges": (22, (190, 190, 190)),
    "eau": (23, (0, 0, 255)),
    "autres": (255, (255, 255, 255)),
}

# Endmember reflectances over BANDS (B2 B3 B4 B5 B6 B7 B8 B8A B11 B12).
SPECTRA: dict[str, tuple[float, ...]] = {
    "green": (0.030, 0.060, 0.030, 0.095, 0.280, 0.380, 0.420, 0.440, 0.210, 0.100),
    "conifer": (0.020, 0.040, 0.022, 0.065, 0.170, 0.220, 0.250, 0.260, 0.120, 0.050),
    "dry": (0.070, 0.100, 0.130, 0.170, 0.210, 0.240, 0.270, 0.290, 0.380, 0.280),
    "flower": (0.050, 0.140, 0.150, 0.200, 0.300, 0.350, 0.380, 0.390, 0.250, 0.150),
    "soil": (0.080, 0.110, 0.150, 0.180, 0.210, 0.230, 0.250, 0.260, 0.330, 0.280),
    "litter": (0.040, 0.060, 0.070, 0.090, 0.120, 0.140, 0.160, 0.170, 0.200, 0.140),
    "water": (0.060, 0.055, 0.035, 0.025, 0.012, 0.010, 0.008, 0.008, 0.004, 0.003),
    "urban": (0.100, 0.110, 0.120, 0.135, 0.150, 0.160, 0.170, 0.180, 0.240, 0.220),
    "sand": (0.180, 0.220, 0.260, 0.290, 0.310, 0.320, 0.330, 0.340, 0.400, 0.350),
    "snow": (0.850, 0.840, 0.820, 0.800, 0.780, 0.760, 0.740, 0.720, 0.100, 0.060),
    "cloud": (0.550, 0.530, 0.520, 0.520, 0.520, 0.520, 0.520, 0.520, 0.400, 0.300),
}


@dataclass(frozen=True)
class Archetype:
    """A class's phenology: green, dry and flower cover fractions over the day of year."""

    name: str
    background: str = "soil"  # spectrum seen where nothing grows
    canopy: str = "green"  # spectrum of the green canopy
    bg_gain: float = 1.0  # brightness of the background
    g0: float = 0.0  # green cover before the season (winter crops, evergreens)
    amp: float = 0.0  # green cover added during the season
    up: float = 400.0  # green-up, day of year
    k_up: float = 10.0
    down: float = 400.0  # senescence, day of year
    k_down: float = 10.0
    dry: float = 0.0  # ripe/senescent cover between senescence and harvest
    harvest: float = 400.0
    autumn: float = 0.0  # green cover of the next crop, sown at `sow`
    sow: float = 400.0
    flower: float = 0.0  # flowering cover (rapeseed), around `bloom`
    bloom: float = 110.0
    cuts: tuple[float, ...] = ()  # mowing days (grassland)


# Base archetypes, in the order classes are taken; the first eight are the default scene.
# fmt: off
ARCHETYPES: tuple[Archetype, ...] = (
    Archetype("cereales à pailles", g0=0.2, amp=0.7, up=75, k_up=12, down=160, k_down=8,
              dry=0.65, harvest=195, autumn=0.15, sow=295),
    Archetype("colza", g0=0.35, amp=0.55, up=55, down=150, k_down=8, dry=0.55, harvest=185,
              autumn=0.35, sow=250, flower=0.4, bloom=108),
    Archetype("maïs", amp=0.9, up=165, k_up=9, down=255, dry=0.6, harvest=290),
    Archetype("tournesol", amp=0.8, up=145, k_up=8, down=215, k_down=8, dry=0.7, harvest=260),
    Archetype("prairies", g0=0.5, amp=0.35, up=80, k_up=15, down=290, k_down=20, cuts=(150, 215)),
    Archetype("forets de feuillus", background="litter", g0=0.15, amp=0.8, up=115, k_up=7,
              down=295, dry=0.3, harvest=330),
    Archetype("eau", background="water"),
    Archetype("batis denses", background="urban", g0=0.06, amp=0.05, up=120, down=270),
    Archetype("forets de coniferes", background="litter", canopy="conifer", g0=0.85, amp=0.07,
              up=110, down=290),
)
# fmt: on

# Further classes: variants of the archetypes (other timing, amplitude or background).
VARIANTS: tuple[tuple[str, str, dict], ...] = (
    ("soja", "maïs", dict(amp=0.8, up=175, down=250, harvest=275)),
    ("protéagineux", "cereales à pailles", dict(g0=0.0, up=90, down=160, harvest=185, autumn=0)),
    ("tubercules/racines", "maïs", dict(up=135, down=270, dry=0.2, harvest=285)),
    ("vergers", "forets de feuillus", dict(background="soil", g0=0.25, amp=0.45, up=105)),
    ("vignes", "forets de feuillus", dict(background="soil", g0=0.05, amp=0.4, up=135)),
    ("pelouses", "prairies", dict(g0=0.35, amp=0.25, down=185, k_down=12, cuts=())),
    ("landes ligneuses", "forets de coniferes", dict(background="soil", g0=0.5, amp=0.2)),
    ("batis diffus", "batis denses", dict(g0=0.25, amp=0.2, bg_gain=0.9)),
    ("zones ind et com", "batis denses", dict(g0=0.02, amp=0.0, bg_gain=1.3)),
    ("surfaces routes", "batis denses", dict(g0=0.03, amp=0.0, bg_gain=0.65)),
    ("surfaces minérales", "batis denses", dict(background="soil", g0=0, amp=0, bg_gain=1.4)),
    ("riz", "maïs", dict(background="water", up=150, down=245, harvest=265)),
    ("plages et dunes", "eau", dict(background="sand")),
    ("glaciers ou neiges", "eau", dict(background="snow")),
)


def class_archetypes(classes: int) -> list[Archetype]:
    """The first `classes` archetypes, variants after the base ones."""
    by_name = {a.name: a for a in ARCHETYPES}
    table = list(ARCHETYPES)
    table += [replace(by_name[base], name=name, **changes) for name, base, changes in VARIANTS]
    if not 2 <= classes <= len(table):
        raise SceneOptionError(f"classes must be in 2..{len(table)}, got {classes}")
    return table[:classes]


class SceneOptionError(GeoclassError, ValueError):
    """An option of the scene generator out of its range (said in the message)."""


# ---------------------------------------------------------------- randomness, tiles, dates


def _rng(seed: int, *keys: int) -> np.random.Generator:
    """An independent, reproducible stream for one purpose (keys: what, tile, date, band...)."""
    return np.random.default_rng([seed, *keys])


_DATES, _REGIONS, _PARCELS, _TEXTURE, _CLOUDS, _NOISE, _EDGE, _GAIN = range(1, 9)

_GAMMA = np.uint64(0x9E3779B97F4A7C15)  # splitmix64's increment and mixing constants
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def pixel_normals(seed: int, keys: tuple[int, ...], rows: np.ndarray,
                  cols: np.ndarray) -> np.ndarray:
    """Standard normal noise at global pixel (rows x cols), float32: a pure function of the
    stream (seed, keys) and the pixel (splitmix64 of a per-pixel counter, then Box-Muller), so
    any window, with or without a halo, sees the same values wherever it lies."""
    stream = np.random.SeedSequence([seed, *keys]).generate_state(1, np.uint64)[0]
    high = (np.asarray(rows, np.int64) + 2**31).astype(np.uint64) << np.uint64(32)
    low = (np.asarray(cols, np.int64) + 2**31).astype(np.uint64)
    x = high[:, None] | low[None, :]  # one counter per pixel
    x *= _GAMMA
    x += stream
    x ^= x >> np.uint64(30)
    x *= _MIX1
    x ^= x >> np.uint64(27)
    x *= _MIX2
    x ^= x >> np.uint64(31)
    u1 = (x >> np.uint64(32)).astype(np.float64)
    u1 += 0.5
    u1 *= 2.0**-32  # in (0, 1)
    u2 = (x & np.uint64(0xFFFFFFFF)).astype(np.float64)
    del x
    u2 *= 2 * np.pi * 2.0**-32
    np.log(u1, out=u1)
    u1 *= -2.0
    np.sqrt(u1, out=u1)
    np.cos(u2, out=u2)
    u1 *= u2
    return u1.astype(np.float32)


def tile_windows(size: int, step: int | None = None) -> list[Window]:
    """The generation windows of a size x size tile, row by row (the last ones smaller)."""
    step = step or WINDOW
    return [Window(c, r, min(step, size - c), min(step, size - r))
            for r in range(0, size, step) for c in range(0, size, step)]


def window_key(window: Window) -> tuple[int, int]:
    """The window's (row, column) in the WINDOW grid: keys its random streams."""
    return int(window.row_off) // WINDOW, int(window.col_off) // WINDOW


def window_pixels(window: Window) -> tuple[np.ndarray, np.ndarray]:
    """Global row and column indices of a window's pixels."""
    r0, c0 = int(window.row_off), int(window.col_off)
    return np.arange(r0, r0 + int(window.height)), np.arange(c0, c0 + int(window.width))


def assemble(size: int, dtype, layer: Callable[[Window], np.ndarray]) -> np.ndarray:
    """A full-tile array from a layer computed window by window."""
    out = np.empty((size, size), dtype)
    for window in tile_windows(size):
        out[window.toslices()] = layer(window)
    return out


def tile_name(k: int) -> str:
    """MGRS-looking names along UTM zone 31: T31TCJ, T31TDJ, T31TEJ ... then the next row."""
    columns, rows = "CDEFGH", "JKLMNPQRSTUV"
    return f"T31T{columns[k % len(columns)]}{rows[(k // len(columns)) % len(rows)]}"


def tile_transform(k: int, size: int, res: float = RES) -> Affine:
    return Affine(res, 0.0, X0 + k * size * res, 0.0, -res, Y_TOP)


def acquisition_dates(seed: int, tiles: int, dates: int) -> list[list[dt.date]]:
    """Irregular 5-day revisits in 2018, one per stratum; other tiles shifted, one date swapped."""
    first = dt.date(2018, 1, 3)
    slots = np.arange(MAX_DATES)  # 5-day slots; the last one + 4 days is still in 2018
    rng = _rng(seed, _DATES)
    base = np.array([rng.choice(s) for s in np.array_split(slots, dates)])
    lists = []
    for k in range(tiles):
        chosen = base
        if k > 0 and 3 < dates < MAX_DATES:  # another orbit: days off, one date swapped
            drop = rng.integers(1, dates - 1)
            add = rng.choice(np.setdiff1d(slots, base))
            chosen = np.sort(np.append(np.delete(base, drop), add))
        offset = (3 * k) % 5
        lists.append([first + dt.timedelta(days=int(5 * s) + offset) for s in chosen])
    return lists


def product_name(tile: str, date: dt.date, index: int, rng: np.random.Generator) -> str:
    """THEIA/MUSCATE product name, alternating Sentinel-2A and 2B."""
    platform = "SENTINEL2A" if index % 2 == 0 else "SENTINEL2B"
    clock = f"10{rng.integers(50, 60):02d}{rng.integers(0, 60):02d}-{rng.integers(0, 1000):03d}"
    return f"{platform}_{date:%Y%m%d}-{clock}_L2A_{tile}_C_V2-2"


# ---------------------------------------------------------------- regions and parcels


def region_polygons(seed: int, regions: int, tiles: int, size: int,
                    res: float = RES) -> list[shapely.Geometry]:
    """Slanted, wavy bands across the scene, one per region, cutting through tiles and parcels."""
    width, height = tiles * size, size  # pixels
    rng = _rng(seed, _REGIONS)
    step = width / regions
    slope = 0.35 * step / height
    amp = min(0.04 * height, 0.15 * step)
    rows = np.linspace(-1.0, height + 1.0, max(64, height // 4))
    edges = [np.full_like(rows, -width)]
    for k in range(1, regions):
        offset = rng.uniform(-0.1, 0.1) * step
        phase = rng.uniform(0, 2 * np.pi)
        wave = amp * np.sin(2 * np.pi * rows / (height / 1.5) + phase)
        edges.append(k * step + offset + slope * (rows - height / 2) + wave)
    edges.append(np.full_like(rows, 2.0 * width))
    scene = shapely.box(X0, Y_TOP - height * res, X0 + width * res, Y_TOP)
    polygons = []
    for left, right in zip(edges[:-1], edges[1:]):
        cols = np.concatenate([left, right[::-1]])
        ring = np.column_stack([X0 + cols * res, Y_TOP - np.concatenate([rows, rows[::-1]]) * res])
        polygons.append(shapely.intersection(shapely.Polygon(ring), scene))
    return polygons


@dataclass
class Parcels:
    """Voronoi fields over the whole scene and what each one holds."""

    seeds: np.ndarray  # (n, 2) x, y in metres
    cells: np.ndarray  # shapely polygons, clipped to the scene
    region: np.ndarray  # majority region index
    cls: np.ndarray  # class index
    ground_truth: np.ndarray  # bool: part of vector/ground_truth.shp
    shift: np.ndarray  # phenology shift, days (field + region)
    gain: np.ndarray  # green cover amplitude factor (field x region)
    soil: np.ndarray  # background brightness factor (field x region)

    @cached_property
    def tree(self) -> shapely.STRtree:
        return shapely.STRtree(self.cells)

    @cached_property
    def nearest(self) -> cKDTree:
        return cKDTree(self.seeds)


def make_parcels(seed: int, tiles: int, size: int, classes: int, regions: list,
                 res: float = RES) -> Parcels:
    """Parcels, their regions, the ground-truth subset and a class per parcel."""
    rng = _rng(seed, _PARCELS)
    width, height = tiles * size * res, size * res
    n = max(classes * len(regions), int(round(tiles * size * size / PARCEL_AREA)))
    seeds = np.column_stack([X0 + rng.uniform(0, width, n), Y_TOP - rng.uniform(0, height, n)])
    scene = shapely.box(X0, Y_TOP - height, X0 + width, Y_TOP)
    cells = shapely.get_parts(
        shapely.voronoi_polygons(shapely.multipoints(seeds), extend_to=scene, ordered=True)
    )
    cells = shapely.intersection(cells, scene)
    region = majority_region(cells, regions)
    # Ground truth: ~40 % of the parcels big enough to keep pure pixels once shrunk,
    # drawn per region; classes dealt round-robin so every class is in every region.
    usable = shapely.area(shrink(cells, res)) >= 16 * res * res
    cls = rng.integers(0, classes, n)
    ground_truth = np.zeros(n, bool)
    for r in range(len(regions)):
        candidates = rng.permutation(np.flatnonzero(usable & (region == r)))
        wanted = max(round(GT_FRACTION * len(candidates)), min(3 * classes, len(candidates) // 2))
        picked = candidates[: min(len(candidates), max(wanted, classes))]
        ground_truth[picked] = True
        cls[picked] = rng.permutation(classes)[np.arange(len(picked)) % classes]
    # Field-level variability, then the regional climate and soils on top of it.
    reg_shift, reg_gain, reg_soil = region_effects(seed, len(regions))
    shift_days = rng.normal(0.0, 7.0, n) + reg_shift[region]
    gain = np.clip(rng.normal(1.0, 0.1, n), 0.7, 1.3) * reg_gain[region]
    soil = np.clip(rng.normal(1.0, 0.08, n), 0.75, 1.25) * reg_soil[region]
    return Parcels(seeds, cells, region, cls, ground_truth, shift_days, gain, soil)


def majority_region(cells: np.ndarray, regions: list) -> np.ndarray:
    """Index of the region holding most of each cell (overlays only the cells a border cuts)."""
    areas = shapely.area(cells)
    overlap = np.zeros((len(cells), len(regions)))
    for r, shape in enumerate(regions):
        shapely.prepare(shape)
        inside = shapely.contains(shape, cells)
        cut = shapely.intersects(shape, cells) & ~inside
        overlap[inside, r] = areas[inside]
        overlap[cut, r] = shapely.area(shapely.intersection(cells[cut], shape))
    return overlap.argmax(axis=1)


def region_effects(seed: int, regions: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per region: phenology shift (15-25 days apart), green amplitude and soil brightness."""
    rng = _rng(seed, _REGIONS, 1)
    steps = np.concatenate([[0.0], rng.uniform(15, 25, regions - 1)]).cumsum()
    shift_days = steps - steps.mean()
    gain = np.where(np.arange(regions) % 2 == 0, 1.0, 0.85) * rng.uniform(0.95, 1.05, regions)
    soil = np.where(np.arange(regions) % 2 == 0, 1.0, 1.15) * rng.uniform(0.95, 1.05, regions)
    return shift_days, gain, soil


def shrink(cells: np.ndarray, res: float = RES) -> np.ndarray:
    """Polygons one pixel inside: every pixel whose centre they hold lies wholly in the field."""
    return shapely.buffer(cells, -res, join_style="mitre")


def parcel_ids_window(parcels: Parcels, transform: Affine, window: Window) -> np.ndarray:
    """The parcel index (int32) of each pixel of a window of the tile at `transform`: Voronoi
    cells burnt in, any pixel left by nearest seed."""
    h, w = int(window.height), int(window.width)
    at = transform * Affine.translation(int(window.col_off), int(window.row_off))
    left, top, res = at.c, at.f, at.a
    box = shapely.box(left, top - h * res, left + w * res, top)
    near = parcels.tree.query(box, predicate="intersects")
    shapes = zip(parcels.cells[near], near.astype(np.int32))
    out = rasterize(shapes, out_shape=(h, w), transform=at, fill=-1, dtype="int32")
    rows, cols = np.nonzero(out < 0)  # centres exactly on a cell edge, if any
    if len(rows):
        x, y = left + res * (cols + 0.5), top - res * (rows + 0.5)
        out[rows, cols] = parcels.nearest.query(np.column_stack([x, y]))[1]
    return out


def parcel_ids(parcels: Parcels, transform: Affine, size: int) -> np.ndarray:
    """The parcel index of each pixel of the tile (intp: what np.take wants), by windows."""
    return assemble(size, np.intp, lambda w: parcel_ids_window(parcels, transform, w))


# ---------------------------------------------------------------- phenology and reflectance


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def cover_fractions(
    doy: float, table: list[Archetype], parcels: Parcels
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Green, dry and flower cover of every parcel on day of year `doy`."""

    def param(name: str) -> np.ndarray:
        return np.array([getattr(a, name) for a in table], float)[parcels.cls]

    t = doy - parcels.shift
    harvested = _sigmoid((t - param("harvest")) / 4.0)
    season = _sigmoid((t - param("up")) / param("k_up"))
    senesced = _sigmoid((t - param("down")) / param("k_down"))
    green = (param("g0") + param("amp") * parcels.gain * season * (1 - senesced)) * (1 - harvested)
    green += param("autumn") * _sigmoid((t - param("sow")) / 10.0)
    for i, archetype in enumerate(table):  # mowing: the grass cover drops, then grows back
        for day in archetype.cuts:
            green *= 1 - 0.4 * np.exp(-(((t - day - 7) / 9.0) ** 2)) * (parcels.cls == i)
    dry = param("dry") * senesced * (1 - harvested)
    flower = param("flower") * np.exp(-(((t - param("bloom")) / 12.0) ** 2))
    green, dry = np.clip(green, 0, 0.97), np.clip(dry, 0, 1 - green)
    return green, dry, np.clip(flower, 0, 1 - green - dry)


def parcel_spectra(doy: float, table: list[Archetype], parcels: Parcels):
    """Per parcel and band: the reflectance without green cover, and what full cover adds."""
    green, dry, flower = cover_fractions(doy, table, parcels)
    spectra = {k: np.array(v, np.float32) for k, v in SPECTRA.items()}
    canopy = np.stack([spectra[a.canopy] for a in table])[parcels.cls]
    background = np.stack([spectra[a.background] * a.bg_gain for a in table])[parcels.cls]
    background = background * parcels.soil[:, None]
    is_water = np.array([a.background == "water" for a in table])[parcels.cls]
    turbidity = 1 + 0.25 * np.sin(2 * np.pi * (doy - 60) / 365.0)  # spring floods
    background[is_water] *= turbidity
    base = background + dry[:, None] * (spectra["dry"] - background)
    base += flower[:, None] * (spectra["flower"] - background)
    return base.astype(np.float32), (green[:, None] * (canopy - background)).astype(np.float32)


_TEX_SIGMA, _TEX_HALO = 2.0, 8  # patch smoothing, px, and its kernel's radius (4 sigma)


def _filtered_noise_std(sigma: float, radius: int) -> float:
    """Standard deviation of unit white noise after the (separable) gaussian filter."""
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    return float((kernel**2).sum())  # sqrt of sum(k2D**2), k2D the outer product


_PATCH_STD = _filtered_noise_std(_TEX_SIGMA, _TEX_HALO)


def texture_window(seed: int, tile: int, window: Window) -> np.ndarray:
    """Static within-field variability of the green cover (soil patches, density) over a
    window: smoothed noise filtered on the window and its halo, then cropped."""
    rows, cols = window_pixels(window)
    halo = _TEX_HALO
    rows_h = np.arange(rows[0] - halo, rows[-1] + 1 + halo)
    cols_h = np.arange(cols[0] - halo, cols[-1] + 1 + halo)
    white = pixel_normals(seed, (_TEXTURE, tile, 0), rows_h, cols_h)
    patches = gaussian_filter(white, _TEX_SIGMA, truncate=halo / _TEX_SIGMA)
    tex = patches[halo:-halo, halo:-halo] * np.float32(0.12 / _PATCH_STD)  # patches
    del white, patches
    grain = pixel_normals(seed, (_TEXTURE, tile, 1), rows, cols)
    tex += np.multiply(grain, np.float32(0.05), out=grain)  # pixel to pixel
    del grain
    tex += np.float32(1.0)
    return np.clip(tex, 0.7, 1.3, out=tex)


def texture(seed: int, tile: int, size: int) -> np.ndarray:
    """The texture of the whole tile (float32), by windows."""
    return assemble(size, np.float32, lambda w: texture_window(seed, tile, w))


# ---------------------------------------------------------------- clouds and swath edges


def cloud_covers(seed: int, tile: int, dates: int, cloud_cover: float) -> np.ndarray:
    """Per-date flagged fractions averaging `cloud_cover`: some dates clear, some very cloudy."""
    if cloud_cover <= 0:
        return np.zeros(dates)
    rng = _rng(seed, _CLOUDS, tile)
    p_clear = 0.35 * (1 - cloud_cover)
    mean = cloud_cover / (1 - p_clear)
    covers = np.where(
        rng.random(dates) < p_clear, 0.0, rng.beta(1.2, 1.2 * (1 - mean) / mean, dates)
    )
    for _ in range(8):  # rescale to the wanted average, within bounds
        covers = np.clip(covers * cloud_cover / max(covers.mean(), 1e-6), 0, 0.95)
    return covers


@dataclass
class Clouds:
    opacity: np.ndarray  # 0..1, float32, over a window (or the full tile)
    shadow: np.ndarray  # bool
    clm: np.ndarray  # uint8 MUSCATE cloud mask


_CORE = 0.6  # only the thicker part of a cloud casts a shadow


@dataclass
class CloudField:
    """One date's clouds: a coarse smoothed-noise field and its thresholds, sampled over any
    window of the tile (bilinear, as `scipy.ndimage.zoom(order=1)` of the field would be)."""

    field: np.ndarray  # (low, low)
    size: int  # tile side, px
    threshold: float  # flagged cloud above
    thin: float  # some opacity above
    cast: tuple[int, int]  # shadow shift, tile rows and columns

    def sample(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """The field at tile pixels (rows x cols), float32."""
        low = self.field.shape[0]
        scale = (low - 1) / max(self.size - 1, 1)

        def weights(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            at = index * scale
            below = np.clip(np.floor(at).astype(np.intp), 0, low - 2)
            return below, at - below

        r, fr = weights(rows)
        c, fc = weights(cols)
        by_row = self.field[r] * (1 - fr)[:, None] + self.field[r + 1] * fr[:, None]
        out = by_row[:, c] * (1 - fc)
        out += by_row[:, c + 1] * fc
        return out.astype(np.float32)

    def window(self, window: Window) -> Clouds:
        """Opacity, shadows and the CLM mask over a window."""
        rows, cols = window_pixels(window)
        full = self.sample(rows, cols)
        threshold, thin = np.float32(self.threshold), np.float32(self.thin)
        # Opacity: up to 0.25 over the unflagged thin edge, then up to 0.95 in the cores.
        opacity = np.subtract(full, thin)
        opacity *= np.float32(0.25 / max(self.threshold - self.thin, 1e-6))
        np.clip(opacity, 0, 0.25, out=opacity)
        core_opacity = np.subtract(full, threshold)
        core_opacity *= np.float32(0.7 / 0.8)
        opacity += np.clip(core_opacity, 0, 0.7, out=core_opacity)
        del core_opacity
        cloud = full > threshold
        del full
        # The shadow: the thick cores seen from the sun, nothing cast from outside the tile.
        src_rows, src_cols = rows - self.cast[0], cols - self.cast[1]
        inside_r = (src_rows >= 0) & (src_rows < self.size)
        inside_c = (src_cols >= 0) & (src_cols < self.size)
        thick = self.sample(np.clip(src_rows, 0, self.size - 1),
                            np.clip(src_cols, 0, self.size - 1)) > threshold + np.float32(_CORE)
        thick &= inside_r[:, None]
        thick &= inside_c[None, :]
        shadow = thick & ~cloud
        clm = cloud.astype(np.uint8) * np.uint8(CLOUD_BITS)
        clm[shadow] = SHADOW_BITS
        return Clouds(opacity, shadow, clm)

    def full(self) -> Clouds:
        """The clouds of the whole tile, by windows."""
        size = self.size
        out = Clouds(np.empty((size, size), np.float32), np.empty((size, size), bool),
                     np.empty((size, size), np.uint8))
        for window in tile_windows(size):
            part = self.window(window)
            for name in ("opacity", "shadow", "clm"):
                getattr(out, name)[window.toslices()] = getattr(part, name)
        return out


def cloud_field(seed: int, tile: int, date: int, size: int, cover: float) -> CloudField | None:
    """Smoothed-noise cloud blobs and their shadows, flagged but for thin edges (~3 %)."""
    if cover <= 0:
        return None
    rng = _rng(seed, _CLOUDS, tile, date)
    low = min(size, 128)  # blobs drawn on a coarse grid, then smoothly upsampled
    field = gaussian_filter(rng.standard_normal((low, low)), low / 14, mode="wrap")
    detail = gaussian_filter(rng.standard_normal((low, low)), low / 50, mode="wrap")
    field = field / field.std() + 0.35 * detail / detail.std()
    offset = np.array([-low / 18, -low / 22]) * rng.uniform(0.7, 1.3)  # sun from the south-east

    def flagged(threshold: float) -> float:
        cloud = field > threshold
        cast = shift((field > threshold + _CORE).astype(float), offset, order=0) > 0.5
        return float((cloud | cast).mean())

    lo, hi = float(field.min()) - 1, float(field.max()) + 1
    for _ in range(30):  # bisection: threshold whose clouds + shadows flag `cover`
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if flagged(mid) > cover else (lo, mid)
    threshold = hi
    thin = float(np.quantile(field, 1 - min(1.0, 1.03 * float((field > threshold).mean()))))
    cast = np.rint(offset * size / low).astype(int)
    return CloudField(field, size, threshold, thin, (int(cast[0]), int(cast[1])))


def clouds(seed: int, tile: int, date: int, size: int, cover: float) -> Clouds | None:
    """The clouds of the whole tile (opacity, shadow, CLM), by windows."""
    sky = cloud_field(seed, tile, date, size, cover)
    return None if sky is None else sky.full()


@dataclass(frozen=True)
class SwathEdge:
    """A thin slanted no-data strip along the tile's right edge."""

    size: int
    width: float
    tilt: float

    def window(self, window: Window) -> np.ndarray:
        rows, cols = window_pixels(window)
        return cols[None, :] >= self.size - self.width - self.tilt * rows[:, None] / self.size


def swath(seed: int, date: int, size: int) -> SwathEdge | None:
    """On about half the dates, the swath edge cuts the tile."""
    rng = _rng(seed, _EDGE, date)
    if rng.random() < 0.5:
        return None
    width = max(2.0, rng.uniform(0.03, 0.07) * size)
    tilt = rng.uniform(-0.02, 0.02) * size
    return SwathEdge(size, width, tilt)


def swath_edge(seed: int, date: int, size: int) -> np.ndarray | None:
    """The swath edge's no-data pixels over the whole tile (bool), or None."""
    edge = swath(seed, date, size)
    return None if edge is None else edge.window(Window(0, 0, size, size))

"""Reference data (ground truth, regions, nomenclature, colors): iota2's rules, checked, loaded."""

from __future__ import annotations

import colorsys
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely

from geoclass.atomic import atomic_output
from geoclass.errors import InputError
from geoclass.grid import TileGrid

log = logging.getLogger(__name__)

POLYGONAL = ("Polygon", "MultiPolygon")
PUNCTUAL = ("Point", "MultiPoint")
_MAX_LISTED = 10


# ---------------------------------------------------------------- vector files


def read_vector(path) -> gpd.GeoDataFrame:
    """Read any OGR vector file (first layer), with OGR's FIDs as index."""
    if not Path(path).is_file():
        raise InputError([f"{path}: file not found"])
    try:
        return pyogrio.read_dataframe(path, fid_as_index=True)
    except Exception as err:  # noqa: BLE001 - any GDAL failure means "unreadable"
        raise InputError([f"{path}: not a readable vector file ({err})"]) from err


def check_ground_truth(
    path, data_field: str, tiles: list[TileGrid] | None = None, repair: bool = False
) -> list[str]:
    """Every problem of a ground-truth file (empty list: fine); writes nothing."""
    name = Path(path).name
    try:
        gdf = read_vector(path)
    except InputError as err:
        return err.problems
    problems = []
    if not (name[:1].isascii() and name[:1].isalpha()):
        problems.append(f"{name}: the file name must start with a letter (iota2 rule); rename it")
    if gdf.empty:
        return problems + [f"{name}: the file has no feature (no polygon, no point): give it "
                           "the labelled polygons or points of the ground truth"]
    points = is_point_file(gdf)
    if points:
        problems += _check_points(gdf, name, tiles)
    else:
        problems += _check_polygons(gdf, name, "ground truth", tiles, repair)
    if _has_field(gdf, name, data_field, problems):
        problems += check_labels(gdf[data_field], name, data_field,
                                 item="point" if points else "polygon")
        if points and tiles and gdf.crs is not None:
            problems += _shared_pixels(gdf, data_field, name, tiles)
    return problems


def is_point_file(gdf: gpd.GeoDataFrame) -> bool:
    """Whether a ground truth is made of points: more (Multi)Points than polygons."""
    types = gdf.geom_type.to_numpy()
    return np.isin(types, PUNCTUAL).sum() > np.isin(types, POLYGONAL).sum()


def check_regions(path, region_field: str, tiles: list[TileGrid] | None = None) -> list[str]:
    """Every problem of a region file (empty list: fine); writes nothing."""
    name = Path(path).name
    try:
        gdf = read_vector(path)
    except InputError as err:
        return err.problems
    if gdf.empty:
        return [f"{name}: the file has no polygon: give it the region polygons, or leave "
                "chain.region_path out (the whole area is then region 1)"]
    problems = _check_polygons(gdf, name, "regions", tiles, repair=False)
    if _has_field(gdf, name, region_field, problems):
        bad = [(fid, v) for fid, v in gdf[region_field].items() if as_int(v) is None]
        if bad:
            listed = ", ".join(f"FID {fid} ({v!r})" for fid, v in bad[:_MAX_LISTED])
            problems.append(
                f"{name}: {listed}{_more(bad)}: field '{region_field}' must hold integers; "
                "give these polygons an integer region"
            )
    return problems


def load_ground_truth(path, data_field: str, crs=None, repair: bool = False) -> gpd.GeoDataFrame:
    """The ground truth, repaired (if asked: polygons only) and in `crs` (if given)."""
    gdf = read_vector(path)
    if repair:
        geoms = gdf.geometry.values.copy()
        polygonal = np.isin(gdf.geom_type.to_numpy(), POLYGONAL)
        geoms[polygonal] = _make_valid(geoms[polygonal])
        gdf = gdf.set_geometry(geoms)
    return gdf.to_crs(crs) if crs is not None else gdf


def load_regions(path, region_field: str, crs=None) -> gpd.GeoDataFrame:
    """The regions as columns `region` (int) and geometry, in `crs` (if given)."""
    gdf = read_vector(path)
    region = gdf[region_field].map(as_int) if region_field in gdf.columns else None
    if region is None or region.isna().any():
        raise InputError(check_regions(path, region_field))
    region = region.astype("int64")
    out = gpd.GeoDataFrame({"region": region}, geometry=gdf.geometry.values, crs=gdf.crs)
    return out.to_crs(crs) if crs is not None else out


def _has_field(gdf: gpd.GeoDataFrame, name: str, field: str, problems: list[str]) -> bool:
    if field in gdf.columns and field != gdf.geometry.name:
        return True
    fields = [c for c in gdf.columns if c != gdf.geometry.name]
    hint = [c for c in fields if c.lower() == field.lower()]
    problems.append(
        f"{name}: no field '{field}'; fields are: {', '.join(fields) or 'none'}"
        + (f" (did you mean '{hint[0]}'?)" if hint else "")
    )
    return False


def _check_geometries(gdf, name: str, accepted, must: str) -> tuple[list[str], np.ndarray]:
    """CRS, empty geometries and geometry types; returns the problems and which features
    have an accepted non-empty geometry."""
    problems = []
    if gdf.crs is None:
        problems.append(f"{name}: no CRS (missing .prj?); define the file's projection")
    geoms = gdf.geometry.values
    fids = gdf.index.to_numpy()
    types = gdf.geom_type.to_numpy()
    empty = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    if empty.any():
        problems.append(f"{name}: {_fids(fids[empty])}: empty geometry; delete these features")
    good = ~empty & np.isin(types, accepted)
    for type_name in pd.unique(types[~empty & ~good]):
        problems.append(
            f"{name}: {_fids(fids[~empty & (types == type_name)])}: {type_name} geometry; {must}"
        )
    return problems, good


def _check_points(gdf, name: str, tiles) -> list[str]:
    """The vector rules of a point ground truth: CRS, geometry types, empty, tile cover."""
    problems, good = _check_geometries(
        gdf, name, PUNCTUAL, "this ground truth is made of points, and a file holds points "
        "or polygons, not both")
    if tiles and gdf.crs is not None and good.any():
        problems += _tile_cover(gdf.geometry[good], name, tiles, "point")
    return problems


def _shared_pixels(gdf, field: str, name: str, tiles: list[TileGrid]) -> list[str]:
    """Points with different labels in the same pixel of a tile."""
    parts = gdf[[field, gdf.geometry.name]].explode(index_parts=False)
    parts = parts[parts.geom_type.to_numpy() == "Point"]
    clashes = []
    for tile in tiles:
        local = parts.geometry.to_crs(tile.crs.to_wkt())
        rows, cols = pixel_of(local.x.to_numpy(), local.y.to_numpy(), tile.transform)
        frame = pd.DataFrame({"fid": parts.index, "label": parts[field].to_numpy(),
                              "row": rows, "col": cols})
        frame = frame[(rows >= 0) & (rows < tile.height) & (cols >= 0) & (cols < tile.width)]
        for (row, col), pixel in frame.groupby(["row", "col"], sort=True):
            if pixel["label"].nunique() > 1:
                fids = " and ".join(map(str, sorted(pd.unique(pixel["fid"]))))
                clashes.append(f"FID {fids} in tile {tile.name} row {row} col {col}")
    if not clashes:
        return []
    return [f"{name}: points with different labels in the same pixel ({listed(clashes, '; ')}); "
            "keep one label per pixel"]


def pixel_of(x: np.ndarray, y: np.ndarray, transform) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of the pixel that holds each point (a point on a pixel edge belongs to
    the pixel on its right and below, as GDAL burns points)."""
    cols, rows = ~transform * (np.asarray(x, float), np.asarray(y, float))
    return np.floor(rows).astype(np.int64), np.floor(cols).astype(np.int64)


def _check_polygons(gdf, name: str, kind: str, tiles, repair: bool) -> list[str]:
    """CRS, geometry types, empty, invalid, overlaps and tile cover; the vector rules."""
    problems, polygonal = _check_geometries(gdf, name, POLYGONAL, f"{kind} must be polygons")
    geoms = gdf.geometry.values
    fids = gdf.index.to_numpy()
    valid = polygonal & shapely.is_valid(geoms)
    invalid = polygonal & ~valid
    if invalid.any() and not repair:
        reasons = [
            f"{fid} ({shapely.is_valid_reason(g)})" for fid, g in zip(fids[invalid], geoms[invalid])
        ]
        problems.append(
            f"{name}: FID {', '.join(reasons[:_MAX_LISTED])}{_more(reasons)}: invalid geometry; "
            "fix them or set repair"
        )
    usable = valid | (invalid & repair)
    good = _make_valid(geoms[usable]) if repair else geoms[usable]
    good_fids = fids[usable]
    pairs = _overlaps(good)
    if len(pairs):
        listed = "; ".join(f"FID {good_fids[i]} and {good_fids[j]}" for i, j in pairs[:_MAX_LISTED])
        problems.append(
            f"{name}: polygons overlap ({listed}{_more(pairs)}); "
            "remove the overlaps so each pixel has one label"
        )
    if tiles and gdf.crs is not None and len(good):
        problems += _tile_cover(gpd.GeoSeries(good, index=good_fids, crs=gdf.crs), name,
                                tiles, "polygon")
    return problems


def _tile_cover(geoms: gpd.GeoSeries, name: str, tiles, noun: str) -> list[str]:
    """A problem if no geometry meets the tiles; a warning naming those outside every tile."""
    inside = _in_tiles(geoms, tiles)
    if not inside.any():
        names = ", ".join(t.name for t in tiles)
        return [f"{name}: no {noun} intersects the tiles ({names}); "
                "check the file's CRS and the tile list"]
    if not inside.all():
        log.warning("%s: %s: outside every tile, ignored", name, _fids(geoms.index[~inside]))
    return []


def _overlaps(geoms: np.ndarray) -> np.ndarray:
    """Positional pairs (i < j) of polygons that share a positive area."""
    if len(geoms) < 2:
        return np.empty((0, 2), dtype=int)
    left, right = gpd.GeoSeries(geoms).sindex.query(geoms, predicate="intersects")
    keep = left < right
    left, right = left[keep], right[keep]
    area = shapely.area(shapely.intersection(geoms[left], geoms[right]))
    return np.column_stack([left, right])[area > 0]


def _in_tiles(polygons: gpd.GeoSeries, tiles: list[TileGrid]) -> np.ndarray:
    """Which polygons intersect at least one tile (tile edges densified, then reprojected)."""
    inside = np.zeros(len(polygons), dtype=bool)
    for tile in tiles:
        left, bottom, right, top = tile.bounds
        box = shapely.segmentize(shapely.box(*tile.bounds), max(right - left, top - bottom) / 50)
        footprint = gpd.GeoSeries([box], crs=tile.crs.to_wkt()).to_crs(polygons.crs)
        _, hits = polygons.sindex.query(footprint.values, predicate="intersects")
        inside[hits] = True
    return inside


def _make_valid(geoms: np.ndarray) -> np.ndarray:
    """shapely.make_valid, keeping only the polygonal parts."""
    fixed = shapely.make_valid(geoms)
    out = []
    for geom in fixed:
        if geom is None or geom.geom_type in POLYGONAL:
            out.append(geom)
        else:
            parts = [p for p in shapely.get_parts(geom) if p.geom_type in POLYGONAL]
            out.append(shapely.union_all(parts) if parts else shapely.Polygon())
    return np.array(out, dtype=object)


def check_labels(values: pd.Series, name: str, field: str, ids=None,
                 item: str = "polygon") -> list[str]:
    """Labels must be integers or strings, and never null; `ids` names the index values in
    messages (default: as FIDs), `item` what they label."""
    ids = ids or _fids
    strings = values.map(lambda v: isinstance(v, str))
    null = values.isna() | (strings & values.astype(str).str.strip().eq(""))
    if null.all():
        return [f"{name}: field '{field}' holds no value; fill it with class labels"]
    problems = []
    if null.any():
        problems.append(
            f"{name}: {ids(values.index[null])}: no value in field '{field}'; "
            f"give every {item} a label"
        )
    if pd.api.types.is_float_dtype(values):
        frac = ~null & (values % 1 != 0)
        if frac.any():
            problems.append(
                f"{name}: {ids(values.index[frac])}: non-integer values in field '{field}' "
                f"({', '.join(map(str, values[frac].unique()[:5]))}); "
                "labels must be integers or strings"
            )
    elif not (pd.api.types.is_integer_dtype(values) or strings[~null].all()):
        problems.append(
            f"{name}: field '{field}' has type {values.dtype}; labels must be integers or strings"
        )
    if pd.api.types.is_numeric_dtype(values) and (values[~null] <= 0).any():
        bad = ~null & (values <= 0)
        problems.append(
            f"{name}: {ids(values.index[bad])}: label {values[bad].iloc[0]} in field "
            f"'{field}'; integer labels must be > 0 (0 is the maps' nodata); renumber them"
        )
    return problems


def as_int(value) -> int | None:
    """`value` as an int if it is one (1, 1.0, ' 1 '), else None."""
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def _fids(fids) -> str:
    return f"FID {listed(fids)}"


def listed(items, sep: str = ", ") -> str:
    """The first items, and how many more there are."""
    items = list(items)
    return f"{sep.join(map(str, items[:_MAX_LISTED]))}{_more(items)}"


def _more(items) -> str:
    return f" (and {len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""


# ---------------------------------------------------------------- text tables


def read_nomenclature(path) -> dict[str, str]:
    """iota2's `name:code` lines as {code: name}; the name may hold colons and spaces."""
    table: dict[str, str] = {}
    code_line: dict[str, int] = {}
    name_line: dict[str, int] = {}
    problems = []
    src = Path(path).name
    for number, line in _lines(path):
        name, sep, code = line.rpartition(":")
        name, code = name.strip(), code.strip()
        if not (sep and name and code):
            problems.append(f"{src}: line {number}: expected 'name:code', got {line!r}")
        elif code in code_line:
            problems.append(f"{src}: lines {code_line[code]} and {number}: code {code} used twice")
        elif name in name_line:
            problems.append(
                f"{src}: lines {name_line[name]} and {number}: name {name!r} used twice"
            )
        else:
            table[code], code_line[code], name_line[name] = name, number, number
    if problems:
        raise InputError(problems)
    return table


def read_color_table(path) -> dict[str, tuple[int, int, int]]:
    """iota2's `code R G B` lines as {code: (r, g, b)}; the code may hold spaces."""
    table: dict[str, tuple[int, int, int]] = {}
    first_line: dict[str, int] = {}
    problems = []
    name = Path(path).name
    for number, line in _lines(path):
        tokens = line.rsplit(maxsplit=3)
        if len(tokens) != 4:
            problems.append(f"{name}: line {number}: expected 'code R G B', got {line!r}")
            continue
        code, rgb = tokens[0], tokens[1:]
        bad = [v for v in rgb if not (v.isascii() and v.isdigit() and int(v) <= 255)]
        if bad:
            problems.append(
                f"{name}: line {number}: R G B must be integers in 0..255, got {', '.join(bad)}"
            )
        elif code in first_line:
            problems.append(
                f"{name}: lines {first_line[code]} and {number}: code {code} used twice"
            )
        else:
            table[code], first_line[code] = tuple(int(v) for v in rgb), number
    if problems:
        raise InputError(problems)
    return table


def _lines(path) -> list[tuple[int, str]]:
    """Numbered non-blank lines of a text file (UTF-8, else Latin-1)."""
    if not Path(path).is_file():
        raise InputError([f"{path}: file not found"])
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise InputError([f"{path}: cannot read the file ({err.strerror})"]) from err
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1) if line.strip()]


# ---------------------------------------------------------------- class table


@dataclass(frozen=True)
class ClassInfo:
    """One class: the user's label, geoclass's integer code, its name and color."""

    user_label: str
    code: int
    name: str
    color: tuple[int, int, int]


@dataclass
class ClassTable:
    """The classes, in code order; ties user labels to geoclass's integer codes."""

    classes: list[ClassInfo]
    labels_are_strings: bool

    @property
    def codes(self) -> list[int]:
        return [c.code for c in self.classes]

    @property
    def names(self) -> dict[int, str]:
        return {c.code: c.name for c in self.classes}

    @property
    def colors(self) -> dict[int, tuple[int, int, int]]:
        return {c.code: c.color for c in self.classes}

    def encode(self, values) -> np.ndarray:
        """User labels -> codes (int32); unknown labels raise InputError."""
        series = pd.Series(np.asarray(values, dtype=object).reshape(-1))
        if self.labels_are_strings:
            codes = series.map({c.user_label: c.code for c in self.classes})
        else:
            numbers = pd.to_numeric(series, errors="coerce")
            codes = numbers.where(numbers.isin(self.codes))
        unknown = series[codes.isna()].unique()
        if len(unknown):
            listed = ", ".join(map(repr, unknown[:_MAX_LISTED]))
            raise InputError([f"labels not in the class table: {listed}{_more(unknown)}"])
        return codes.to_numpy(dtype=np.int32).reshape(np.shape(values))

    def decode(self, codes) -> np.ndarray:
        """Codes -> user labels (strings, or the integer labels themselves)."""
        codes = np.asarray(codes)
        unknown = np.setdiff1d(codes, self.codes)
        if len(unknown):
            raise ValueError(f"codes not in the class table: {unknown[:_MAX_LISTED].tolist()}")
        if not self.labels_are_strings:
            return codes
        lookup = {c.code: c.user_label for c in self.classes}
        return np.vectorize(lookup.__getitem__, otypes=[object])(codes)


def build_class_table(
    labels: Sequence, nomenclature: dict | None = None, colors: dict | None = None
) -> ClassTable:
    """The class table of these ground-truth labels (InputError if a color is missing)."""
    keys, strings = _class_keys(labels)
    found = [_describe(key, strings, nomenclature or {}, colors) for key in keys]
    missing = [key for key, (_, color) in zip(keys, found) if color is None]
    if colors is not None and missing:
        raise InputError([f"color table: no color for classes {', '.join(missing)}"])
    palette = _palette(len(keys))
    classes = []
    for i, (key, (name, color)) in enumerate(zip(keys, found)):
        code = i + 1 if strings else int(key)
        classes.append(ClassInfo(key, code, name or key, color or palette[i]))
    return ClassTable(sorted(classes, key=lambda c: c.code), strings)


def check_class_table_inputs(
    labels: Sequence,
    nomenclature: dict | None,
    colors: dict | None,
    ground_truth_file="ground truth",
    nomenclature_file="nomenclature",
    color_file="color table",
) -> list[str]:
    """Every ground-truth class missing from the nomenclature or the color table (if given)."""
    keys, strings = _class_keys(labels)
    gt = Path(ground_truth_file).name
    found = {k: _describe(k, strings, nomenclature or {}, colors or {}) for k in keys}
    problems = []
    if nomenclature is not None:
        missing = [k for k in keys if found[k][0] is None]
        if missing:
            problems.append(
                f"{Path(nomenclature_file).name}: no entry for classes {', '.join(missing)} "
                f"of {gt}; add 'name:code' lines"
            )
    if colors is not None:
        missing = [k for k in keys if found[k][1] is None]
        if missing:
            problems.append(
                f"{Path(color_file).name}: no color for classes {', '.join(missing)} "
                f"of {gt}; add 'code R G B' lines"
            )
    return problems


def write_class_table(table: ClassTable, path) -> None:
    """Write iota2's `*_table.csv` (USER_LABEL,GEOCLASS_LABEL,RED,GREEN,BLUE) atomically,
    readable by all as any output file (the umask decides)."""
    lines = ["USER_LABEL,GEOCLASS_LABEL,RED,GREEN,BLUE"]
    for c in table.classes:
        lines.append(",".join([_csv_field(c.user_label), str(c.code), *map(str, c.color)]))
    with atomic_output(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")


def _csv_field(text: str) -> str:
    """`text`, quoted CSV-style if it holds a comma or a quote."""
    if "," not in text and '"' not in text:
        return text
    escaped = text.replace('"', '""')
    return f'"{escaped}"'


def _class_keys(labels: Sequence) -> tuple[list[str], bool]:
    """The distinct labels as sorted strings, and whether they are string labels."""
    values = [v for v in pd.unique(pd.Series(list(labels), dtype=object)) if not pd.isna(v)]
    strings = any(isinstance(v, str) for v in values)
    if strings:
        return sorted({str(v) for v in values}), True
    ints = {as_int(v) for v in values}
    if None in ints:
        raise InputError([f"labels must be integers or strings, got {values}"])
    return [str(v) for v in sorted(ints)], False


def _describe(key: str, strings: bool, nomenclature: dict, colors: dict | None):
    """(name, color) of a class from the nomenclature and color table; None where absent."""
    name = nomenclature.get(key)
    color_key = key
    if strings and name is None:
        by_name = [code for code, n in nomenclature.items() if n == key]
        if by_name:
            name, color_key = key, by_name[0]
    colors = colors or {}
    return name, colors.get(key, colors.get(color_key))


def _palette(n: int) -> list[tuple[int, int, int]]:
    """`n` distinct colors, always the same: golden-ratio hues, two brightnesses."""
    colors: list[tuple[int, int, int]] = []
    i = 0
    while len(colors) < n:
        hue = (i * 0.618033988749895) % 1
        rgb = colorsys.hsv_to_rgb(hue, 0.8, 0.95 if i % 2 == 0 else 0.7)
        color = tuple(round(v * 255) for v in rgb)
        if color not in colors:
            colors.append(color)
        i += 1
    return colors

"""Reference data (ground truth, regions, nomenclature, colors): iota2's rules, checked, loaded."""

from __future__ import annotations

import logging

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geoclass import fs
from geoclass.classes import MAX_LISTED, as_int, listed, more
from geoclass.errors import InputError
from geoclass.grid import TileGrid, pixel_of

log = logging.getLogger(__name__)

POLYGONAL = ("Polygon", "MultiPolygon")
PUNCTUAL = ("Point", "MultiPoint")


# ---------------------------------------------------------------- vector files


def read_vector(path) -> gpd.GeoDataFrame:
    """Read any OGR vector file (first layer), with OGR's FIDs as index."""
    if not fs.is_file(path):
        raise InputError([f"{path}: file not found"])
    try:
        return fs.read_vector(path, fid_as_index=True)
    except Exception as err:  # noqa: BLE001 - any GDAL failure means "unreadable"
        raise InputError([f"{path}: not a readable vector file ({err})"]) from err


def check_ground_truth(
    path, data_field: str, tiles: list[TileGrid] | None = None, repair: bool = False
) -> list[str]:
    """Every problem of a ground-truth file (empty list: fine); writes nothing."""
    name = fs.as_path(path).name
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
        problems += _check_polygons(gdf, name, "ground truth", tiles, repair, data_field)
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
    name = fs.as_path(path).name
    try:
        gdf = read_vector(path)
    except InputError as err:
        return err.problems
    if gdf.empty:
        return [f"{name}: the file has no polygon: give it the region polygons, or leave "
                "chain.region_path out (the whole area is then region 1)"]
    problems = _check_polygons(gdf, name, "regions", tiles, repair=False, field=region_field)
    if _has_field(gdf, name, region_field, problems):
        bad = [(fid, v) for fid, v in gdf[region_field].items() if as_int(v) is None]
        if bad:
            listed = ", ".join(f"FID {fid} ({v!r})" for fid, v in bad[:MAX_LISTED])
            problems.append(
                f"{name}: {listed}{more(bad)}: field '{region_field}' must hold integers; "
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


def regions_of_tiles(region_tiles: dict[int, list[str]], grids: dict[str, TileGrid],
                     crs=None) -> gpd.GeoDataFrame:
    """iota2's regions by tile (its `multi_regions` mode, `chain.region_tiles`): each tile's
    footprint is its region's; where tiles overlap, the tile first in `grids` wins (iota2's
    tile envelopes with priority). Columns `region` (int) and geometry, one row per region,
    in `crs` (default: the first tile's CRS); tiles in no region are left out."""
    crs = crs or next(iter(grids.values())).crs
    taken, parts = None, {}
    for tile, grid in grids.items():
        left, bottom, right, top = grid.bounds
        box = shapely.segmentize(shapely.box(*grid.bounds), max(right - left, top - bottom) / 50)
        box = gpd.GeoSeries([box], crs=grid.crs.to_wkt()).to_crs(crs).iloc[0]
        own = box if taken is None else shapely.difference(box, taken)
        taken = box if taken is None else shapely.union(taken, box)
        region = next((r for r, tiles in region_tiles.items() if tile in tiles), 0)
        if region and not own.is_empty:
            parts.setdefault(int(region), []).append(own)
    regions = sorted(parts)
    return gpd.GeoDataFrame({"region": np.array(regions, dtype="int64")},
                            geometry=[shapely.union_all(parts[r]) for r in regions], crs=crs)


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


def _check_polygons(gdf, name: str, kind: str, tiles, repair: bool,
                    field: str | None = None) -> list[str]:
    """CRS, geometry types, empty, invalid, overlaps and tile cover; the vector rules.
    Polygons that overlap with the same value of `field` are only a warning: each shared
    pixel still has one label (it is burnt once, into one of them)."""
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
            f"{name}: FID {', '.join(reasons[:MAX_LISTED])}{more(reasons)}: invalid geometry; "
            "fix them or set repair"
        )
    usable = valid | (invalid & repair)
    good = _make_valid(geoms[usable]) if repair else geoms[usable]
    good_fids = fids[usable]
    pairs = _overlaps(good)
    if len(pairs) and field in gdf.columns and field != gdf.geometry.name:
        values = gdf[field].to_numpy()[usable]
        same = np.array([values[i] == values[j] for i, j in pairs], dtype=bool)
        if same.any():
            log.warning("%s: polygons with the same '%s' overlap (%s); each shared pixel is "
                        "counted once, in one of them", name, field,
                        _pairs(pairs[same], good_fids))
        pairs = pairs[~same]
    if len(pairs):
        problems.append(
            f"{name}: polygons overlap ({_pairs(pairs, good_fids)}); "
            "remove the overlaps so each pixel has one label"
        )
    if tiles and gdf.crs is not None and len(good):
        problems += _tile_cover(gpd.GeoSeries(good, index=good_fids, crs=gdf.crs), name,
                                tiles, "polygon")
    return problems


def _pairs(pairs: np.ndarray, fids: np.ndarray) -> str:
    listed = "; ".join(f"FID {fids[i]} and {fids[j]}" for i, j in pairs[:MAX_LISTED])
    return f"{listed}{more(pairs)}"


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


def _fids(fids) -> str:
    return f"FID {listed(fids)}"


# ---------------------------------------------------------------- text tables


def read_nomenclature(path) -> dict[str, str]:
    """iota2's `name:code` lines as {code: name}; the name may hold colons and spaces."""
    table: dict[str, str] = {}
    code_line: dict[str, int] = {}
    name_line: dict[str, int] = {}
    problems = []
    src = fs.as_path(path).name
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
    name = fs.as_path(path).name
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
    if not fs.is_file(path):
        raise InputError([f"{path}: file not found"])
    try:
        raw = fs.as_path(path).read_bytes()
    except OSError as err:
        raise InputError([f"{path}: cannot read the file ({err.strerror})"]) from err
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1) if line.strip()]

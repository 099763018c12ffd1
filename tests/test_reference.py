"""Tests of geoclass.io.reference: iota2's reference-data rules and the class table."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
import shapely.affinity
from affine import Affine
from rasterio.crs import CRS

from geoclass.classes import build_class_table, check_class_table_inputs, write_class_table
from geoclass.errors import InputError
from geoclass.grid import TileGrid
from geoclass.io.reference import (
    check_ground_truth,
    check_regions,
    load_ground_truth,
    load_regions,
    read_color_table,
    read_nomenclature,
    read_vector,
    regions_of_tiles,
)

from .conftest import IOTA2, NO_IOTA2_DATA

UTM = "EPSG:32631"
X0, Y0 = 500_000, 4_800_000
REAL = IOTA2 / "references" / "running_iota2"
BOWTIE = shapely.Polygon([(X0, Y0), (X0 + 10, Y0 + 10), (X0 + 10, Y0), (X0, Y0 + 10)])


def square(i: float, j: float = 0, size: float = 10) -> shapely.Polygon:
    """A square `size` m wide at (i, j) * 10 m from the origin."""
    return shapely.box(X0 + 10 * i, Y0 + 10 * j, X0 + 10 * i + size, Y0 + 10 * j + size)


def write(path: Path, geoms, crs=UTM, **fields) -> Path:
    gpd.GeoDataFrame(fields, geometry=list(geoms), crs=crs).to_file(path)
    return path


def tile(name="T31TCJ", x=X0, y=Y0 + 1000, size=100) -> TileGrid:
    return TileGrid(name, CRS.from_epsg(32631), Affine(10, 0, x, 0, -10, y), size, size)


def one(problems: list[str], word: str) -> str:
    """The only problem that mentions `word`."""
    found = [p for p in problems if word in p]
    assert len(found) == 1, problems
    return found[0]


# ---------------------------------------------------------------- ground truth


def test_good_ground_truth_has_no_problem(tmp_path):
    path = write(tmp_path / "gt.shp", [square(0), square(1), square(3)], code=[1, 2, 1])
    assert check_ground_truth(path, "code", tiles=[tile()]) == []


def test_overlap_names_both_fids_and_touching_is_fine(tmp_path):
    geoms = [square(0), square(1), square(5), square(5.5, 0.5)]  # 0-1 touch, 2-3 overlap
    path = write(tmp_path / "gt.shp", geoms, code=[1, 2, 1, 2])
    problem = one(check_ground_truth(path, "code"), "overlap")
    assert "gt.shp" in problem and "FID 2 and 3" in problem and "FID 0" not in problem


def test_overlaps_with_the_same_label_are_only_a_warning(tmp_path, caplog):
    # iota2's own spot-6 polygons overlap this way: each shared pixel still has one label
    geoms = [square(0), square(0.5), square(5), square(5.5, 0.5)]  # 0-1 same, 2-3 differ
    path = write(tmp_path / "gt.shp", geoms, code=[1, 1, 1, 2])
    with caplog.at_level(logging.WARNING, logger="geoclass.io.reference"):
        problem = one(check_ground_truth(path, "code"), "overlap")
    assert "FID 2 and 3" in problem and "FID 0" not in problem
    assert [r.getMessage() for r in caplog.records] == [
        "gt.shp: polygons with the same 'code' overlap (FID 0 and 1); each shared pixel is "
        "counted once, in one of them"]
    regions = write(tmp_path / "regions.shp", geoms[:2], region=[4, 4])
    assert check_regions(regions, "region") == []


def test_point_geometry_is_reported_with_fids(tmp_path):
    geoms = [square(0), square(2), shapely.Point(X0, Y0 - 50), square(4), shapely.Point(X0, 0)]
    path = write(tmp_path / "gt.gpkg", geoms, code=[1, 2, 3, 4, 5])
    problem = one(check_ground_truth(path, "code"), "Point")
    assert problem == "gt.gpkg: FID 3, 5: Point geometry; ground truth must be polygons"


def test_missing_field_lists_existing_fields(tmp_path):
    path = write(tmp_path / "gt.shp", [square(0)], Code=[1], other=["a"])
    problem = one(check_ground_truth(path, "code"), "field")
    assert "gt.shp" in problem and "'code'" in problem
    assert "Code, other" in problem and "did you mean 'Code'" in problem


def test_file_name_must_start_with_a_letter(tmp_path):
    path = write(tmp_path / "1_gt.shp", [square(0)], code=[1])
    assert check_ground_truth(path, "code") == [
        "1_gt.shp: the file name must start with a letter (iota2 rule); rename it"
    ]


def test_invalid_geometry_without_and_with_repair(tmp_path):
    path = write(tmp_path / "gt.shp", [square(3), BOWTIE], code=[1, 2])
    problem = one(check_ground_truth(path, "code"), "invalid")
    assert "FID 1 (Self-intersection" in problem and "set repair" in problem
    assert check_ground_truth(path, "code", repair=True) == []
    repaired = load_ground_truth(path, "code", repair=True)
    assert repaired.is_valid.all() and set(repaired.geom_type) <= {"Polygon", "MultiPolygon"}


def test_empty_geometry(tmp_path):
    path = write(tmp_path / "gt.gpkg", [square(0), shapely.Polygon()], code=[1, 2])
    assert one(check_ground_truth(path, "code"), "empty") == (
        "gt.gpkg: FID 2: empty geometry; delete these features"
    )


def test_missing_crs(tmp_path):
    path = write(tmp_path / "gt.shp", [square(0)], crs=None, code=[1])
    assert one(check_ground_truth(path, "code", tiles=[tile()]), "CRS").startswith("gt.shp: no CRS")


def test_missing_and_unreadable_file(tmp_path):
    missing = tmp_path / "nope.shp"
    assert check_ground_truth(missing, "code") == [f"{missing}: file not found"]
    with pytest.raises(InputError, match="nope.shp: file not found"):
        read_vector(missing)
    bad = tmp_path / "bad.shp"
    bad.write_text("not a shapefile")
    assert "not a readable vector file" in one(check_ground_truth(bad, "code"), "bad.shp")


def test_no_polygon_in_the_tiles(tmp_path):
    path = write(tmp_path / "gt.shp", [square(0), square(2)], code=[1, 2])
    far = tile(x=X0 + 50_000)
    problem = one(check_ground_truth(path, "code", tiles=[far]), "tiles")
    assert "gt.shp: no polygon intersects the tiles (T31TCJ)" in problem
    # one polygon in the tile is enough
    assert check_ground_truth(path, "code", tiles=[far, tile(y=Y0 + 20, size=2)]) == []


def test_tiles_in_another_crs(tmp_path):
    lonlat = gpd.GeoSeries([square(0)], crs=UTM).to_crs("EPSG:4326")
    path = write(tmp_path / "gt.shp", lonlat, crs="EPSG:4326", code=[1])
    assert check_ground_truth(path, "code", tiles=[tile()]) == []
    assert check_ground_truth(path, "code", tiles=[tile(x=X0 + 50_000)]) != []


def test_labels_null_and_fractional(tmp_path):
    path = write(tmp_path / "gt.gpkg", [square(0), square(2), square(4)], code=[1.0, None, 2.5])
    problems = check_ground_truth(path, "code")
    assert one(problems, "no value") == (
        "gt.gpkg: FID 2: no value in field 'code'; give every polygon a label"
    )
    assert "FID 3" in one(problems, "non-integer") and "2.5" in one(problems, "non-integer")
    empty = write(tmp_path / "empty.gpkg", [square(0)], code=[None])
    assert "holds no value" in one(check_ground_truth(empty, "code"), "code")


def test_string_labels_are_fine(tmp_path):
    path = write(tmp_path / "gt.gpkg", [square(0), square(2)], code=["maïs", "forêt"])
    assert check_ground_truth(path, "code") == []


def test_all_violations_of_a_file_are_reported_together(tmp_path):
    bowtie = shapely.affinity.translate(BOWTIE, 100)
    geoms = [square(0), square(0.5), shapely.Point(X0, Y0), bowtie]
    path = write(tmp_path / "9gt.gpkg", geoms, crs=None, code=[1, 2, None, 3])
    problems = check_ground_truth(path, "code")
    for word in ("start with a letter", "no CRS", "Point", "invalid", "overlap", "no value"):
        one(problems, word)
    assert len(problems) == 6


def test_checks_write_no_file(tmp_path):
    shp = write(tmp_path / "gt.shp", [square(0), square(0.5), BOWTIE], code=[1, 2, 3])
    gpkg = write(tmp_path / "regions.gpkg", [square(0)], region=["north"])
    before = sorted(os.listdir(tmp_path))
    assert check_ground_truth(shp, "code", tiles=[tile()])
    assert check_ground_truth(shp, "code", repair=True)
    assert check_regions(gpkg, "region", tiles=[tile()])
    check_ground_truth(tmp_path / "missing.gpkg", "code")
    assert sorted(os.listdir(tmp_path)) == before


# ---------------------------------------------------------------- regions


def test_regions_of_tiles_give_overlaps_to_the_first_tile(tmp_path):
    """iota2's multi_regions mode: a region is the footprint of its tiles, and where tiles
    overlap the first listed wins (iota2's tile envelopes with priority)."""
    grids = {"A": tile("A", x=X0), "B": tile("B", x=X0 + 800), "C": tile("C", x=X0 + 1600),
             "D": tile("D", x=X0 + 5000)}  # 1000 m tiles, 200 m overlaps
    regions = regions_of_tiles({2: ["B"], 1: ["A", "C"]}, grids)
    assert regions["region"].tolist() == [1, 2] and regions.crs == grids["A"].crs
    one_, two = regions.geometry.values
    assert shapely.equals(two, shapely.box(X0 + 1000, Y0, X0 + 1800, Y0 + 1000))
    assert one_.area == pytest.approx(1000 * 1000 + 800 * 1000)  # A whole, C less B's part
    assert not shapely.intersects(one_, shapely.box(X0 + 5000, Y0, X0 + 6000, Y0 + 1000))
    lonlat = regions_of_tiles({1: ["A"]}, grids, crs="EPSG:4326")
    assert lonlat.crs.to_epsg() == 4326 and 0 < lonlat.geometry.iloc[0].bounds[0] < 4




def test_region_values_must_be_integers(tmp_path):
    path = write(
        tmp_path / "regions.shp", [square(0), square(1), square(2)], reg=["1", "north", " 2"]
    )
    assert check_regions(path, "reg") == [
        "regions.shp: FID 1 ('north'): field 'reg' must hold integers; "
        "give these polygons an integer region"
    ]
    with pytest.raises(InputError, match="north"):
        load_regions(path, "reg")


def test_regions_share_the_vector_rules(tmp_path):
    geoms = [square(0), square(0.5), shapely.Point(X0, Y0)]
    path = write(tmp_path / "1regions.gpkg", geoms, region=[1, 2, 3])
    problems = check_regions(path, "region", tiles=[tile(x=X0 + 50_000)])
    one(problems, "overlap")
    assert "regions must be polygons" in one(problems, "Point")
    one(problems, "no polygon intersects")
    assert not [p for p in problems if "letter" in p]
    assert "fields are: region" in one(check_regions(path, "zone"), "zone")


def test_load_regions_casts_to_int(tmp_path):
    path = write(tmp_path / "regions.shp", [square(0), square(1)], reg=["1", "2"])
    loaded = load_regions(path, "reg", crs="EPSG:4326")
    assert loaded["region"].tolist() == [1, 2] and loaded["region"].dtype == "int64"
    assert loaded.crs.to_epsg() == 4326 and list(loaded.columns) == ["region", "geometry"]


# ---------------------------------------------------------------- nomenclature and colors


def test_read_nomenclature_splits_on_last_colon(tmp_path):
    path = tmp_path / "nomenclature.txt"
    path.write_text("batis denses:1\n\ncéréales: à paille : 6 \nriz:11", encoding="utf-8")
    assert read_nomenclature(path) == {"1": "batis denses", "6": "céréales: à paille", "11": "riz"}


def test_nomenclature_errors_are_all_reported(tmp_path):
    path = tmp_path / "nomenclature.txt"
    path.write_text("a:1\nno colon here\nb:1\na:2\n:3\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        read_nomenclature(path)
    assert err.value.problems == [
        "nomenclature.txt: line 2: expected 'name:code', got 'no colon here'",
        "nomenclature.txt: lines 1 and 3: code 1 used twice",
        "nomenclature.txt: lines 1 and 4: name 'a' used twice",
        "nomenclature.txt: line 5: expected 'name:code', got ':3'",
    ]


def test_read_color_table(tmp_path):
    path = tmp_path / "color.txt"
    path.write_text("1 255 0 255\n\nwinter  wheat 10 20 30\n", encoding="utf-8")
    assert read_color_table(path) == {"1": (255, 0, 255), "winter  wheat": (10, 20, 30)}


def test_color_table_errors(tmp_path):
    path = tmp_path / "color.txt"
    path.write_text("1 0 0 300\n2 0 0\n3 1 2 3\n3 4 5 6\n4 1.5 0 0\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        read_color_table(path)
    assert err.value.problems == [
        "color.txt: line 1: R G B must be integers in 0..255, got 300",
        "color.txt: line 2: expected 'code R G B', got '2 0 0'",
        "color.txt: lines 3 and 4: code 3 used twice",
        "color.txt: line 5: R G B must be integers in 0..255, got 1.5",
    ]
    with pytest.raises(InputError, match="file not found"):
        read_color_table(tmp_path / "none.txt")


# ---------------------------------------------------------------- class table

NOMENCLATURE = {"10": "maïs", "3": "forêt", "7": "Urban areas"}
COLORS = {"10": (255, 85, 0), "3": (0, 156, 0), "wheat": (1, 2, 3), "7": (0, 0, 0)}


def test_string_labels_get_sorted_codes_and_colors_through_the_nomenclature(tmp_path):
    table = build_class_table(["wheat", "maïs", "forêt", "wheat", None], NOMENCLATURE, COLORS)
    assert table.labels_are_strings
    assert [(c.user_label, c.code) for c in table.classes] == [
        ("forêt", 1),
        ("maïs", 2),
        ("wheat", 3),
    ]
    assert table.names == {1: "forêt", 2: "maïs", 3: "wheat"}
    assert table.colors == {1: (0, 156, 0), 2: (255, 85, 0), 3: (1, 2, 3)}
    assert table.encode(["wheat", "forêt"]).tolist() == [3, 1]
    assert table.decode(np.array([3, 1])).tolist() == ["wheat", "forêt"]
    same = build_class_table(["forêt", "maïs", "wheat"], NOMENCLATURE, COLORS)
    assert same.codes == table.codes
    with pytest.raises(InputError, match="'rice'"):
        table.encode(["wheat", "rice"])

    write_class_table(table, tmp_path / "gt_table.csv")
    assert (tmp_path / "gt_table.csv").read_text(encoding="utf-8") == (
        "USER_LABEL,GEOCLASS_LABEL,RED,GREEN,BLUE\n"
        "forêt,1,0,156,0\n"
        "maïs,2,255,85,0\n"
        "wheat,3,1,2,3\n"
    )
    assert os.listdir(tmp_path) == ["gt_table.csv"]
    # readable like any other output (not a private 0600 temporary file)
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "gt_table.csv").stat().st_mode & 0o777 == 0o666 & ~mask


def test_integer_labels_keep_their_codes():
    table = build_class_table([10, 3, 3, 7.0], NOMENCLATURE, COLORS)
    assert not table.labels_are_strings
    assert table.codes == [3, 7, 10]
    assert table.names == {3: "forêt", 7: "Urban areas", 10: "maïs"}
    assert table.colors[10] == (255, 85, 0)
    assert table.encode(np.array([[10, 3], [7, 7]])).tolist() == [[10, 3], [7, 7]]
    assert table.decode([7, 10]).tolist() == [7, 10]
    with pytest.raises(InputError, match="5"):
        table.encode([3, 5])


def test_class_missing_from_color_table_and_nomenclature():
    problems = check_class_table_inputs(
        [3, 10, 12, 13], NOMENCLATURE, COLORS, "/x/gt.shp", "/x/nom.txt", "/x/color.txt"
    )
    assert problems == [
        "nom.txt: no entry for classes 12, 13 of gt.shp; add 'name:code' lines",
        "color.txt: no color for classes 12, 13 of gt.shp; add 'code R G B' lines",
    ]
    assert check_class_table_inputs([3, 10], None, None) == []
    with pytest.raises(InputError, match="12, 13"):
        build_class_table([3, 12, 13], None, COLORS)


def test_default_palette_is_distinct_and_stable():
    labels = [f"class {i}" for i in range(60)]
    table = build_class_table(labels, None, None)
    assert len(set(table.colors.values())) == 60
    assert build_class_table(labels, None, None).colors == table.colors
    assert table.names[1] == "class 0"


def test_csv_quotes_labels_with_commas(tmp_path):
    table = build_class_table(["a, b"], None, {"a, b": (1, 2, 3)})
    write_class_table(table, tmp_path / "t.csv")
    assert (tmp_path / "t.csv").read_text().splitlines()[1] == '"a, b",1,1,2,3'


# ---------------------------------------------------------------- iota2's real files


@pytest.mark.skipif(not REAL.is_dir(), reason=NO_IOTA2_DATA)
def test_real_iota2_references():
    gt = REAL / "ground_truth.shp"
    assert check_ground_truth(gt, "code") == []
    nomenclature = read_nomenclature(REAL / "nomenclature.txt")
    colors = read_color_table(REAL / "color.txt")
    assert nomenclature["22"] == "glaciers ou neiges" and nomenclature["10"] == "maïs"
    assert colors["255"] == (255, 255, 255) and len(colors) == 25
    labels = load_ground_truth(gt, "code", crs="EPSG:32631")["code"]
    assert check_class_table_inputs(labels, nomenclature, colors, gt) == []
    table = build_class_table(labels, nomenclature, colors)
    assert table.codes == [1, 2, 3, 4]
    assert table.names[3] == "zones ind et com" and table.colors[4] == (0, 255, 255)

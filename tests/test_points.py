"""Point ground truth: each point labels the pixel that holds it. The vector rules (no mixing
with polygons, one label per pixel), regions by spatial join, the split per class and region,
the samples and a model, from the points of a generated scene."""

from __future__ import annotations

import shutil

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from affine import Affine
from rasterio.crs import CRS

from geoclass.api import load_model, read_samples, sample, train
from geoclass.grid import TileGrid, pixel_of
from geoclass.io.reference import check_ground_truth, load_ground_truth
from geoclass.kernels.extract import snapped_points
from geoclass.steps.check import check_inputs
from geoclass.steps.samples import reference_pieces

from .conftest import config_of

UTM = "EPSG:32631"
X0, Y0 = 500_000, 4_800_000


def tile(name="T31TCJ", size=100) -> TileGrid:
    return TileGrid(name, CRS.from_epsg(32631), Affine(10, 0, X0, 0, -10, Y0 + 10 * size),
                    size, size)


def write(path, geoms, **fields):
    gpd.GeoDataFrame(fields, geometry=list(geoms), crs=UTM).to_file(path)
    return path


def pt(i: float, j: float) -> shapely.Point:
    """A point at (i, j) pixels of 10 m from the tile's lower left corner."""
    return shapely.Point(X0 + 10 * i, Y0 + 10 * j)


# --- the vector rules ---------------------------------------------------------------------


def test_points_and_multipoints_are_a_good_ground_truth(tmp_path):
    geoms = [pt(1.5, 1.5), pt(3.5, 1.5), shapely.MultiPoint([pt(5.5, 5.5), pt(7.2, 5.5)])]
    path = write(tmp_path / "points.gpkg", geoms, code=[1, 2, 1])
    assert check_ground_truth(path, "code", tiles=[tile()]) == []
    # same label in one pixel is fine
    path = write(tmp_path / "twice.gpkg", [pt(1.2, 1.2), pt(1.8, 1.8)], code=[1, 1])
    assert check_ground_truth(path, "code", tiles=[tile()]) == []


def test_points_mixed_with_polygons_name_the_fids(tmp_path):
    box = shapely.box(X0, Y0, X0 + 30, Y0 + 30)
    path = write(tmp_path / "mixed.gpkg", [pt(1, 1), box, pt(5, 5), pt(8, 8)], code=[1, 2, 1, 2])
    assert check_ground_truth(path, "code") == [
        "mixed.gpkg: FID 2: Polygon geometry; this ground truth is made of points, and a file "
        "holds points or polygons, not both"]
    path = write(tmp_path / "mostly.gpkg", [box, pt(5, 5), box.buffer(-10).exterior],
                 code=[1, 2, 1])
    problems = check_ground_truth(path, "code")
    assert "mostly.gpkg: FID 2: Point geometry; ground truth must be polygons" in problems


def test_two_points_in_one_pixel_with_different_labels(tmp_path):
    geoms = [pt(1.2, 1.2), pt(4.5, 4.5), pt(1.8, 1.9), pt(6.2, 6.2), pt(6.5, 6.5), pt(9.5, 9.5)]
    path = write(tmp_path / "points.gpkg", geoms, code=[1, 2, 3, 4, 5, 4])
    problems = check_ground_truth(path, "code", tiles=[tile()])
    assert problems == [
        "points.gpkg: points with different labels in the same pixel (FID 4 and 5 in tile "
        "T31TCJ row 93 col 6; FID 1 and 3 in tile T31TCJ row 98 col 1); keep one label per "
        "pixel"]


def test_points_outside_the_tiles_without_label_or_crs(tmp_path):
    path = write(tmp_path / "far.gpkg", [pt(-50, 1), pt(-60, 1)], code=[1, 2])
    assert check_ground_truth(path, "code", tiles=[tile()]) == [
        "far.gpkg: no point intersects the tiles (T31TCJ); check the file's CRS and the tile "
        "list"]
    path = write(tmp_path / "nolabel.gpkg", [pt(1, 1), pt(3, 3)], code=[1, None])
    assert check_ground_truth(path, "code") == [
        "nolabel.gpkg: FID 2: no value in field 'code'; give every point a label"]
    points = load_ground_truth(path, "code", repair=True)  # repair leaves points alone
    assert list(points.geom_type) == ["Point", "Point"]


def test_points_are_burnt_in_the_pixel_that_holds_them():
    grid = TileGrid("T", CRS.from_epsg(32631), Affine(10, 0, 0, 0, -10, 100), 10, 10, 4)
    rows, cols = pixel_of([15, 20, 40, 0.0], [85, 80, 60, 100], grid.transform)
    assert rows.tolist() == [1, 2, 4, 0] and cols.tolist() == [1, 2, 4, 0]
    # a point on a chunk's edge (x = 40, y = 60) moves to its pixel's centre
    snapped = snapped_points(np.array([shapely.Point(40, 60),
                                       shapely.MultiPoint([(1, 1), (20, 80)])]), grid)
    assert [list(shapely.get_coordinates(g).tolist()) for g in snapped] == [
        [[45.0, 55.0]], [[5.0, 5.0], [25.0, 75.0]]]


# --- a generated scene with points -------------------------------------------------------------


def field_points(gt: gpd.GeoDataFrame, grid_x: float) -> gpd.GeoDataFrame:
    """3 points inside each field (10 m from its edge), and one more exactly on the vertical
    line x = grid_x (a chunk edge) for the fields that it crosses."""
    inner = gt.geometry.buffer(-10)
    inner = inner[~inner.is_empty]
    points = inner.sample_points(3, rng=1)
    line = shapely.LineString([(grid_x, inner.total_bounds[1] - 1),
                               (grid_x, inner.total_bounds[3] + 1)])
    edge = {}
    for fid, geom in inner.items():
        cut = geom.intersection(line)
        if not cut.is_empty:
            point = shapely.Point(grid_x, (cut.bounds[1] + cut.bounds[3]) / 2)
            if geom.contains(point):
                edge[fid] = point
    geoms = [shapely.union(points[f], edge[f]) if f in edge else points[f]
             for f in inner.index]
    out = gpd.GeoDataFrame({"class": gt.loc[inner.index, "class"].to_numpy()},
                           geometry=geoms, crs=gt.crs)
    return out.explode(index_parts=False).reset_index(drop=True)


@pytest.fixture(scope="module")
def pointed(scene_template, tmp_path_factory, client):
    """The session scene (2 tiles of 96 px in chunks of 64, 2 regions) with its polygons
    replaced by points, sampled with two runs: (config, points)."""
    target = tmp_path_factory.mktemp("points") / "scene"
    shutil.copytree(scene_template.parent, target, ignore=shutil.ignore_patterns("run"))
    gt = gpd.read_file(target / "vector" / "ground_truth.shp")
    points = field_points(gt, 300_000 + 640)  # the chunk edge of tile T31TCJ
    points.to_file(target / "vector" / "points.gpkg")
    config = config_of(target / "config.yaml",
                       chain={"runs": 2, "ground_truth": "vector/points.gpkg"})
    assert check_inputs(config).problems == []
    sample(config)
    return config, points


def test_every_point_gives_the_sample_of_its_pixel(pointed):
    config, points = pointed
    rows = pd.concat([read_samples(config, 0, kind) for kind in ("learn", "validation")],
                     ignore_index=True)
    expected = set()
    for name, x0 in (("T31TCJ", 300_000), ("T31TDJ", 300_960)):
        transform = Affine(10, 0, x0, 0, -10, 4_900_000)
        r, c = pixel_of(points.geometry.x, points.geometry.y, transform)
        inside = (r >= 0) & (r < 96) & (c >= 0) & (c < 96)
        expected |= {(name, int(i), int(j)) for i, j in zip(r[inside], c[inside])}
    assert set(zip(rows["tile"], rows["row"], rows["col"])) == expected
    assert len(rows) == len(expected)  # one sample per pixel
    on_edge = points.geometry.x == 300_640
    assert on_edge.sum() >= 1
    assert ((rows["tile"] == "T31TCJ") & (rows["col"] == 64)).sum() >= on_edge.sum()
    np.testing.assert_allclose(rows["x"] % 10, 5)  # pixel centres
    pieces, table = reference_pieces(config)
    labels = table.decode(rows["code"])
    located = gpd.GeoDataFrame({"label": labels}, crs=points.crs,
                               geometry=gpd.points_from_xy(rows["x"], rows["y"]))
    near = gpd.sjoin_nearest(located, points, max_distance=7.1)
    assert (near["label"] == near["class"]).all() and len(set(near.index)) == len(rows)


def test_points_are_split_per_class_and_region(pointed):
    config, _ = pointed
    pieces, _ = reference_pieces(config)
    assert set(pieces.geom_type) <= {"Point", "MultiPoint"}
    learn = [read_samples(config, run, "learn") for run in range(2)]
    valid = [read_samples(config, run, "validation") for run in range(2)]
    for lrn, val in zip(learn, valid):
        assert not set(lrn["piece"]) & set(val["piece"]) and len(lrn) and len(val)
    assert set(learn[0]["piece"]) != set(learn[1]["piece"])
    groups = pieces.groupby(["region", "code"])["piece"].apply(set)
    for members in groups:
        if len(members) > 1:  # each class of each region in both sets
            assert members & set(learn[0]["piece"]) and members & set(valid[0]["piece"])


def test_points_take_the_region_that_holds_them(pointed):
    config, _ = pointed
    regions = gpd.read_file(config.chain.region_path)
    samples = read_samples(config, 0, "validation")
    located = gpd.GeoDataFrame(samples[["region"]], crs=regions.crs,
                               geometry=gpd.points_from_xy(samples.x, samples.y))
    joined = gpd.sjoin(located, regions, predicate="within")
    assert (joined["region_left"] == joined["region_right"].astype(int)).mean() > 0.95


def test_points_train_a_model_per_region(pointed):
    config, _ = pointed
    models = train(config)
    assert sorted(region for region, run in models if run == 0) == [1, 2]
    model = load_model(models[(1, 0)])
    assert len(model.classes) >= 2

"""The final maps of a generated 2-tile, 2-region scene: values, regions, probabilities,
confidence, COG/GDAL compliance, fusion of runs, determinism across worker counts."""

from __future__ import annotations

import json
import shutil
import subprocess

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio.features import rasterize

from geoclass.api import load_class_table, mosaic
from geoclass.io.configfile import load_config
from geoclass.io.reference import read_nomenclature
from geoclass.kernels.fusion import dempster_shafer, mob_masses
from geoclass.steps.mosaic import run_confusion
from geoclass.store import RunStore
from geoclass.views import maps as views

from .conftest import edit_config

SETTINGS = dict(
    chain={"runs": 2},
    models={"params": {"n_estimators": 20}},
    classification={"enable_probability_map": True,
                    "boundary_fusion": {"enable": True, "interior_buffer_size": 60,
                                        "exterior_buffer_size": 60},
                    "merge_final_classifications": {"enable": True,
                                                    "method": "dempstershafer"}},
)


def _shrink_regions(config_path) -> None:
    """Leave a 60 m gap between regions and along the scene edge (pixels outside regions)."""
    path = config_path.parent / "vector" / "regions.shp"
    regions = gpd.read_file(path)
    regions["geometry"] = regions.buffer(-30)
    regions.to_file(path)


def _scene(template, target):
    shutil.copytree(template.parent, target, ignore=shutil.ignore_patterns("run"))
    config_path = edit_config(target / "config.yaml", **SETTINGS)
    _shrink_regions(config_path)
    return load_config(config_path)


@pytest.fixture(scope="module")
def maps(scene_template, tmp_path_factory, client):
    config = _scene(scene_template, tmp_path_factory.mktemp("maps") / "scene")
    mosaic(config)
    return config


def tile_grids(config):
    return views.tile_grids(config.chain.list_tile, RunStore(config.chain.output_path))


def output_grid(config, grids=None):
    return views.output_grid(grids or tile_grids(config), config.chain.proj,
                             config.dask.chunk_size)


def _read(path, band=None):
    with rasterio.open(path) as src:
        return src.read(band) if band else src.read()


def _truth_codes(config, grid) -> np.ndarray:
    """The scene's truth rasters on the mosaic grid, as geoclass codes (0 elsewhere)."""
    table = json.loads((config.chain.output_path / "samples" / "classes.json").read_text())
    nomenclature = read_nomenclature(config.chain.nomenclature_path)
    by_name = {v: int(k) for k, v in nomenclature.items()}
    to_code = {by_name[c["user_label"]]: c["code"] for c in table["classes"]}
    out = np.zeros(grid.shape, np.int64)
    for tile in config.chain.list_tile:
        with rasterio.open(config.source.parent / "truth" / f"{tile}.tif") as src:
            col, row = ~grid.transform * (src.transform.c, src.transform.f)
            truth = np.vectorize(lambda v: to_code.get(int(v), 0))(src.read(1))
            out[int(row):int(row) + src.height, int(col):int(col) + src.width] = truth
    return out


def test_every_pixel_inside_a_region_has_a_class_and_none_outside(maps):
    final = maps.chain.output_path / "final"
    grid = output_grid(maps)
    label = _read(final / "Classif_Seed_0.tif", 1)
    assert label.shape == grid.shape == (96, 192)
    regions = gpd.read_file(maps.chain.region_path).to_crs(grid.crs)
    inside = rasterize(((g, 1) for g in regions.geometry), out_shape=grid.shape,
                       transform=grid.transform) > 0
    valid = _read(final / "PixelsValidity.tif", 1) > 0
    assert 0 < (~inside).sum() < label.size / 2
    np.testing.assert_array_equal(label > 0, inside & valid)
    assert set(np.unique(label)) <= {0, *load_class_table(maps).codes}


def test_the_map_agrees_with_the_truth(maps):
    grid = output_grid(maps)
    label = _read(maps.chain.output_path / "final" / "Classif_Seed_0.tif", 1)
    truth = _truth_codes(maps, grid)
    both = (label > 0) & (truth > 0)
    assert both.sum() > 0.5 * label.size
    assert (label[both] == truth[both]).mean() > 0.6  # 5 classes: chance is about 0.2


def test_confidence_is_the_highest_probability_and_probabilities_sum_to_one(maps):
    final = maps.chain.output_path / "final"
    label = _read(final / "Classif_Seed_1.tif", 1)
    confidence = _read(final / "Confidence_Seed_1.tif", 1).astype(int)
    proba = _read(final / "ProbabilityMap_Seed_1.tif").astype(int)
    classified = label > 0
    assert proba.shape[0] == len(load_class_table(maps).codes)
    assert np.abs(proba[:, classified].sum(axis=0) - 1000).max() <= 3
    assert np.abs(proba[:, classified].max(axis=0) - 10 * confidence[classified]).max() <= 6
    codes = np.array(load_class_table(maps).codes)
    chosen = proba[np.searchsorted(codes, label[classified]), np.nonzero(classified)[0],
                   np.nonzero(classified)[1]]
    np.testing.assert_array_equal(chosen, proba[:, classified].max(axis=0))  # rounding ties
    assert (confidence[~classified] == 0).all() and (proba[:, ~classified] == 65535).all()
    with rasterio.open(final / "ProbabilityMap_Seed_1.tif") as src:
        assert list(src.descriptions) == [c.name for c in load_class_table(maps).classes]
        assert src.scales[0] == pytest.approx(0.001)


def test_fusion_of_runs_is_dempster_shafer_of_the_run_maps(maps):
    final = maps.chain.output_path / "final"
    table = load_class_table(maps)
    grids = tile_grids(maps)
    grid = output_grid(maps, grids)
    labels = np.stack([_read(final / f"Classif_Seed_{r}.tif", 1) for r in range(2)])
    store = RunStore(maps.chain.output_path)
    masses = [mob_masses(run_confusion(maps, store, r, grid, grids, table), "precision")
              for r in range(2)]
    expected = dempster_shafer(labels, masses, table.codes)
    fused = _read(final / "Classifications_fusion.tif", 1)
    np.testing.assert_array_equal(fused, expected)
    assert (fused[labels[0] == labels[1]] == labels[0][labels[0] == labels[1]]).all()


def test_outputs_are_valid_cogs_that_gdal_reads_with_crs_nodata_and_colors(maps):
    from rio_cogeo.cogeo import cog_validate

    final = maps.chain.output_path / "final"
    for path in sorted(final.glob("*.tif")):
        valid, errors, _ = cog_validate(path)
        assert valid, (path.name, errors)
    gdalinfo = shutil.which("gdalinfo")
    if gdalinfo is None:
        pytest.skip("gdalinfo not installed (apt-get install gdal-bin)")
    info = json.loads(subprocess.run([gdalinfo, "-json", str(final / "Classif_Seed_0.tif")],
                                     capture_output=True, text=True, check=True).stdout)
    band = info["bands"][0]
    assert "32631" in json.dumps(info["coordinateSystem"])
    assert band["noDataValue"] == 0 and band["colorInterpretation"] == "Palette"
    colors = band["colorTable"]["entries"]
    for info_class in load_class_table(maps).classes:
        assert tuple(colors[info_class.code][:3]) == tuple(info_class.color)
    assert info["metadata"]["IMAGE_STRUCTURE"]["LAYOUT"] == "COG"


def test_same_maps_with_one_and_two_workers(scene_template, tmp_path):
    from distributed import Client, LocalCluster

    results = []
    for workers, threads in ((1, 1), (2, 1)):
        config = _scene(scene_template, tmp_path / f"w{workers}")
        with LocalCluster(n_workers=workers, threads_per_worker=threads, processes=False,
                          dashboard_address=":0") as cluster, Client(cluster):
            paths = mosaic(config)
        results.append({p.name: _read(p) for p in paths})
    assert results[0].keys() == results[1].keys()
    for name in results[0]:
        np.testing.assert_array_equal(results[0][name], results[1][name], err_msg=name)

"""Inputs and outputs on an object store: a real S3 API server (moto's, the one s3fs and zarr
test against) on 127.0.0.1, started and stopped here, in its own process. The whole chain
with its inputs in one bucket and its outputs in another, the same maps as a local run (read
back by GDAL over /vsis3/), a run interrupted in a step that resumes to the same maps,
external tables and vectors read from the bucket."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml

from geoclass import fs, pipeline
from geoclass.io.configfile import load_config
from geoclass.io.external import read_table
from geoclass.io.reference import read_vector
from geoclass.pipeline import run_chain
from geoclass.steps import cube as cube_step
from geoclass.views.cube import open_cube

from .conftest import make_scene
from .servers import free_port, serving

pytest.importorskip("moto.server")
s3fs = pytest.importorskip("s3fs")

IN, OUT = "geoclass-inputs", "geoclass-outputs"
INPUT_KEYS = ("s2_path", "ground_truth", "region_path", "nomenclature_path", "color_table")
SETTINGS = {"models": {"params": {"n_estimators": 10}}}


def moto_process():
    """moto's S3 server in its own process (tests/servers.py says why); yields its URL."""
    port = free_port()
    return serving([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                   f"http://127.0.0.1:{port}", "/moto-api/")


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on 127.0.0.1, the environment pointing at it (dummy credentials,
    AWS_ENDPOINT_URL: geoclass derives GDAL's settings from it), two buckets."""
    with moto_process() as endpoint, pytest.MonkeyPatch.context() as env:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_S3_ENDPOINT", "AWS_HTTPS",
                     "AWS_VIRTUAL_HOSTING", "AWS_ENDPOINT_URL_S3", "FSSPEC_S3_ENDPOINT_URL"):
            env.delenv(name, raising=False)
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        env.setenv("AWS_ENDPOINT_URL", endpoint)
        s3fs.S3FileSystem.clear_instance_cache()
        store = s3fs.S3FileSystem(use_listings_cache=False)
        store.mkdir(IN)
        store.mkdir(OUT)
        try:
            yield store
        finally:
            s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    """A tiny scene (1 tile of 64 x 64 px, 4 dates), on disk."""
    return make_scene(tmp_path_factory.mktemp("s3scene"), tiles=1, size=64, dates=4,
                      classes=4, regions=2, seed=3)


def _config(scene: Path, target: Path, inputs: str | None, output: str) -> Path:
    """A copy of the scene's config with its inputs under `inputs` (a URL) and its outputs at
    `output`."""
    data = yaml.safe_load(scene.read_text())
    for key in INPUT_KEYS:
        where = scene.parent / data["chain"][key]
        data["chain"][key] = f"{inputs}/{data['chain'][key]}" if inputs else str(where)
    data["chain"]["output_path"] = output
    for section, values in SETTINGS.items():
        data.setdefault(section, {}).update(values)
    target.mkdir(parents=True, exist_ok=True)
    path = target / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def uploaded(s3, scene) -> str:
    """The scene's inputs in the input bucket; returns their prefix URL."""
    for file in sorted(p for p in scene.parent.rglob("*") if p.is_file()):
        s3.put_file(str(file), f"{IN}/scene/{file.relative_to(scene.parent).as_posix()}")
    return f"s3://{IN}/scene"


@pytest.fixture(scope="module")
def local_run(scene, tmp_path_factory, client):
    """The reference: the same scene and settings, on local disk."""
    folder = tmp_path_factory.mktemp("local")
    config = load_config(_config(scene, folder, None, str(folder / "run")))
    return config, run_chain(config)


@pytest.fixture(scope="module")
def s3_run(s3, uploaded, scene, tmp_path_factory, client):
    folder = tmp_path_factory.mktemp("s3conf")
    config = load_config(_config(scene, folder, uploaded, f"s3://{OUT}/run"))
    return config, run_chain(config)


def _vsis3(key: str):
    """A raster's pixels read by GDAL from the bucket, over /vsis3/ (GDAL's own settings for
    the endpoint, as a user would give them)."""
    endpoint = fs._endpoint()
    options = {"AWS_S3_ENDPOINT": endpoint.split("://", 1)[1], "AWS_HTTPS": "NO",
               "AWS_VIRTUAL_HOSTING": "FALSE"}
    fs.forget_gdal_cache(f"s3://{key}")  # the same key may hold another run's file
    with rasterio.Env(**options), rasterio.open(f"/vsis3/{key}") as src:
        palette = src.colormap(1) if "Classif" in key else None
        return src.read(), src.profile, palette


def test_config_locations_are_urls_or_paths(uploaded, scene, tmp_path):
    config = load_config(_config(scene, tmp_path, uploaded, f"s3://{OUT}/x"))
    assert str(config.chain.output_path) == f"s3://{OUT}/x"
    assert str(config.chain.s2_path) == f"{uploaded}/sensor_data"
    local = load_config(_config(scene, tmp_path / "b", None, "run"))
    assert isinstance(local.chain.output_path, Path)
    assert local.chain.output_path == (tmp_path / "b" / "run").resolve()
    assert fs.gdal_path(config.chain.ground_truth) == f"/vsis3/{IN}/scene/vector/ground_truth.shp"
    assert fs.gdal_path("https://example.org/a.tif") == "/vsicurl/https://example.org/a.tif"


def test_gdal_settings_come_from_the_environment(s3, monkeypatch):
    options = fs.gdal_options()
    assert options["AWS_HTTPS"] == "NO" and options["AWS_VIRTUAL_HOSTING"] == "FALSE"
    assert options["AWS_S3_ENDPOINT"].startswith("127.0.0.1:")
    monkeypatch.setenv("AWS_S3_ENDPOINT", "elsewhere:9000")  # the user's own GDAL settings win
    assert fs.gdal_options() == {}


def test_the_whole_chain_reads_and_writes_buckets(s3, s3_run, local_run):
    config, metrics = s3_run
    _, reference = local_run
    assert metrics["summary"] == reference["summary"]
    keys = {k.split(f"{OUT}/run/", 1)[1] for k in s3.find(f"{OUT}/run")}
    for expected in ("cubes/T31TCJ.zarr/.zmetadata", "model/model_1_seed_0.joblib",
                     "samples/classes.json", "samples/validation_seed_0.parquet",
                     "final/Classif_Seed_0.tif", "final/Confidence_Seed_0.tif",
                     "final/PixelsValidity.tif", "final/metrics.json", "final/report.html",
                     "final/RESULTS.txt", "manifests/report.json", ".geoclass_run.json"):
        assert expected in keys, sorted(keys)
    assert any(k.startswith("samples/learn_seed_0/region_") for k in keys)
    assert any(k.startswith("logs/geoclass-") for k in keys)
    assert not [k for k in keys if ".tmp-" in k or ".old-" in k]
    local_final = Path(local_run[0].chain.output_path) / "final"
    for name in ("Classif_Seed_0.tif", "Confidence_Seed_0.tif", "PixelsValidity.tif"):
        pixels, profile, colormap = _vsis3(f"{OUT}/run/final/{name}")
        with rasterio.open(local_final / name) as src:
            np.testing.assert_array_equal(pixels, src.read())
            assert profile["crs"] == src.crs and profile["transform"] == src.transform
            if name.startswith("Classif"):
                assert colormap == src.colormap(1)
    assert json.loads(s3.cat(f"{OUT}/run/final/metrics.json")) == metrics


def test_gdalinfo_reads_the_cog_over_vsis3(s3, s3_run):
    if shutil.which("gdalinfo") is None:
        pytest.skip("gdalinfo is not installed (CI installs gdal-bin)")
    env = {**os.environ, **fs.gdal_options()}
    done = subprocess.run(["gdalinfo", f"/vsis3/{OUT}/run/final/Classif_Seed_0.tif"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "LAYOUT=COG" in done.stdout and "Color Table" in done.stdout


def test_a_second_run_on_the_bucket_skips_every_step(s3, s3_run, caplog):
    config, _ = s3_run
    before = {k: s3.info(k)["ETag"] for k in s3.find(f"{OUT}/run/final")}
    with caplog.at_level(logging.INFO, logger="geoclass"):
        run_chain(config)
    for step in ("cubes", "samples", "train", "classify", "mosaic", "validate", "report"):
        assert f"{step}: up to date" in caplog.text
    after = {k: s3.info(k)["ETag"] for k in s3.find(f"{OUT}/run/final")}
    assert after == before


class Interrupted(RuntimeError):
    pass


def test_a_run_interrupted_on_the_bucket_resumes_to_the_same_maps(
        s3, uploaded, scene, local_run, tmp_path, monkeypatch, caplog):
    """The mosaic step dies half-way (a partial COG left under its final name, as a killed
    upload of a folder could leave keys); the rerun skips every step before it, redoes the
    mosaic and gives the maps of an uninterrupted run."""
    config = load_config(_config(scene, tmp_path, uploaded, f"s3://{OUT}/resume"))
    mosaic = pipeline.BY_NAME["mosaic"]
    root = f"{OUT}/resume"

    def dies(config, store, force=False):
        s3.pipe(f"{root}/final/Classif_Seed_0.tif", b"II*\x00 half a file")
        s3.pipe(f"{root}/mosaic/seed_0.zarr/.zgroup", b"{")
        raise Interrupted("killed in the mosaic step")

    monkeypatch.setitem(pipeline.BY_NAME, "mosaic", replace(mosaic, run=dies))
    with pytest.raises(Interrupted):
        run_chain(config)
    assert not s3.exists(f"{root}/manifests/mosaic.json")
    assert s3.exists(f"{root}/manifests/classify.json")
    models = {k: s3.info(k)["ETag"] for k in s3.find(f"{root}/model")}
    monkeypatch.setitem(pipeline.BY_NAME, "mosaic", mosaic)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="geoclass"):
        metrics = run_chain(config)
    for step in ("samples", "train", "classify"):
        assert f"{step}: up to date" in caplog.text
    assert {k: s3.info(k)["ETag"] for k in s3.find(f"{root}/model")} == models
    assert metrics["summary"] == local_run[1]["summary"]
    local_final = Path(local_run[0].chain.output_path) / "final"
    pixels, _, _ = _vsis3(f"{root}/final/Classif_Seed_0.tif")
    with rasterio.open(local_final / "Classif_Seed_0.tif") as src:
        np.testing.assert_array_equal(pixels, src.read())


def test_a_cube_interrupted_while_written_is_rebuilt(s3, uploaded, scene, tmp_path,
                                                    monkeypatch):
    """A cube whose write dies leaves no stamp: the rerun rebuilds it, even with --force's
    stamp unchanged."""
    config = load_config(_config(scene, tmp_path, uploaded, f"s3://{OUT}/cubes"))
    pipeline.run_steps(config, until="cubes")
    root = f"{OUT}/cubes"
    stamp = s3.cat(f"{root}/manifests/cubes/T31TCJ.json")
    real = cube_step.lazy.write_dataset

    def dies(ds, path, label, encoding=None):
        s3.pipe(f"{path.path}/.zgroup", b"{")  # a few keys of the new cube, then death
        raise Interrupted("killed while writing the cube")

    monkeypatch.setattr(cube_step.lazy, "write_dataset", dies)
    with pytest.raises(Interrupted):
        pipeline.run_steps(config, until="cubes", force=("cubes",))
    assert not s3.exists(f"{root}/manifests/cubes/T31TCJ.json")
    monkeypatch.setattr(cube_step.lazy, "write_dataset", real)
    pipeline.run_steps(config, until="cubes")
    assert s3.cat(f"{root}/manifests/cubes/T31TCJ.json") == stamp
    cube = fs.as_path(f"s3://{root}/cubes/T31TCJ.zarr")
    assert open_cube(cube).features.shape[0] > 0


def test_external_tables_and_vectors_are_read_from_the_bucket(s3, uploaded, tmp_path):
    table = pd.DataFrame({"sample_id": [1, 2], "label": ["a", "b"], "NDVI_20180101": [.1, .2]})
    table.to_csv(tmp_path / "t.csv", index=False)
    table.to_parquet(tmp_path / "t.parquet", index=False)
    for name in ("t.csv", "t.parquet"):
        s3.put_file(str(tmp_path / name), f"{IN}/tables/{name}")
        pd.testing.assert_frame_equal(read_table(fs.as_path(f"s3://{IN}/tables/{name}")), table)
    vectors = read_vector(f"{uploaded}/vector/ground_truth.shp")  # with its .dbf, .shx, .prj
    assert len(vectors) > 0 and vectors.crs is not None


def test_an_output_bucket_that_does_not_exist_is_an_input_problem(s3):
    problems = fs.check_writable("s3://no-such-bucket/run")
    assert problems and "does not exist" in problems[0]
    assert "read-only" in fs.check_writable("https://example.org/run")[0]
    assert fs.check_writable(f"s3://{OUT}/fresh") == []

"""Auto-context: superpixels computed per chunk with ids that hold across chunk borders, exact
per-superpixel class shares, and the chain's maps improved on a scene with noisy pixels."""

from __future__ import annotations

import json
import shutil
import sys

import dask
import dask.array as da
import numpy as np
import pytest
import zarr

from geoclass.errors import ConfigError
from geoclass.io.configfile import load_config
from geoclass.kernels.superpixels import halo
from geoclass.lazy import pick
from geoclass.views.context import context_view as context_features
from geoclass.views.context import segment_tile

from .conftest import edit_config, make_scene

SIZE = 6  # superpixel side (px)


def _fields(shape=(150, 170), seed=0) -> tuple[np.ndarray, np.ndarray]:
    """(3, h, w) standardized features of rectangular fields of 12 to 40 px with pixel
    noise, NaN in one corner, and the field id of every pixel."""
    rng = np.random.default_rng(seed)
    rows = np.cumsum(rng.integers(12, 40, 20))
    cols = np.cumsum(rng.integers(12, 40, 20))
    field = (np.searchsorted(rows, np.arange(shape[0]), side="right")[:, None] * 100
             + np.searchsorted(cols, np.arange(shape[1]), side="right")[None, :])
    means = rng.normal(0, 1.0, (3, field.max() + 1)).astype(np.float32)
    image = means[:, field] + rng.normal(0, 0.15, (3, *shape)).astype(np.float32)
    image[:, :9, :13] = np.nan
    return image, field


@pytest.fixture(scope="module")
def segments(tmp_path_factory):
    image, field = _fields(seed=2)
    lazy = da.from_array(image, chunks=(3, 64, 64))
    ids = segment_tile(lazy, tmp_path_factory.mktemp("seg") / "windows.zarr", SIZE, 0.1)
    with dask.config.set(scheduler="synchronous"):
        return image, field, ids.compute(), ids


def test_every_valid_pixel_has_a_superpixel_and_ids_hold_across_chunk_borders(segments):
    image, field, ids, _ = segments
    valid = np.isfinite(image).all(axis=0)
    assert (ids[valid] > 0).all() and (ids[~valid] == 0).all()

    def shared(a, b):  # share of neighbour pixels of one field that have the same superpixel
        ok = (ids[a] > 0) & (ids[b] > 0) & (field[a] == field[b])
        return (ids[a][ok] == ids[b][ok]).mean()

    # across the chunk borders (rows and columns 63 | 64 and 127 | 128) superpixels go on
    # with the same id, as they do inside chunks
    for k in (63, 127):
        assert shared(np.s_[k], np.s_[k + 1]) > 0.8
        assert shared(np.s_[:, k], np.s_[:, k + 1]) > 0.8
    n = len(np.unique(ids[valid]))
    assert 0.5 < n / (valid.sum() / SIZE**2) < 2.0  # about size x size pixels each


def test_superpixels_are_bounded_and_follow_the_fields(segments):
    _, field, ids, _ = segments
    h = halo(SIZE)
    pure = 0
    for label in np.unique(ids[ids > 0]):
        rows, cols = np.nonzero(ids == label)
        assert np.ptp(rows) < h and np.ptp(cols) < h
        pure += np.unique(field[rows, cols], return_counts=True)[1].max()
    assert pure / (ids > 0).sum() > 0.9


def test_superpixels_do_not_depend_on_the_order_of_the_tasks(segments):
    _, _, ids, lazy = segments
    with dask.config.set(scheduler="threads", num_workers=2):
        again = lazy.compute()
    np.testing.assert_array_equal(again, ids)


def test_class_shares_per_superpixel_are_exact_across_chunks(segments):
    image, field, ids, _ = segments
    rng = np.random.default_rng(3)
    codes = [3, 7, 11]
    classes = np.where(np.isfinite(image).all(0), rng.choice(codes + [0], ids.shape), 0)
    shares = context_features(da.from_array(ids, chunks=64), da.from_array(classes, chunks=50),
                              codes, halo(SIZE)).compute()
    expected = np.zeros((3, *ids.shape), np.float32)
    for label in np.unique(ids[ids > 0]):
        inside = ids == label
        counts = np.array([(classes[inside] == c).sum() for c in codes], np.float64)
        if counts.sum():
            expected[:, inside] = (counts / counts.sum()).astype(np.float32)[:, None]
    np.testing.assert_allclose(shares, expected, atol=1e-6)
    rows, cols = rng.integers(0, ids.shape[0], 40), rng.integers(0, ids.shape[1], 40)
    picked = pick(da.from_array(expected, chunks=(3, 64, 64)), rows, cols, "context")
    np.testing.assert_array_equal(picked, expected[:, rows, cols].T)


def test_autocontext_refuses_samples_without_a_pixel_and_too_small_chunks(tmp_path):
    config_path = make_scene(tmp_path / "s", tiles=1, size=64, dates=3)
    edit_config(config_path, chain={"enable_autocontext": True},
                sampling={"sample_augmentation": {"activate": True}})
    with pytest.raises(ConfigError, match="sample_augmentation"):
        load_config(config_path)
    edit_config(config_path, sampling={"sample_augmentation": {"activate": False}},
                chain={"autocontext_superpixel_size": 20}, dask={"chunk_size": 32})
    with pytest.raises(ConfigError, match="chunk_size >= 60"):
        load_config(config_path)


def test_check_reports_unknown_segmentation_features_and_a_missing_torch(tmp_path, monkeypatch):
    from geoclass.steps.check import check_inputs

    config_path = make_scene(tmp_path / "s", tiles=1, size=64, dates=3)
    edit_config(config_path, chain={"enable_autocontext": True,
                                    "autocontext_features": ["S2_NDVI_nope"]},
                models={"classifier": "tempcnn"})
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    problems = check_inputs(load_config(config_path)).problems
    assert len(problems) == 2, problems
    assert "tempcnn needs PyTorch: pip install 'geoclass[dl]'" in problems[0]
    assert "chain.autocontext_features: ['S2_NDVI_nope'] are not features" in problems[1]
    edit_config(config_path, models={"classifier": "random_forest",
                                     "params": {"n_trees": 10}})
    problems = check_inputs(load_config(config_path)).problems
    assert any("models.params: n_trees not accepted" in p for p in problems), problems
    assert not (tmp_path / "s" / "run").exists()


# --- the chain on a scene with noisy pixels inside fields ------------------------------------

NOISY = dict(tiles=1, size=192, dates=6, classes=5, regions=1, seed=4, noise=0.45,
             cloud_cover=0.0)


def _overall_accuracy(config) -> float:
    metrics = json.loads((config.chain.output_path / "final" / "metrics.json").read_text())
    return metrics["runs"][0]["scores"]["overall_accuracy"]


CONTEXT = {"enable_autocontext": True, "autocontext_iterations": 3,
           "autocontext_superpixel_size": 6}
FOREST = {"params": {"n_estimators": 40}}
KNN = {"classifier": "sklearn.neighbors.KNeighborsClassifier", "params": {"n_neighbors": 15},
       "standardization": True}


@pytest.fixture(scope="module")
def noisy_runs(tmp_path_factory, client):
    """The chain on one noisy scene: default forest and k-NN, without and with auto-context."""
    from geoclass.pipeline import run_chain

    template = make_scene(tmp_path_factory.mktemp("noisy") / "scene", **NOISY)
    out = {}
    for name, chain, models in (("plain", {}, FOREST), ("context", CONTEXT, FOREST),
                                ("plain_knn", {}, KNN), ("context_knn", CONTEXT, KNN)):
        target = template.parent.parent / name
        shutil.copytree(template.parent, target)
        path = edit_config(target / "config.yaml", chain=chain, dask={"chunk_size": 64},
                           models=models)
        config = load_config(path)
        run_chain(config)
        out[name] = config
    return out


def test_autocontext_improves_the_map_of_a_noisy_scene(noisy_runs):
    plain, context = (_overall_accuracy(noisy_runs[k]) for k in ("plain", "context"))
    assert plain < 0.8  # the pixel noise costs the per-pixel classifier
    assert context > plain + 0.05  # measured: 0.608 -> 0.699


def test_autocontext_works_with_any_classifier(noisy_runs):
    plain, context = (_overall_accuracy(noisy_runs[k]) for k in ("plain_knn", "context_knn"))
    assert context > plain + 0.02  # measured: 0.583 -> 0.619


def test_autocontext_outputs_and_context_features(noisy_runs):
    import joblib

    from geoclass.api import load_class_table, model_path

    config = noisy_runs["context"]
    out = config.chain.output_path
    tile = config.chain.list_tile[0]
    segments = zarr.open_array(str(out / "autocontext" / "segments" / f"{tile}.zarr"), mode="r")
    assert segments.shape == (NOISY["size"], NOISY["size"]) and segments[:].max() > 0
    for iteration in (0, 1):
        assert (out / "autocontext" / f"iter_{iteration}" / "model_1_seed_0.joblib").exists()
        assert (out / "autocontext" / f"iter_{iteration}" / f"{tile}_seed_0.zarr").exists()
    final = joblib.load(model_path(config, 1, 0))
    codes = load_class_table(config).codes
    assert final.features[-len(codes):] == [f"context_{c}" for c in sorted(codes)]
    first = joblib.load(out / "autocontext" / "iter_0" / "model_1_seed_0.joblib")
    assert not any(f.startswith("context_") for f in first.features)
    assert not list(out.rglob("*.tmp*")) and not list(out.rglob(".*_windows.zarr"))
    # resumed: nothing is refitted while the settings stay the same
    from geoclass.api import train

    stamp = model_path(config, 1, 0).stat().st_mtime_ns
    train(config)
    assert model_path(config, 1, 0).stat().st_mtime_ns == stamp

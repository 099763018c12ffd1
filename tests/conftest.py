"""Shared fixtures: a dask.distributed client, small generated scenes, the shared data folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from geoclass.io.configfile import load_config
from geoclass.testing.synth import synth

# The material next to the project root (../shared), or where GEOCLASS_SHARED says
SHARED = Path(os.environ.get("GEOCLASS_SHARED")
              or Path(__file__).resolve().parents[2] / "shared")
IOTA2 = SHARED / "data" / "iota2"
NO_IOTA2_DATA = (f"iota2's real test data not found at {IOTA2}: they sit next to the project "
                 "root (../shared/data/iota2); clone the project beside ../shared or set "
                 "GEOCLASS_SHARED (CI fails without them)")


@pytest.fixture(scope="session")
def client():
    """One in-process dask.distributed cluster for the whole test session."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as c:
        yield c


def make_scene(path: Path, **options) -> Path:
    """A small generated scene; returns its config path."""
    settings = dict(tiles=2, size=96, dates=6, classes=5, regions=2, seed=1)
    settings.update(options)
    return synth(path, **settings)


def edit_config(config_path: Path, **sections) -> Path:
    """Update sections of a YAML config in place (dicts are merged one level deep)."""
    data = yaml.safe_load(config_path.read_text())
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    config_path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    return config_path


@pytest.fixture(scope="session")
def scene_template(tmp_path_factory) -> Path:
    """A 2-tile, 2-region string-label scene, generated once per session (never modified)."""
    return make_scene(tmp_path_factory.mktemp("scene"))


@pytest.fixture
def scene(scene_template, tmp_path) -> Path:
    """A private copy of the session scene (without outputs); returns its config path."""
    target = tmp_path / "scene"
    shutil.copytree(scene_template.parent, target, ignore=shutil.ignore_patterns("run"))
    return target / "config.yaml"


def config_of(path: Path, **sections):
    """Load a config after merging `sections` into its file."""
    return load_config(edit_config(path, **sections) if sections else path)

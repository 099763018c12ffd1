"""The command line: bad input is reported clearly, all at once, before any output is written."""

from __future__ import annotations

import shutil

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely

from geoclass.cli import main

from .conftest import edit_config


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_check_passes_on_a_good_scene(scene, capsys):
    code, out, _ = _run(capsys, "check", scene)
    assert code == 0 and "all input checks passed" in out
    assert not (scene.parent / "run").exists()


def test_check_lists_every_problem_and_writes_nothing(scene, capsys):
    vector = scene.parent / "vector"
    gt = gpd.read_file(vector / "ground_truth.shp")
    gt.loc[len(gt)] = {"class": "eau", "code": 4, "geometry": gt.geometry[0].buffer(5)}
    gt.loc[len(gt)] = {"class": "eau", "code": 4, "geometry": shapely.Point(gt.geometry[1]
                                                                             .centroid)}
    bad = vector / "bad_truth.gpkg"
    gt.to_file(bad)
    regions = gpd.read_file(vector / "regions.shp")
    regions.loc[0, "region"] = "north"
    regions.to_file(vector / "regions_bad.shp")
    edit_config(scene, chain={"ground_truth": "vector/bad_truth.gpkg",
                              "region_path": "vector/regions_bad.shp"})
    code, out, err = _run(capsys, "check", scene)
    assert code == 1 and "problem(s) found" in err
    problems = [line for line in out.splitlines() if line.startswith("problem:")]
    n = len(gt)
    # GeoPackage FIDs start at 1: the added rows are FID n - 1 and n
    assert any("bad_truth.gpkg" in p and "overlap" in p and f"FID 1 and {n - 1}" in p
               for p in problems)
    assert any("bad_truth.gpkg" in p and f"FID {n}" in p and "Point" in p for p in problems)
    assert any("regions_bad.shp" in p and "north" in p for p in problems)
    assert not (scene.parent / "run").exists()


def test_samples_refuses_bad_input_before_any_work(scene, capsys):
    edit_config(scene, chain={"data_field": "label"})
    code, _, err = _run(capsys, "samples", scene, "--workers", "1")
    assert code == 2
    assert "ground_truth.shp" in err and "'label'" in err and "Traceback" not in err
    assert not (scene.parent / "run").exists()


def test_class_missing_from_color_table(scene, capsys):
    colors = scene.parent / "colors.txt"
    lines = colors.read_text().splitlines()
    nomenclature = dict(line.rsplit(":", 1)[::-1] for line in
                        (scene.parent / "nomenclature.txt").read_text().splitlines())
    dropped = lines[0].split()[0]
    colors.write_text("\n".join(lines[1:]) + "\n")
    code, out, _ = _run(capsys, "check", scene)
    assert code == 1
    assert f"colors.txt: no color for classes {nomenclature[dropped]}" in out


def test_tile_without_clear_date_is_a_problem(scene, capsys):
    for clm in (scene.parent / "sensor_data" / "T31TDJ").glob("*/MASKS/*_CLM_R1.tif"):
        with rasterio.open(clm, "r+") as dst:
            dst.write(np.full((1, dst.height, dst.width), 2, np.uint8))
    code, out, _ = _run(capsys, "check", scene)
    assert code == 1 and "tile T31TDJ: no sentinel_2 date has a clear pixel" in out


def test_config_errors_name_the_key_and_the_file(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("chain:\n  output_path: out\n  list_tile: T1\n  ratoi: 0.5\n"
                      "  runs: many\n")
    code, _, err = _run(capsys, "check", config)
    assert code == 2 and str(config) in err
    assert "chain.ratoi: unknown key" in err and "chain.runs:" in err
    code, _, err = _run(capsys, "check", tmp_path / "missing.yaml")
    assert code == 2 and "configuration file not found" in err


def test_missing_sensor_folder_names_the_tile(scene, capsys):
    edit_config(scene, chain={"list_tile": ["T31TCJ", "T31XXX"]})
    code, out, _ = _run(capsys, "check", scene)
    assert code == 1 and "no folder for tile T31XXX in chain.s2_path" in out


def test_synth_then_cube_from_the_command_line(tmp_path, capsys):
    code, out, _ = _run(capsys, "synth", tmp_path / "s", "--tiles", "1", "--size", "64",
                        "--dates", "4", "--classes", "4", "--regions", "1")
    assert code == 0 and (tmp_path / "s" / "config.yaml").exists()
    code, out, _ = _run(capsys, "cube", tmp_path / "s" / "config.yaml", "--workers", "1")
    assert code == 0 and "T31TCJ.zarr" in out
    assert (tmp_path / "s" / "run" / "cubes" / "T31TCJ.zarr" / ".zmetadata").exists()


def test_train_from_the_command_line(scene, capsys):
    edit_config(scene, models={"params": {"n_estimators": 5}})
    code, out, _ = _run(capsys, "train", scene, "--workers", "1")
    assert code == 0
    assert "region 1 run 0:" in out and "region 2 run 0:" in out
    assert (scene.parent / "run" / "model" / "model_2_seed_0.joblib").exists()


def test_run_refuses_bad_input_before_starting_anything(scene, capsys):
    edit_config(scene, chain={"region_field": "zone"})
    code, _, err = _run(capsys, "run", scene, "--workers", "1")
    assert code == 2 and "regions.shp" in err and "zone" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) >= 1
    assert not (scene.parent / "run").exists()


def test_unreachable_scheduler_is_one_clear_error(scene, capsys):
    code, _, err = _run(capsys, "run", scene, "--scheduler", "tcp://127.0.0.1:9")
    assert code == 2 and "cannot reach the dask scheduler at tcp://127.0.0.1:9" in err
    assert "Traceback" not in err


def test_classify_from_the_command_line_writes_the_final_maps(scene, capsys):
    edit_config(scene, models={"params": {"n_estimators": 5}})
    code, out, _ = _run(capsys, "classify", scene, "--workers", "1")
    assert code == 0 and "Classif_Seed_0.tif" in out
    with rasterio.open(scene.parent / "run" / "final" / "Classif_Seed_0.tif") as src:
        assert src.crs.to_epsg() == 32631 and src.colormap(1)


def test_suggest_options():
    from geoclass.cli import build_parser

    args = build_parser().parse_args(["suggest", "c.yaml", "--n", "50", "--min-distance", "30",
                                      "--measure", "least", "--run", "1"])
    assert (args.func, args.n, args.min_distance, args.measure, args.run, args.output) == (
        "suggest", 50, 30.0, "least", 1, None)
    defaults = build_parser().parse_args(["suggest", "c.yaml"])
    assert (defaults.n, defaults.min_distance, defaults.measure) == (200, None, None)


@pytest.fixture(scope="module")
def classified(scene_template, tmp_path_factory, client):
    """A scene taken through `geoclass classify` once, on the session's cluster; returns its
    config path and the cluster's address."""
    target = tmp_path_factory.mktemp("force") / "scene"
    shutil.copytree(scene_template.parent, target, ignore=shutil.ignore_patterns("run"))
    config = edit_config(target / "config.yaml", models={"params": {"n_estimators": 5}})
    address = client.scheduler.address
    assert main(["classify", str(config), "--scheduler", address]) == 0
    return config, address


# what each step command makes (folder of the run, files), in the order of the chain
MADE_BY = {"cube": [("cubes", "**/*")], "samples": [("samples", "**/*.parquet")],
           "train": [("model", "*.joblib")],
           "classify": [("classif", "**/*"), ("final", "Classif_Seed_*.tif")]}


def _stamps(run, made) -> dict:
    return {p: p.stat().st_mtime_ns for folder, pattern in made
            for p in sorted((run / folder).glob(pattern)) if p.is_file()}


@pytest.mark.parametrize("command", list(MADE_BY))
def test_force_redoes_the_steps_own_work_and_nothing_before_it(classified, command, capsys):
    """`geoclass <step> --force` recomputes what that step makes (classify: every tile's map,
    then the mosaic), and leaves the earlier steps' outputs alone."""
    config, address = classified
    run = config.parent / "run"
    assert main([command, str(config), "--scheduler", address]) == 0  # up to date
    names = list(MADE_BY)
    earlier = [item for name in names[:names.index(command)] for item in MADE_BY[name]]
    own, kept = _stamps(run, MADE_BY[command]), _stamps(run, earlier)
    assert own
    assert main([command, str(config), "--scheduler", address, "--force"]) == 0
    again = _stamps(run, MADE_BY[command])
    assert again.keys() == own.keys()
    assert [p for p, t in own.items() if again[p] == t] == []  # every file rewritten
    assert _stamps(run, earlier) == kept
    capsys.readouterr()


def test_a_command_with_nothing_to_do_starts_no_cluster(classified, capsys):
    config, _ = classified
    capsys.readouterr()
    assert main(["classify", str(config)]) == 0  # no --scheduler: a LocalCluster if needed
    out, err = capsys.readouterr()
    for step in ("cubes", "samples", "train", "classify", "mosaic"):
        assert f"{step}: up to date" in out + err, step
    assert "LocalCluster" not in out + err
    assert "Classif_Seed_0.tif" in out

"""iota2's own spot-6 configuration (`spot_6_data/config_thrs.cfg`) run end to end by
`geoclass run`, as the file is: user features only (`userFeat`, one SPOT-6 band at 1.5007 x
1.4992 m resampled to iota2's `spatialResolution: [1.5]`), its fake polygons (two of which
overlap, with the same label), `sharkrf` with 100 trees, 10 % of the learning pixels."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geoclass.cli import main
from geoclass.io.reference import read_nomenclature

from .conftest import IOTA2, NO_IOTA2_DATA

SPOT6 = IOTA2 / "spot_6_data"
pytestmark = pytest.mark.skipif(not (SPOT6 / "config_thrs.cfg").is_file(), reason=NO_IOTA2_DATA)


def filled_config(tmp_path: Path) -> Path:
    """config_thrs.cfg with its 'None' paths filled in, as a user would: the output in
    `tmp_path`, the inputs in spot_6_data/."""
    text = (SPOT6 / "config_thrs.cfg").read_text()
    values = {"outputPath": tmp_path / "run", "groundTruth": SPOT6 / "fake_samples.shp",
              "nomenclaturePath": SPOT6 / "Nomenclature_thrs",
              "colorTable": SPOT6 / "colorFile_thrs", "userFeatPath": SPOT6 / "images"}
    for key, value in values.items():
        text, count = re.subn(rf"({key}\s*:\s*)'None'", rf"\1'{value}'", text)
        assert count == 1, key
    path = tmp_path / "config_thrs.cfg"
    path.write_text(text)
    return path


def test_config_thrs_runs_end_to_end_on_the_spot6_image(tmp_path, capsys):
    config = filled_config(tmp_path)
    code = main(["run", str(config), "--workers", "1", "--threads-per-worker", "2"])
    out, err = capsys.readouterr()
    assert code == 0, err
    final = tmp_path / "run" / "final"
    codes = {int(c) for c in read_nomenclature(SPOT6 / "Nomenclature_thrs")}

    with rasterio.open(final / "Classif_Seed_0.tif") as src, \
            rasterio.open(SPOT6 / "images" / "T32TLR" / "spot6_sub.tif") as image:
        classes = src.read(1)
        assert src.crs.to_epsg() == 2154 and src.res == (1.5, 1.5)  # GlobChain.proj, [1.5]
        assert src.nodata == 0 and src.is_tiled and src.overviews(1)  # a COG
        left, bottom, right, top = image.bounds
        assert src.bounds.left <= left and src.bounds.right >= right - 1.5
        assert src.bounds.top >= top and src.bounds.bottom <= bottom + 1.5
        colors, names = src.colormap(1), src.tags()
    mapped = set(np.unique(classes).tolist()) - {0}
    assert mapped <= codes and mapped == {2, 6}  # the labels of fake_samples.shp
    assert (classes > 0).mean() > 0.99  # all but the image's nodata pixels
    assert colors[6][:3] == (22, 87, 26) and names["CLASS_6"] == "ligneux haut resineux"

    metrics = json.loads((final / "metrics.json").read_text())
    scores = metrics["runs"][0]["scores"]
    assert 0.8 < scores["overall_accuracy"] <= 1 and scores["n_samples"] > 1000
    assert [c["code"] for c in scores["per_class"]] == [2, 6]
    assert np.asarray(metrics["runs"][0]["confusion"]).sum() == scores["n_samples"]
    confusion = (final / "confusion_seed_0.csv").read_text().splitlines()
    assert confusion[0] == "reference,sol nu,ligneux haut resineux"
    assert "OA" in (final / "RESULTS.txt").read_text()
    for name in ("Confidence_Seed_0.tif", "PixelsValidity.tif",
                 "ClassificationResults_seed_0.txt", "report.html"):
        assert (final / name).is_file(), name
    assert "few clear dates" not in (final / "warnings.txt").read_text()  # no dates here
    assert "overall accuracy" in out

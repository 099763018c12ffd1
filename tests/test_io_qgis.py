"""QGIS style and GDAL raster attribute table of a class raster, read back by an XML parser
and by gdalinfo."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from geoclass.io.qgis import qml_text, rat_element, write_class_styles, write_qml, write_rat

CLASSES = [(11, "colza", (255, 255, 0)),
           (2, "blé & orge <hiver>", (200, 100, 0)),
           (30, "prairie \"permanente\"", (0, 128, 0, 128))]
NEEDS_GDALINFO = pytest.mark.skipif(shutil.which("gdalinfo") is None, reason="no gdalinfo")


def class_cog(path):
    """A small uint8 class COG (0 = nodata) with codes 2, 11 and 30."""
    data = np.array([[0, 11, 2, 2], [2, 30, 11, 0], [2, 2, 2, 30]], np.uint8)
    with rasterio.open(path, "w", driver="COG", width=4, height=3, count=1, dtype="uint8",
                       nodata=0, crs="EPSG:32631",
                       transform=from_origin(500_000, 4_800_000, 10, 10)) as dst:
        dst.write(data, 1)
    return path


def gdalinfo(*args):
    return subprocess.run(["gdalinfo", *map(str, args)], check=True, capture_output=True,
                          text=True).stdout


def test_qml_has_one_palette_entry_per_class():
    root = ET.fromstring(qml_text(CLASSES))
    assert root.tag == "qgis"
    renderer = root.find("pipe/rasterrenderer")
    assert renderer.get("type") == "paletted" and renderer.get("band") == "1"
    entries = renderer.findall("colorPalette/paletteEntry")
    assert [(e.get("value"), e.get("label"), e.get("color"), e.get("alpha")) for e in entries] == [
        ("2", "blé & orge <hiver>", "#c86400", "255"),
        ("11", "colza", "#ffff00", "255"),
        ("30", "prairie \"permanente\"", "#008000", "128"),
    ]
    assert qml_text(CLASSES).startswith("<!DOCTYPE qgis")
    assert ET.fromstring(qml_text(CLASSES, band=2)).find("pipe/rasterrenderer").get("band") == "2"


def test_bad_classes_are_refused():
    with pytest.raises(ValueError, match="distinct"):
        qml_text([(1, "a", (0, 0, 0)), (1, "b", (1, 1, 1))])
    with pytest.raises(ValueError, match="0..255"):
        qml_text([(1, "a", (0, 0, 256))])
    with pytest.raises(ValueError, match="0..255"):
        rat_element([(1, "a", (0, 0))])
    with pytest.raises(ValueError, match="XML"):
        qml_text([(1, "bad\x01name", (0, 0, 0))])
    with pytest.raises(ValueError, match="distinct and not empty"):
        qml_text([])


def test_rat_fields_and_rows():
    table = rat_element(CLASSES, counts={2: 6, 11: 2})
    fields = [(f.findtext("Name"), f.findtext("Type"), f.findtext("Usage"))
              for f in table.findall("FieldDefn")]
    assert fields == [("Value", "0", "5"), ("Count", "1", "1"), ("Class_Name", "2", "2"),
                      ("Red", "0", "6"), ("Green", "0", "7"), ("Blue", "0", "8"),
                      ("Alpha", "0", "9")]
    rows = [[f.text for f in row.findall("F")] for row in table.findall("Row")]
    assert rows == [["2", "6", "blé & orge <hiver>", "200", "100", "0", "255"],
                    ["11", "2", "colza", "255", "255", "0", "255"],
                    ["30", "0", "prairie \"permanente\"", "0", "128", "0", "128"]]
    assert [f.findtext("Name") for f in rat_element(CLASSES).findall("FieldDefn")][:2] == [
        "Value", "Class_Name"]


@NEEDS_GDALINFO
def test_gdalinfo_lists_the_attribute_table(tmp_path):
    tif = class_cog(tmp_path / "Classif_Seed_0.tif")
    qml, aux = write_class_styles(tif, CLASSES, counts={2: 6, 11: 2, 30: 2})
    assert qml == tmp_path / "Classif_Seed_0.qml"
    assert aux == tmp_path / "Classif_Seed_0.tif.aux.xml"
    text = gdalinfo(tif)
    assert "<GDALRasterAttributeTable" in text
    assert "<F>colza</F>" in text and "<F>blé &amp; orge &lt;hiver&gt;</F>" in text
    info = json.loads(gdalinfo("-json", tif))
    rat = info.get("rat") or info["bands"][0]["rat"]  # GDAL < 3.7 puts it at the top
    assert [field["name"] for field in rat["fieldDefn"]] == [
        "Value", "Count", "Class_Name", "Red", "Green", "Blue", "Alpha"]
    assert [row["f"] for row in rat["row"]] == [
        [2, 6.0, "blé & orge <hiver>", 200, 100, 0, 255],
        [11, 2.0, "colza", 255, 255, 0, 255],
        [30, 2.0, "prairie \"permanente\"", 0, 128, 0, 128]]
    entries = ET.parse(qml).getroot().findall("pipe/rasterrenderer/colorPalette/paletteEntry")
    assert len(entries) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [  # no temporary file left
        "Classif_Seed_0.qml", "Classif_Seed_0.tif", "Classif_Seed_0.tif.aux.xml"]


@NEEDS_GDALINFO
def test_existing_sidecar_content_is_kept(tmp_path):
    tif = class_cog(tmp_path / "map.tif")
    gdalinfo("-stats", tif)  # GDAL writes the band statistics to map.tif.aux.xml
    assert "STATISTICS_MAXIMUM" in (tmp_path / "map.tif.aux.xml").read_text()
    write_rat(tif, CLASSES)
    write_rat(tif, [(2, "cereals", (1, 2, 3))])  # replaces the table, once
    text = (tmp_path / "map.tif.aux.xml").read_text()
    assert "STATISTICS_MAXIMUM" in text
    assert text.count("<GDALRasterAttributeTable") == 1 and "colza" not in text
    assert "<F>cereals</F>" in gdalinfo(tif)


def test_broken_sidecar_is_not_overwritten(tmp_path):
    tif = class_cog(tmp_path / "map.tif")
    aux = tmp_path / "map.tif.aux.xml"
    aux.write_text("<PAMDataset><oops>")
    with pytest.raises(ValueError, match="not valid XML"):
        write_rat(tif, CLASSES)
    assert aux.read_text() == "<PAMDataset><oops>"
    with pytest.raises(FileNotFoundError):
        write_class_styles(tmp_path / "missing.tif", CLASSES)
    assert write_qml(tif, CLASSES).read_text(encoding="utf-8").count("paletteEntry") == 3

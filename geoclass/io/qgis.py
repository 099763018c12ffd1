"""Styles for class rasters: a QGIS style (<name>.qml, a paletted renderer that QGIS loads by
default with the raster) and a GDAL raster attribute table in the PAM sidecar
(<name>.tif.aux.xml, read by GDAL, QGIS and ArcGIS), both written atomically next to the tif.

classes: (code, name, colour) triples, colour = (r, g, b) or (r, g, b, alpha), 0..255.
Names go through an XML writer, so accents, & and < are kept and escaped as XML requires;
control characters, which XML 1.0 cannot hold, are refused."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from geoclass import fs
from geoclass.atomic import atomic_output

QGIS_DOCTYPE = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>"
QGIS_VERSION = "3.28.0-Firenze"  # the QGIS whose QML layout this follows (any 3.x reads it)
# GDAL's GDALRATFieldType and GDALRATFieldUsage values (gdal.h)
GFT_INTEGER, GFT_REAL, GFT_STRING = 0, 1, 2
GFU_PIXEL_COUNT, GFU_NAME, GFU_MIN_MAX = 1, 2, 5
GFU_RED, GFU_GREEN, GFU_BLUE, GFU_ALPHA = 6, 7, 8, 9
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

ClassStyle = tuple[int, str, tuple[int, ...]]


def _checked(classes: Iterable[Sequence]) -> list[ClassStyle]:
    """(code, name, (r, g, b, a)) of each class, validated."""
    out = []
    for entry in classes:
        code, name, colour = entry
        rgba = tuple(int(v) for v in colour) + ((255,) if len(colour) == 3 else ())
        if len(rgba) != 4 or not all(0 <= v <= 255 for v in rgba):
            raise ValueError(f"class {code}: colour must be 3 or 4 values in 0..255, got "
                             f"{colour}")
        if _NOT_XML.search(str(name)):
            raise ValueError(f"class {code}: name {name!r} holds characters XML cannot store")
        out.append((int(code), str(name), rgba))
    codes = [c for c, _, _ in out]
    if not out or len(set(codes)) != len(codes):
        raise ValueError(f"class codes must be distinct and not empty, got {codes}")
    return sorted(out)


def qml_text(classes: Iterable[Sequence], band: int = 1) -> str:
    """A QGIS style (QML) with a paletted renderer of `band`: one paletteEntry (value, color
    #rrggbb, alpha, label) per class, in code order, as QgsPalettedRasterRenderer writes it.
    Pixels of other values (nodata included) are drawn transparent by QGIS."""
    root = ET.Element("qgis", {"version": QGIS_VERSION, "styleCategories": "Symbology"})
    pipe = ET.SubElement(root, "pipe")
    renderer = ET.SubElement(pipe, "rasterrenderer", {
        "type": "paletted", "band": str(band), "opacity": "1", "alphaBand": "-1",
        "nodataColor": ""})
    ET.SubElement(renderer, "rasterTransparency")
    palette = ET.SubElement(renderer, "colorPalette")
    for code, name, (r, g, b, a) in _checked(classes):
        ET.SubElement(palette, "paletteEntry", {
            "value": str(code), "color": f"#{r:02x}{g:02x}{b:02x}", "alpha": str(a),
            "label": name})
    ET.SubElement(pipe, "brightnesscontrast", {"brightness": "0", "contrast": "0",
                                               "gamma": "1"})
    ET.SubElement(pipe, "huesaturation", {"saturation": "0", "grayscaleMode": "0",
                                          "colorizeOn": "0", "invertColors": "0"})
    ET.SubElement(pipe, "rasterresampler", {"maxOversampling": "2"})
    ET.SubElement(root, "blendMode").text = "0"
    ET.indent(root)
    return f"{QGIS_DOCTYPE}\n{ET.tostring(root, encoding='unicode')}\n"


def _field(table: ET.Element, index: int, name: str, kind: int, usage: int) -> None:
    field = ET.SubElement(table, "FieldDefn", {"index": str(index)})
    ET.SubElement(field, "Name").text = name
    ET.SubElement(field, "Type").text = str(kind)
    ET.SubElement(field, "Usage").text = str(usage)


def rat_element(classes: Iterable[Sequence],
                counts: Mapping[int, int] | None = None) -> ET.Element:
    """GDAL's XML form of a thematic raster attribute table (as GDALDefaultRasterAttributeTable
    serialises it): fields Value (integer, MinMax), Count (real, PixelCount; only with
    `counts`, code -> pixels, real so that counts past 2^31 fit), Class_Name (string, Name),
    Red, Green, Blue, Alpha (integers, colour usages); one row per class in code order."""
    fields = [("Value", GFT_INTEGER, GFU_MIN_MAX)]
    if counts is not None:
        fields.append(("Count", GFT_REAL, GFU_PIXEL_COUNT))
    fields += [("Class_Name", GFT_STRING, GFU_NAME), ("Red", GFT_INTEGER, GFU_RED),
               ("Green", GFT_INTEGER, GFU_GREEN), ("Blue", GFT_INTEGER, GFU_BLUE),
               ("Alpha", GFT_INTEGER, GFU_ALPHA)]
    table = ET.Element("GDALRasterAttributeTable", {"tableType": "thematic"})
    for index, (name, kind, usage) in enumerate(fields):
        _field(table, index, name, kind, usage)
    for index, (code, name, rgba) in enumerate(_checked(classes)):
        values = [str(code)]
        if counts is not None:
            values.append(str(int(counts.get(code, 0))))
        values += [name, *(str(v) for v in rgba)]
        row = ET.SubElement(table, "Row", {"index": str(index)})
        for value in values:
            ET.SubElement(row, "F").text = value
    return table


def _pam_root(aux: Path) -> ET.Element:
    """The sidecar's PAMDataset (a new one if there is no sidecar yet)."""
    if not aux.exists():
        return ET.Element("PAMDataset")
    try:
        with fs.open(aux, "rb") as f:
            root = ET.parse(f).getroot()
    except ET.ParseError as error:
        raise ValueError(f"{aux} is not valid XML, not overwriting it: {error}") from error
    if root.tag != "PAMDataset":
        raise ValueError(f"{aux} is not a GDAL PAM sidecar (root <{root.tag}>)")
    return root


def write_qml(tif_path: str | Path, classes: Iterable[Sequence], band: int = 1) -> Path:
    """Write `qml_text` to <tif without suffix>.qml, atomically; returns its path."""
    qml = fs.as_path(tif_path).with_suffix(".qml")
    text = qml_text(classes, band)
    with atomic_output(qml) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return qml


def write_rat(tif_path: str | Path, classes: Iterable[Sequence], band: int = 1,
              counts: Mapping[int, int] | None = None) -> Path:
    """Put `rat_element` in <tif>.aux.xml for `band`, atomically; returns its path. What the
    sidecar already holds (statistics, metadata, other bands) is kept; a previous attribute
    table of the band is replaced."""
    aux = fs.as_path(f"{tif_path}.aux.xml")
    table = rat_element(classes, counts)
    root = _pam_root(aux)
    node = next((b for b in root.findall("PAMRasterBand") if b.get("band") == str(band)), None)
    if node is None:
        node = ET.SubElement(root, "PAMRasterBand", {"band": str(band)})
    for old in node.findall("GDALRasterAttributeTable"):
        node.remove(old)
    node.append(table)
    ET.indent(root)
    with atomic_output(aux) as tmp:
        ET.ElementTree(root).write(tmp, encoding="UTF-8", xml_declaration=False)
    return aux


def write_class_styles(tif_path: str | Path, classes: Iterable[Sequence],
                       counts: Mapping[int, int] | None = None) -> tuple[Path, Path]:
    """Style a class raster for desktop GIS: its QGIS style (<name>.qml) and its GDAL raster
    attribute table (<name>.tif.aux.xml, with pixel counts if `counts` is given), both for
    band 1 and both written atomically. Returns (qml path, aux.xml path)."""
    classes = _checked(classes)
    if not fs.exists(tif_path):
        raise FileNotFoundError(f"no raster at {tif_path}")
    return write_qml(tif_path, classes), write_rat(tif_path, classes, counts=counts)

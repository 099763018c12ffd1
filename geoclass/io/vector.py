"""Vector outputs: GeoPackages written atomically (pyogrio through geopandas)."""

from __future__ import annotations

import os
from pathlib import Path

import geopandas as gpd

from geoclass import fs
from geoclass.atomic import atomic_output


def write_geopackage(frame: gpd.GeoDataFrame, path: str | Path, layer: str) -> Path:
    """Write `frame` as the single layer `layer` of a GeoPackage at `path`, atomically (a
    temporary sibling, then a rename: no half-written file under the final name; on an
    object store, one upload)."""
    path = fs.as_path(path)
    with atomic_output(path) as tmp:
        staging = tmp.with_name(tmp.name + ".gpkg")  # GDAL wants the .gpkg extension
        try:
            frame.to_file(staging, driver="GPKG", layer=layer, engine="pyogrio")
            os.replace(staging, tmp)
        finally:
            staging.unlink(missing_ok=True)
    return path

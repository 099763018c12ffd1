"""Sentinel-1 backscatter: calibrated, orthorectified GeoTIFFs per tile, date and orbit
direction (calibration and orthorectification from raw GRD are out of scope: use S1Tiling,
SNAP or similar first).

Files `<root>/<TILE>/` named by `sensors.sentinel_1.pattern`, by default
`s1?_{tile}_{pol}_{orbit}_{date:%Y%m%dt%H%M%S}*.tif` (e.g. `s1a_T31TCJ_vv_ASC_20180511t174000.tif`,
one file per polarisation); a pattern without `{pol}` reads one file per date whose bands are
the `polarisations` in order. `{orbit}` is ASC/DES (or ASCENDING/DESCENDING). Values are linear
(or dB with `db_input: true`), `nodata` (default 0) is no data. Each orbit direction is its own
sensor (`sentinel_1_asc`, `sentinel_1_des`), gap-filled in linear units on its own date grid;
its features are in dB: `S1ASC_VV_20180511`."""

from __future__ import annotations

from pathlib import Path

from geoclass import fs
from geoclass.errors import InputError
from geoclass.grid import grid_of_raster
from geoclass.io.sensors.base import Acquisition, BandRef, SensorSeries
from geoclass.io.sensors.pattern import NamePattern

ORBITS = {"ASC": "sentinel_1_asc", "DES": "sentinel_1_des"}


def _orbit(value: str) -> str | None:
    code = value.upper()[:3]
    return code if code in ORBITS else None


def read_sentinel1(root: Path, tile: str, options, chunk: int = 1024) -> list[SensorSeries]:
    """One series per orbit direction found for `tile` among `options.orbits`."""
    tile_dir = fs.as_path(root) / tile
    if not tile_dir.is_dir():
        raise InputError([f"no folder for tile {tile} in chain.s1_path: {tile_dir}"])
    pattern = NamePattern(options.pattern, tile=tile)
    if "orbit" not in pattern.fields:
        raise InputError([f"sensors.sentinel_1.pattern '{options.pattern}' needs an {{orbit}}"])
    pols = [p.upper() for p in options.polarisations]
    per_pol = "pol" in pattern.fields
    groups: dict[tuple, dict[str, Path]] = {}
    for m in pattern.find(tile_dir):
        orbit = _orbit(m.fields["orbit"])
        if orbit is None or orbit not in options.orbits:
            continue
        rest = tuple(sorted((k, v.lower()) for k, v in m.fields.items() if k != "pol"))
        files = groups.setdefault((orbit, m.date, rest), {})
        if per_pol:
            files[m.fields["pol"].upper()] = m.path
        else:
            files.update({p: m.path for p in pols})
    problems, acquisitions = [], {o: [] for o in ORBITS}
    for (orbit, date, _), files in sorted(groups.items(), key=lambda kv: kv[0][:2]):
        missing = [p for p in pols if p not in files]
        if missing:
            problems.append(f"{tile_dir}: no {'/'.join(missing)} file for the {orbit} "
                            f"acquisition of {date:%Y-%m-%d %H:%M:%S}")
            continue
        if per_pol:
            bands = tuple(BandRef(str(files[p])) for p in pols)
        else:
            bands = tuple(BandRef(str(files[p]), i + 1) for i, p in enumerate(pols))
        acquisitions[orbit].append(Acquisition(date.date(), fs.as_path(bands[0].path).name, bands))
    if problems:
        raise InputError(problems)
    found = {o: tuple(a) for o, a in acquisitions.items() if a}
    if not found:
        raise InputError([f"{tile_dir}: no Sentinel-1 file of tile {tile} matches "
                          f"'{options.pattern}' (orbits {', '.join(options.orbits)})"])
    return [
        SensorSeries(
            sensor=ORBITS[orbit],
            prefix=f"S1{orbit}_",
            tile=tile,
            band_names=tuple(pols),
            acquisitions=acqs,
            grid=grid_of_raster(acqs[0].bands[0].path, tile, chunk),
            nodata=options.nodata,
            db_input=options.db_input,
            db_features=True,
            ignored=tuple(f"{name}: left out, its date does not parse as "
                          f"'{pattern.date_format}'" for name in pattern.undated(tile_dir)),
        )
        for orbit, acqs in found.items()
    ]

"""Every input check of a configuration, run before any heavy work (`geoclass check`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import rasterio

from geoclass.config import Config
from geoclass.cube import TileSources, find_sources, sensor_dates
from geoclass.errors import InputError
from geoclass.reference import (
    check_class_table_inputs,
    check_ground_truth,
    check_regions,
    read_color_table,
    read_nomenclature,
    read_vector,
)
from geoclass.sensors.base import SensorSeries, invalid_from_mask

log = logging.getLogger(__name__)


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _collect(report: CheckReport, func, *args):
    try:
        return func(*args)
    except InputError as err:
        report.problems += err.problems
        return None


def _clear_fraction(series: SensorSeries, out_shape=(64, 64)) -> list[float]:
    """Share of clear pixels of each acquisition, from its masks read at low resolution."""
    fractions = []
    for acq in series.acquisitions:
        invalid = np.zeros(out_shape, bool)
        for mask in acq.masks:
            with rasterio.open(mask.path) as src:
                invalid |= invalid_from_mask(src.read(1, out_shape=out_shape), mask.rule)
        fractions.append(float(1 - invalid.mean()))
    return fractions


def _check_tiles(config: Config, report: CheckReport) -> dict[str, TileSources]:
    sources = {}
    for tile in config.chain.list_tile:
        src = _collect(report, find_sources, config, tile)
        if src is None:
            continue
        sources[tile] = src
        for series in src.series:
            clear = _clear_fraction(series)
            if max(clear, default=0) == 0:
                report.problems.append(f"tile {tile}: no {series.sensor} date has a clear pixel "
                                       "(every mask flags the whole tile); remove the tile")
            elif sum(c > 0.05 for c in clear) < 3:
                report.warnings.append(f"tile {tile}: fewer than 3 {series.sensor} dates with "
                                       "clear pixels; its gap-filled series will be poor")
    if sources:
        _collect(report, sensor_dates, config, sources)
    return sources


def _check_reference(config: Config, report: CheckReport, grids) -> None:
    chain = config.chain
    if chain.ground_truth is None:
        return
    before = len(report.problems)
    report.problems += check_ground_truth(chain.ground_truth, chain.data_field, grids,
                                          chain.repair_geometries)
    if chain.region_path:
        report.problems += check_regions(chain.region_path, chain.region_field, grids)
    nomenclature = colors = None
    if chain.nomenclature_path:
        nomenclature = _collect(report, read_nomenclature, chain.nomenclature_path)
    if chain.color_table:
        colors = _collect(report, read_color_table, chain.color_table)
    if len(report.problems) > before:
        return
    labels = read_vector(chain.ground_truth)[chain.data_field].dropna().unique()
    report.problems += check_class_table_inputs(
        labels, nomenclature, colors, chain.ground_truth, chain.nomenclature_path or "",
        chain.color_table or "",
    )


def check_inputs(config: Config) -> CheckReport:
    """Run every input check (files, tiles, dates, reference data) and collect all problems;
    reads headers, vectors and low-resolution masks only, and writes nothing."""
    report = CheckReport()
    sources = _check_tiles(config, report)
    _check_reference(config, report, [s.grid for s in sources.values()] or None)
    return report


def require_valid_inputs(config: Config) -> None:
    """Raise InputError listing every problem, if there is any."""
    report = check_inputs(config)
    for warning in report.warnings:
        log.warning(warning)
    if not report.ok:
        raise InputError(report.problems)

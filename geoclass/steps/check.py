"""Every input check of a configuration, run before any heavy work (`geoclass check`)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geoclass import fs
from geoclass.classes import check_class_table_inputs
from geoclass.config import Config
from geoclass.errors import ConfigError, InputError
from geoclass.io.external import ExternalTable, inspect_external
from geoclass.io.reference import (
    check_ground_truth,
    check_regions,
    read_color_table,
    read_nomenclature,
    read_vector,
)
from geoclass.io.sensors.base import SensorSeries, invalid_from_mask
from geoclass.memory import CubeShape
from geoclass.models import classifier_problems
from geoclass.views.context import segmentation_features
from geoclass.views.cube import feature_names, tile_observations
from geoclass.views.sources import find_sources, sensor_dates

log = logging.getLogger(__name__)


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    shape: CubeShape | None = None  # what sets the size of a task, when the inputs tell
    labels: set = field(default_factory=set)

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
            with fs.open_raster(mask.path) as src:
                invalid |= invalid_from_mask(src.read(1, out_shape=out_shape), mask.rule)
        fractions.append(float(1 - invalid.mean()))
    return fractions


def _check_tiles(config: Config, report: CheckReport):
    """The sources of every readable tile, and the date grid of each sensor (None if the
    dates do not fit)."""
    sources, dates = {}, None
    for tile in config.chain.list_tile:
        src = _collect(report, find_sources, config, tile)
        if src is None:
            continue
        sources[tile] = src
        for series in src.series:
            report.warnings += [f"tile {tile}: {series.sensor}: {note}" for note in series.ignored]
            clear = _clear_fraction(series)
            if max(clear, default=0) == 0:
                report.problems.append(f"tile {tile}: no {series.sensor} date has a clear pixel "
                                       "(every mask flags the whole tile); remove the tile")
            elif sum(c > 0.05 for c in clear) < 3:
                report.warnings.append(f"tile {tile}: fewer than 3 {series.sensor} dates with "
                                       "clear pixels; its gap-filled series will be poor")
    if sources:
        dates = _collect(report, sensor_dates, config, sources)
    return sources, dates


def _feature_names(config: Config, report: CheckReport, sources, dates) -> list[str] | None:
    """The cube's feature names (from the first tile's lazy cube), when they can be known."""
    if not sources or dates is None or len(sources) < len(config.chain.list_tile):
        return None
    cube = _collect(report, tile_observations, config, next(iter(sources.values())), dates)
    return None if cube is None else _collect(report, feature_names, cube)


def _check_external(config: Config, report: CheckReport, names) -> ExternalTable | None:
    """The external sample table's problems (file, columns, labels, regions, matching to the
    cube's features, NaN values) and the role of the ground truth."""
    chain = config.chain
    if chain.ground_truth_role == "validation" and chain.external_samples is None:
        report.problems.append("ground_truth_role: validation needs chain.external_samples "
                               "to learn from")
    if chain.ground_truth_role == "validation" and chain.ground_truth is None:
        report.problems.append("ground_truth_role: validation needs chain.ground_truth to "
                               "validate on")
    if chain.external_samples is None:
        return None
    table, problems = inspect_external(config, names)
    report.problems += problems
    return None if problems else table


def _same_kind_of_labels(gt_labels, table: ExternalTable, gt_name: str) -> list[str]:
    """Ground truth and external samples must both have string labels, or both integers."""
    strings = [any(isinstance(v, str) for v in labels)
               for labels in (gt_labels, table.labels.dropna())]
    if strings[0] == strings[1]:
        return []
    kinds = ["strings" if s else "integers" for s in strings]
    return [f"{table.file}: its labels are {kinds[1]} but those of {gt_name} are {kinds[0]}; "
            "use the same labels in both"]


def _check_reference(config: Config, report: CheckReport, grids, names=None) -> None:
    chain = config.chain
    before = len(report.problems)
    external = _check_external(config, report, names)
    if chain.ground_truth is None and chain.external_samples is None:
        return
    if chain.ground_truth is not None:
        report.problems += check_ground_truth(chain.ground_truth, chain.data_field, grids,
                                              chain.repair_geometries)
    if chain.region_path:
        report.problems += check_regions(chain.region_path, chain.region_field, grids)
    outside = [t for t in chain.list_tile if chain.region_tiles and not chain.region_of_tile(t)]
    if outside:
        report.warnings.append(f"tiles {', '.join(outside)} are in no region of "
                               "chain.region_tiles: left unclassified (0) where no other "
                               "tile covers them")
    nomenclature = colors = None
    if chain.nomenclature_path:
        nomenclature = _collect(report, read_nomenclature, chain.nomenclature_path)
    if chain.color_table:
        colors = _collect(report, read_color_table, chain.color_table)
    if len(report.problems) > before:
        return
    sources = []
    if chain.ground_truth is not None:
        labels = read_vector(chain.ground_truth)[chain.data_field].dropna().unique()
        sources.append((labels, chain.ground_truth))
        if external is not None:
            mismatch = _same_kind_of_labels(labels, external, chain.ground_truth.name)
            report.problems += mismatch
            external = None if mismatch else external
    if external is not None:
        sources.append((external.labels.dropna().unique(), external.file))
    for labels, file in sources:
        report.labels |= {str(v) for v in labels}
        report.problems += check_class_table_inputs(
            labels, nomenclature, colors, file, chain.nomenclature_path or "",
            chain.color_table or "",
        )


def output_problems(path: Path) -> list[str]:
    """Why `chain.output_path` cannot be created or written to, if it cannot."""
    if fs.is_url(path):
        return fs.check_writable(path)
    path = Path(path)
    if path.exists() and not path.is_dir():
        return [f"chain.output_path {path} is a file, not a folder; choose another path"]
    existing = next((p for p in [path, *path.parents] if p.exists()), None)
    if existing is None or not existing.is_dir():
        return [f"chain.output_path {path} cannot be created: {existing} is not a folder"]
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "written to" if existing == path else f"created ({existing} is read-only)"
        return [f"chain.output_path {path} cannot be {what}; choose a folder you can write to"]
    return []


def check_inputs(config: Config) -> CheckReport:
    """Run every input check (files, tiles, dates, reference data) and collect all problems;
    reads headers, vectors and low-resolution masks only, and writes nothing."""
    report = CheckReport()
    report.problems += output_problems(config.chain.output_path)
    if config.chain.ground_truth is None and config.chain.external_samples is None:
        report.problems.append("nothing to learn from: set chain.ground_truth (polygons or "
                               "points) or chain.external_samples (a table of labelled series)")
    sources, dates = _check_tiles(config, report)
    chain = config.chain
    wanted = chain.autocontext_features if chain.enable_autocontext else None
    names = _feature_names(config, report, sources, dates)
    _check_reference(config, report, [s.grid for s in sources.values()] or None, names)
    report.problems += classifier_problems(config.models)
    if names is not None and report.ok:
        report.shape = _cube_shape(sources, dates, names, report.labels,
                                   _smoothing_halo(config))
    if wanted and names is not None:
        try:
            segmentation_features(chain.autocontext_features, names)
        except ConfigError as err:
            report.problems.append(str(err))
    return report


def _smoothing_halo(config: Config) -> int:
    smoothing = config.classification.smoothing
    return smoothing.window_size // 2 if smoothing.method == "bayes" else 0


def _cube_shape(sources, dates, names, labels, smoothing_halo: int = 0) -> CubeShape:
    series = [s for src in sources.values() for s in src.series]
    return CubeShape(dates=max((len(s.dates) for s in series), default=0),
                     bands=max((len(s.band_names) for s in series), default=0),
                     grid_dates=max((len(d) for d in dates.values()), default=0),
                     features=len(names), classes=max(len(labels), 2),
                     tile_side=max(max(src.grid.shape) for src in sources.values()),
                     smoothing_halo=smoothing_halo)


def run(config: Config, store=None, force: bool = False) -> CheckReport:
    """The check step: every input check, once per run; InputError listing every problem,
    if there is any, else the report (warnings logged)."""
    report = require_valid_inputs(config)
    log.info("every input check passed")
    return report


def require_valid_inputs(config: Config) -> CheckReport:
    """Raise InputError listing every problem, if there is any; else the report."""
    report = check_inputs(config)
    for warning in report.warnings:
        log.warning(warning)
    if not report.ok:
        raise InputError(report.problems)
    return report

"""The report step: `final/report.html` (settings, map quicklook with legend, accuracy, class
areas, warnings) and `final/warnings.txt`, what a user should know about the finished run."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from geoclass import lazy
from geoclass.atomic import write_text_atomic
from geoclass.config import Config
from geoclass.report import class_areas, write_report
from geoclass.store import RunStore

log = logging.getLogger(__name__)

WARNINGS = "warnings.txt"


def settings(config: Config) -> str:
    return config.model_dump_json(by_alias=True)


def outputs(config: Config, store: RunStore, record=None) -> list[Path]:
    return [store.final / "report.html", store.final / WARNINGS]


def run_warnings(config: Config, store: RunStore, metrics: dict) -> list[str]:
    """Classes without validation pixels, regions or classes without samples, tiles with
    few clear dates (tiles with dated series: user rasters alone have no dates)."""
    warnings = []
    for entry in metrics["runs"][0]["scores"]["per_class"]:
        if entry["support"] == 0:
            warnings.append(f"class {entry['name']} ({entry['code']}) has no validation pixel: "
                            "its accuracy is not measured")
    for run in range(config.chain.runs):
        notes = json.loads(store.sample_report(run).read_text())["warnings"]
        warnings += [f"run {run}: {note}" for note in notes]
    for tile in config.chain.list_tile:
        cube = lazy.open_zarr(store.cube(tile))
        if not json.loads(cube.attrs.get("sensors", "[]")):
            continue
        validity = cube["validity"].data
        mean, empty = (float(v) for v in lazy.compute_all(
            [validity.mean(), (validity == 0).mean()], label=f"clear dates of {tile}"))
        if mean < 3 or empty > 0.05:
            warnings.append(f"tile {tile}: few clear dates (mean {mean:.1f} per pixel, "
                            f"{100 * empty:.1f} % of pixels never clear)")
    return warnings


def read_warnings(store: RunStore) -> list[str]:
    """The warnings of the last report, if any."""
    path = store.final / WARNINGS
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def run(config: Config, store: RunStore, force: bool = False) -> Path:
    """Write the report (and the warnings, also logged)."""
    metrics = json.loads((store.final / "metrics.json").read_text())
    table = store.class_table()
    fused = store.final / "Classifications_fusion.tif"
    map_path = fused if fused.exists() else store.final / "Classif_Seed_0.tif"
    classes = [{"code": c.code, "name": c.name, "color": list(c.color)} for c in table.classes]
    warnings = run_warnings(config, store, metrics)
    for warning in warnings:
        log.warning(warning)
    page = write_report(
        store.final / "report.html", title=f"geoclass report: {store.root.name}",
        settings=config.model_dump(mode="json", by_alias=True, exclude_none=True),
        classes=classes, map_path=map_path, runs=metrics["runs"],
        summary=metrics["summary"] if config.chain.runs > 1 else None,
        fusion=(metrics["fusion"] or {}).get("scores"),
        areas=class_areas(map_path, table.codes), warnings=warnings)
    write_text_atomic(store.final / WARNINGS, "".join(f"{w}\n" for w in warnings))
    return page

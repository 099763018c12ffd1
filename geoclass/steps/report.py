"""The report step: `final/report.html` (settings, map and uncertainty quicklooks, accuracy,
mapped and area-adjusted class areas, smoothed maps, samples per class, warnings) and
`final/warnings.txt`, what a user should know about the finished run."""

from __future__ import annotations

import json
import logging
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import geoclass
from geoclass import fs, lazy
from geoclass.atomic import write_text_atomic
from geoclass.config import Config
from geoclass.report import class_areas, write_report
from geoclass.store import RunStore

log = logging.getLogger(__name__)



def settings(config: Config) -> str:
    return config.model_dump_json(by_alias=True)


def outputs(config: Config, store: RunStore, record=None) -> list[Path]:
    return [store.final / "report.html", store.warnings_file]


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


def geoclass_version() -> str:
    try:
        return version("geoclass")
    except PackageNotFoundError:
        return geoclass.__version__


def sample_counts(config: Config, store: RunStore, codes: list[int]) -> dict:
    """Learning and validation pixels of each class in each run (the code column only)."""
    runs = list(range(config.chain.runs))
    table = {code: {"code": code, "learn": [], "validation": []} for code in codes}
    for run in runs:
        for kind in ("learn", "validation"):
            found = fs.read_parquet(store.samples(run, kind), columns=["code"])["code"]
            counts = found.value_counts()
            for code in codes:
                table[code][kind].append(int(counts.get(code, 0)))
    return {"runs": runs, "per_class": list(table.values())}


def run(config: Config, store: RunStore, force: bool = False) -> Path:
    """Write the report (and the warnings, also logged)."""
    metrics = json.loads((store.final / "metrics.json").read_text())
    table = store.class_table()
    fused = store.final / "Classifications_fusion.tif"
    if fused.exists() and metrics.get("fusion"):
        map_path, source = fused, metrics["fusion"]
        which = f"{fused.name}, the fusion of the {config.chain.runs} runs"
    else:
        map_path, source = store.final / "Classif_Seed_0.tif", metrics["runs"][0]
        which = f"{map_path.name}, the map of run 0"
    adjusted = source.get("areas")
    if adjusted:
        areas = {e["code"]: e["mapped_area"] for e in adjusted["per_class"]}
    else:
        areas = class_areas(map_path, table.codes)
    uncertainty = config.classification.uncertainty
    classes = [{"code": c.code, "name": c.name, "color": list(c.color)} for c in table.classes]
    warnings = run_warnings(config, store, metrics)
    for warning in warnings:
        log.warning(warning)
    fusion = metrics.get("fusion") or {}
    page = write_report(
        store.final / "report.html", title=f"geoclass report: {store.root.name}",
        settings=config.model_dump(mode="json", by_alias=True, exclude_none=True),
        classes=classes, map_path=map_path, runs=metrics["runs"],
        summary=metrics["summary"] if config.chain.runs > 1 else None,
        fusion=fusion.get("scores"), areas=areas, warnings=warnings,
        adjusted_areas=adjusted, area_unit=metrics.get("area_unit", "ha"), area_source=which,
        area_design=metrics.get("area_design"),
        uncertainty_path=store.uncertainty_cog(uncertainty[0], 0) if uncertainty else None,
        uncertainty_measure=uncertainty[0] if uncertainty else None,
        fusion_confusion=fusion.get("confusion"), smoothed=metrics.get("smoothed"),
        sample_counts=sample_counts(config, store, table.codes), version=geoclass_version(),
        area_summary=metrics["summary"].get("areas"))
    write_text_atomic(store.warnings_file, "".join(f"{w}\n" for w in warnings))
    return page

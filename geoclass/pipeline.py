"""The whole chain, step by step: check, cubes, samples, train, classify, mosaic, validate,
report. Each step skips itself when its outputs are complete and its inputs unchanged."""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import dask

from geoclass import logs
from geoclass.atomic import atomic_output, record_step, step_is_current
from geoclass.check import require_valid_inputs
from geoclass.classify import classify, load_class_table
from geoclass.config import Config
from geoclass.cube import build_cubes, cube_path, open_cube
from geoclass.errors import InputError
from geoclass.maps import final_dir, mosaic
from geoclass.memory import check_workers
from geoclass.samples import sample
from geoclass.train import train
from geoclass.validate import assess

log = logging.getLogger(__name__)

MARKER = ".geoclass_run.json"
WARNINGS = "warnings.txt"
OUTPUT_FOLDERS = ("cubes", "samples", "model", "classif", "mosaic", "final", "logs")


def check(config: Config, force: bool = False):
    report = require_valid_inputs(config)
    log.info("every input check passed")
    return report


def make_report(config: Config, force: bool = False) -> Path:
    """`final/report.html`: settings, map quicklook with legend, accuracy, areas, warnings."""
    from geoclass.report import class_areas, write_report

    metrics = assess(config)
    final = final_dir(config)
    root = Path(config.chain.output_path)
    manifest = root / "mosaic" / "report_manifest.json"
    stamp = {"validation": json.loads((root / "mosaic" / "validation_manifest.json")
                                      .read_text()),
             "config": config.model_dump_json(by_alias=True)}
    page = final / "report.html"
    notes = final / WARNINGS
    if step_is_current(manifest, stamp, [page, notes], force):
        log.info("the report is up to date")
        return page
    table = load_class_table(config)
    fused = final / "Classifications_fusion.tif"
    map_path = fused if fused.exists() else final / "Classif_Seed_0.tif"
    classes = [{"code": c.code, "name": c.name, "color": list(c.color)} for c in table.classes]
    settings = config.model_dump(mode="json", by_alias=True, exclude_none=True)
    manifest.unlink(missing_ok=True)
    warnings = run_warnings(config, metrics)
    for warning in warnings:
        log.warning(warning)
    write_report(
        page, title=f"geoclass report: {Path(config.chain.output_path).name}",
        settings=settings, classes=classes, map_path=map_path, runs=metrics["runs"],
        summary=metrics["summary"] if config.chain.runs > 1 else None,
        fusion=(metrics["fusion"] or {}).get("scores"),
        areas=class_areas(map_path, table.codes), warnings=warnings)
    with atomic_output(notes) as tmp:
        tmp.write_text("".join(f"{w}\n" for w in warnings), encoding="utf-8")
    record_step(manifest, stamp)
    return page


def run_warnings(config: Config, metrics: dict) -> list[str]:
    """What a user should know about a finished run: classes without validation pixels,
    regions or classes without samples, tiles with few clear dates."""
    warnings = []
    for entry in metrics["runs"][0]["scores"]["per_class"]:
        if entry["support"] == 0:
            warnings.append(f"class {entry['name']} ({entry['code']}) has no validation pixel: "
                            "its accuracy is not measured")
    samples = Path(config.chain.output_path) / "samples"
    for run in range(config.chain.runs):
        notes = json.loads((samples / f"report_seed_{run}.json").read_text())["warnings"]
        warnings += [f"run {run}: {note}" for note in notes]
    for tile in config.chain.list_tile:
        validity = open_cube(cube_path(config, tile)).validity
        mean, empty = (float(v) for v in (validity.mean().compute(),
                                          (validity == 0).mean().compute()))
        if mean < 3 or empty > 0.05:
            warnings.append(f"tile {tile}: few clear dates (mean {mean:.1f} per pixel, "
                            f"{100 * empty:.1f} % of pixels never clear)")
    return warnings


def read_run_warnings(config: Config) -> list[str]:
    """The warnings of the last report (`final/warnings.txt`), if any."""
    path = final_dir(config) / WARNINGS
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


STEPS: dict[str, Callable] = {
    "check": check, "cubes": build_cubes, "samples": sample, "train": train,
    "classify": classify, "mosaic": mosaic, "validate": assess, "report": make_report,
}


def _owner_id(config: Config) -> str:
    return str(Path(config.source).resolve()) if config.source else "<python>"


def claim_output(config: Config, overwrite: bool = False) -> None:
    """Refuse an output folder that holds another config's run unless `overwrite` (then its
    geoclass outputs are removed). Writes nothing else: see `mark_output`."""
    out = Path(config.chain.output_path)
    marker = out / MARKER
    if not marker.exists():
        return
    owner = json.loads(marker.read_text()).get("config")
    if owner == _owner_id(config):
        return
    if not overwrite:
        raise InputError([f"{out} holds the outputs of another configuration ({owner}); "
                          "choose another chain.output_path, or pass --overwrite to delete "
                          "them and start again"])
    log.warning("--overwrite: removing the outputs of %s from %s", owner, out)
    for name in OUTPUT_FOLDERS:
        shutil.rmtree(out / name, ignore_errors=True)
    marker.unlink()


def remove_stale_temporaries(config: Config) -> None:
    """Remove what a killed run left half-written: temporary siblings of outputs (they are
    never taken as outputs, only their final names are)."""
    out = Path(config.chain.output_path)
    for name in OUTPUT_FOLDERS:
        folder = out / name
        if not folder.is_dir():
            continue
        for path in list(folder.rglob(".*.tmp-*")) + list(folder.rglob(".*.old-*")):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def mark_output(config: Config) -> None:
    """Record which config the output folder belongs to (once its inputs passed the checks)."""
    marker = Path(config.chain.output_path) / MARKER
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"config": _owner_id(config),
                                      "created": dt.datetime.now().isoformat()}))


def _active_client():
    from distributed import get_client

    try:
        return get_client()
    except ValueError:
        return None


def _selected(from_step, only_step, until) -> list[str]:
    for name in (from_step, only_step, until):
        if name is not None and name not in STEPS:
            raise InputError([f"unknown step {name!r}; steps: {', '.join(STEPS)}"])
    names = list(STEPS)
    if only_step:
        return [only_step]
    return names[:names.index(until) + 1] if until else names


def run_steps(config: Config, from_step: str | None = None, only_step: str | None = None,
              until: str | None = None, force: tuple[str, ...] = (), overwrite: bool = False,
              cluster: dict | None = None) -> dict:
    """Run the selected steps in order: every step (or those `until` one, or `only_step`
    alone), redoing `from_step` and every later one, `only_step` and the steps in `force`
    even if up to date. The input checks run first, before anything is written and before
    the dask cluster starts; then the steps run on the cluster `cluster` describes (the
    options of `cluster.dask_client`: the command line's), else on the active client, else
    on a new LocalCluster. Returns each step's result."""
    from geoclass.cluster import dask_client

    selected = _selected(from_step, only_step, until)
    names = list(STEPS)
    first = names.index(from_step) if from_step else len(names)
    claim_output(config, overwrite)
    results = {}
    total = len(selected)
    if "check" in selected:  # before anything is written, before the cluster starts
        with logs.running("check"):
            log.info("step 1/%d: check", total)
            results["check"] = check(config)
    mark_output(config)
    remove_stale_temporaries(config)
    if cluster is None and _active_client():
        session = nullcontext()  # a notebook's client
    else:
        session = dask_client(config.dask, **(cluster or {}))
    stall = {"geoclass.stall-timeout": config.dask.stall_timeout}
    with logs.log_to_file(Path(config.chain.output_path) / "logs") as log_path, session, \
            dask.config.set(stall):
        log.info("log file: %s", log_path)
        shape = getattr(results.get("check"), "shape", None)
        if shape is not None:
            check_workers(_active_client(), config.dask.chunk_size, shape)
        for number, name in enumerate(selected, start=1):
            if name == "check":
                continue
            with logs.running(name):
                log.info("step %d/%d: %s", number, total, name)
                redo = name in force or name == only_step or names.index(name) >= first
                results[name] = STEPS[name](config, force=redo)
    return results


def run_chain(config: Config, from_step: str | None = None, only_step: str | None = None,
              overwrite: bool = False, cluster: dict | None = None) -> dict:
    """Run the chain on the active dask client (or a new LocalCluster if there is none).
    `from_step`: redo that step and every later one; `only_step`: redo that step alone (and
    whatever it needs that is missing). Returns the accuracy figures (`final/metrics.json`)."""
    run_steps(config, from_step=from_step, only_step=only_step, overwrite=overwrite,
              cluster=cluster)
    metrics = final_dir(config) / "metrics.json"
    return json.loads(metrics.read_text()) if metrics.exists() else {}

"""The whole chain, step by step: check, cubes, samples, train, classify, mosaic, validate,
report. Each step skips itself when its outputs are complete and its inputs unchanged."""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from pathlib import Path

from geoclass.atomic import record_step, step_is_current
from geoclass.check import require_valid_inputs
from geoclass.classify import classify, load_class_table
from geoclass.config import Config
from geoclass.cube import build_cubes, cube_path, open_cube
from geoclass.errors import InputError
from geoclass.maps import final_dir, mosaic
from geoclass.samples import sample
from geoclass.train import train
from geoclass.validate import assess

log = logging.getLogger(__name__)

MARKER = ".geoclass_run.json"
OUTPUT_FOLDERS = ("cubes", "samples", "model", "classif", "mosaic", "final", "logs")


def check(config: Config, force: bool = False) -> None:
    require_valid_inputs(config)


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
    if step_is_current(manifest, stamp, [page], force):
        log.debug("the report is up to date")
        return page
    table = load_class_table(config)
    fused = final / "Classifications_fusion.tif"
    map_path = fused if fused.exists() else final / "Classif_Seed_0.tif"
    classes = [{"code": c.code, "name": c.name, "color": list(c.color)} for c in table.classes]
    settings = config.model_dump(mode="json", by_alias=True, exclude_none=True)
    manifest.unlink(missing_ok=True)
    write_report(
        page, title=f"geoclass report: {Path(config.chain.output_path).name}",
        settings=settings, classes=classes, map_path=map_path, runs=metrics["runs"],
        summary=metrics["summary"] if config.chain.runs > 1 else None,
        fusion=(metrics["fusion"] or {}).get("scores"),
        areas=class_areas(map_path, table.codes), warnings=run_warnings(config, metrics))
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


@contextmanager
def log_to_file(config: Config):
    """Copy geoclass's log records to `output_path/logs/geoclass-<time>.log`."""
    folder = Path(config.chain.output_path) / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"geoclass-{dt.datetime.now():%Y%m%d-%H%M%S}.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    logger = logging.getLogger("geoclass")
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield path
    finally:
        logger.removeHandler(handler)
        handler.close()


def _active_client():
    from distributed import get_client

    try:
        return get_client()
    except ValueError:
        return None


def run_chain(config: Config, from_step: str | None = None, only_step: str | None = None,
              overwrite: bool = False) -> dict:
    """Run the chain on the active dask client (or a new LocalCluster if there is none).
    `from_step`: redo that step and every later one; `only_step`: redo that step alone (and
    whatever it needs that is missing). Returns the accuracy figures (`final/metrics.json`)."""
    for name in (from_step, only_step):
        if name is not None and name not in STEPS:
            raise InputError([f"unknown step {name!r}; steps: {', '.join(STEPS)}"])
    names = list(STEPS)
    first = names.index(from_step) if from_step else 0
    claim_output(config, overwrite)
    if only_step in (None, "check"):
        log.info("checking the inputs")
        check(config)  # before anything is written
    mark_output(config)
    remove_stale_temporaries(config)
    from geoclass.cluster import dask_client

    cluster = nullcontext() if _active_client() else dask_client(config.dask)
    with log_to_file(config) as log_path, cluster:
        log.info("log file: %s", log_path)
        selected = [only_step] if only_step else names[1:]
        for number, name in enumerate(selected, start=1):
            log.info("step %d/%d: %s", number, len(selected), name)
            force = name == only_step or (from_step is not None and names.index(name) >= first)
            STEPS[name](config, force=force)
    metrics = final_dir(config) / "metrics.json"
    return json.loads(metrics.read_text()) if metrics.exists() else {}

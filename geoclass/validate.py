"""Accuracy assessment (iota2's validation): every validation pixel of every tile against the
final mosaic of its run; per-run reports, the mean and 95 % interval over runs, and the
accuracy of the fusion of runs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from geoclass.assess import values_at
from geoclass.atomic import atomic_output, record_step, step_is_current
from geoclass.classify import load_class_table
from geoclass.config import Config
from geoclass.maps import final_dir, mosaic, mosaic_path, output_grid, tile_grids
from geoclass.metrics import (
    confusion_matrix,
    format_run_report,
    format_summary,
    scores,
    summarize,
    unclassified_count,
    write_confusion_csv,
)
from geoclass.samples import read_samples

log = logging.getLogger(__name__)


def _write_text(path: Path, text: str) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _fusion_samples(config: Config) -> tuple[pd.DataFrame, str]:
    """Validation pixels for the fused map: those no run learnt from (validation in every
    run); run 0's validation pixels if there are none."""
    key = ["tile", "row", "col"]
    common = read_samples(config, 0, "validation")
    for run in range(1, config.chain.runs):
        other = read_samples(config, run, "validation")[key]
        common = common.merge(other, on=key, how="inner")
    if len(common):
        return common, "validation pixels of every run (never used for learning)"
    return read_samples(config, 0, "validation"), "validation pixels of run 0"


def _assess_map(path, samples, grid, crs_of_tile, codes, names):
    predicted = values_at(path, grid, samples, crs_of_tile)
    reference = samples["code"].to_numpy()
    confusion = confusion_matrix(reference, predicted, codes)
    result = scores(confusion, codes, names)
    result["unclassified"] = unclassified_count(reference, predicted, codes)
    return confusion, result


def _settings(config: Config) -> dict:
    root = Path(config.chain.output_path)
    return {"mosaic": json.loads((root / "mosaic" / "manifest.json").read_text()),
            "samples": json.loads((root / "samples" / "manifest.json").read_text())}


def expected_outputs(config: Config) -> list[Path]:
    final = final_dir(config)
    paths = []
    for run in range(config.chain.runs):
        paths += [final / f"ClassificationResults_seed_{run}.txt",
                  final / f"confusion_seed_{run}.csv", final / f"metrics_seed_{run}.json"]
    return [*paths, final / "RESULTS.txt", final / "metrics.json"]


def assess(config: Config, force: bool = False) -> dict:
    """Write the accuracy reports (maps first if needed) and return `final/metrics.json`'s
    content; skipped when the maps and the samples did not change."""
    mosaic(config)
    final = final_dir(config)
    manifest = Path(config.chain.output_path) / "mosaic" / "validation_manifest.json"
    settings = _settings(config)
    if step_is_current(manifest, settings, expected_outputs(config), force):
        log.info("accuracy reports are up to date")
        return json.loads((final / "metrics.json").read_text())
    manifest.unlink(missing_ok=True)
    table = load_class_table(config)
    codes, names = table.codes, table.names
    grids = tile_grids(config)
    grid = output_grid(config, grids)
    crs_of_tile = {t: g.crs for t, g in grids.items()}
    runs = []
    for run in range(config.chain.runs):
        samples = read_samples(config, run, "validation")
        if samples.empty:
            log.warning("run %d: no validation sample (no chain.ground_truth): the accuracy "
                        "is not measured", run)
        confusion, result = _assess_map(mosaic_path(config, run), samples, grid, crs_of_tile,
                                        codes, names)
        _write_run(final, run, confusion, result, codes, names)
        runs.append({"run": run, "scores": result, "confusion": confusion.tolist()})
        log.info("run %d: OA %.3f, kappa %.3f on %d validation pixels", run,
                 result["overall_accuracy"], result["kappa"], result["n_samples"])
    summary = summarize([r["scores"] for r in runs])
    metrics = {"runs": runs, "summary": summary, "fusion": None}
    text = format_summary(summary, names)
    fused = final / "Classifications_fusion.tif"
    if fused.exists():
        samples, which = _fusion_samples(config)
        confusion, result = _assess_map(mosaic_path(config, "fusion"), samples, grid,
                                        crs_of_tile, codes, names)
        metrics["fusion"] = {"scores": result, "confusion": confusion.tolist(),
                             "validation": which}
        text += (f"\nFusion of runs ({config.classification.merge_final_classifications.method},"
                 f" on the {which}): OA = {result['overall_accuracy']:.3f}, "
                 f"Kappa = {result['kappa']:.3f}\n")
    _write_text(final / "RESULTS.txt", text)
    _write_text(final / "metrics.json", json.dumps(metrics, indent=2))
    record_step(manifest, settings)
    return metrics


def _write_run(final: Path, run: int, confusion: np.ndarray, result: dict, codes, names):
    title = "geoclass classification results"
    _write_text(final / f"ClassificationResults_seed_{run}.txt",
                format_run_report(confusion, result, codes, names, run, title)
                + f"\nValidation pixels left unclassified (0) by the map: "
                  f"{result['unclassified']}\n")
    with atomic_output(final / f"confusion_seed_{run}.csv") as tmp:
        write_confusion_csv(tmp, confusion, codes, names)
    _write_text(final / f"metrics_seed_{run}.json",
                json.dumps({"run": run, **result, "confusion": confusion.tolist()}, indent=2))

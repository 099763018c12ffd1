"""The validate step (iota2's validation): every validation pixel of every tile against the
final mosaic of its run; per-run reports, the mean and 95 % interval over runs, and the
accuracy of the fusion of runs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from geoclass import fs
from geoclass.atomic import atomic_output, write_text_atomic
from geoclass.config import Config
from geoclass.kernels.scores import (
    confusion_matrix,
    format_run_report,
    format_summary,
    scores,
    summarize,
    unclassified_count,
    write_confusion_csv,
)
from geoclass.store import Accuracy, RunStore
from geoclass.views.maps import map_values_at, output_grid, tile_grids

log = logging.getLogger(__name__)


def _samples(store: RunStore, run: int) -> pd.DataFrame:
    return fs.read_parquet(store.samples(run, "validation"))


def _fusion_samples(store: RunStore, runs: int) -> tuple[pd.DataFrame, str]:
    """Validation pixels for the fused map: those no run learnt from (validation in every
    run); run 0's validation pixels if there are none."""
    key = ["tile", "row", "col"]
    common = _samples(store, 0)
    for run in range(1, runs):
        common = common.merge(_samples(store, run)[key], on=key, how="inner")
    if len(common):
        return common, "validation pixels of every run (never used for learning)"
    return _samples(store, 0), "validation pixels of run 0"


def _assess_map(path, samples, grid, crs_of_tile, codes, names):
    predicted = map_values_at(path, grid, samples, crs_of_tile)
    reference = samples["code"].to_numpy()
    confusion = confusion_matrix(reference, predicted, codes)
    result = scores(confusion, codes, names)
    result["unclassified"] = unclassified_count(reference, predicted, codes)
    return confusion, result


def outputs(config: Config, store: RunStore, record=None) -> list[Path]:
    final = store.final
    paths = []
    for run in range(config.chain.runs):
        paths += [final / f"ClassificationResults_seed_{run}.txt",
                  final / f"confusion_seed_{run}.csv", final / f"metrics_seed_{run}.json"]
    return [*paths, final / "RESULTS.txt", final / "metrics.json"]


def run(config: Config, store: RunStore, force: bool = False) -> Accuracy:
    """Write the accuracy reports of every run and of the fusion of runs, and return
    `final/metrics.json`'s content."""
    final = store.final
    table = store.class_table()
    codes, names = table.codes, table.names
    grids = tile_grids(config.chain.list_tile, store)
    grid = output_grid(grids, config.chain.proj, config.dask.chunk_size)
    crs_of_tile = {t: g.crs for t, g in grids.items()}
    runs = []
    for run_number in range(config.chain.runs):
        samples = _samples(store, run_number)
        if samples.empty:
            log.warning("run %d: no validation sample (no chain.ground_truth): the accuracy "
                        "is not measured", run_number)
        confusion, result = _assess_map(store.mosaic(run_number), samples, grid, crs_of_tile,
                                        codes, names)
        _write_run(final, run_number, confusion, result, codes, names)
        runs.append({"run": run_number, "scores": result, "confusion": confusion.tolist()})
        log.info("run %d: OA %.3f, kappa %.3f on %d validation pixels", run_number,
                 result["overall_accuracy"], result["kappa"], result["n_samples"])
    summary = summarize([r["scores"] for r in runs])
    metrics = Accuracy({"runs": runs, "summary": summary, "fusion": None})
    text = format_summary(summary, names)
    if (final / "Classifications_fusion.tif").exists():
        samples, which = _fusion_samples(store, config.chain.runs)
        confusion, result = _assess_map(store.mosaic("fusion"), samples, grid, crs_of_tile,
                                        codes, names)
        metrics["fusion"] = {"scores": result, "confusion": confusion.tolist(),
                             "validation": which}
        text += (f"\nFusion of runs ({config.classification.merge_final_classifications.method},"
                 f" on the {which}): OA = {result['overall_accuracy']:.3f}, "
                 f"Kappa = {result['kappa']:.3f}\n")
    write_text_atomic(final / "RESULTS.txt", text)
    write_text_atomic(final / "metrics.json", json.dumps(metrics, indent=2))
    return metrics


def _write_run(final: Path, run: int, confusion: np.ndarray, result: dict, codes, names):
    title = "geoclass classification results"
    write_text_atomic(final / f"ClassificationResults_seed_{run}.txt",
                      format_run_report(confusion, result, codes, names, run, title)
                      + f"\nValidation pixels left unclassified (0) by the map: "
                        f"{result['unclassified']}\n")
    with atomic_output(final / f"confusion_seed_{run}.csv") as tmp:
        write_confusion_csv(tmp, confusion, codes, names)
    write_text_atomic(final / f"metrics_seed_{run}.json",
                      json.dumps({"run": run, **result, "confusion": confusion.tolist()},
                                 indent=2))

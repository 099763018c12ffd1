"""The validate step (iota2's validation): every validation pixel of every tile against the
final mosaic of its run; per-run reports, the mean and 95 % interval over runs, and the
accuracy of the fusion of runs and of the smoothed maps. With each map, the area-adjusted
accuracy and area estimates of Olofsson et al. (2014) from its class areas (counted block by
block on the map) and its confusion matrix."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from geoclass import fs, lazy
from geoclass.atomic import atomic_output, write_text_atomic
from geoclass.config import Config
from geoclass.grid import TileGrid
from geoclass.kernels.areas import (
    DESIGN,
    area_adjusted_accuracy,
    combine_runs,
    format_area_summary,
    format_areas,
)
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
from geoclass.views.maps import (
    class_counts,
    isolated_count,
    map_values_at,
    output_grid,
    tile_grids,
)

log = logging.getLogger(__name__)

# what the area estimates assume, and how geoclass's validation pixels depart from it
DESIGN_NOTE = (f"{DESIGN}. geoclass's validation pixels are every pixel of the polygons held "
               "out of learning, not a random sample of each map class: neighbouring pixels "
               "are correlated and the classes' sample sizes follow the ground truth, so the "
               "estimates and their standard errors are approximate (the errors optimistic)")


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


def pixel_area(grid: TileGrid) -> tuple[float, str]:
    """The area of one pixel of the map and its unit: hectares in a projected CRS, else one
    pixel (areas then in pixels)."""
    if grid.crs is None or grid.crs.is_geographic:
        return 1.0, "pixels"
    metres = grid.resolution * grid.crs.linear_units_factor[1]
    return metres**2 / 10_000, "ha"


class _Assessor:
    """Assesses stored maps against validation pixels, on one grid."""

    def __init__(self, config: Config, store: RunStore):
        table = store.class_table()
        self.codes, self.names = table.codes, table.names
        grids = tile_grids(config.chain.list_tile, store)
        self.grid = output_grid(grids, config.chain.proj, config.dask.chunk_size)
        self.crs_of_tile = {t: g.crs for t, g in grids.items()}
        self.area, self.unit = pixel_area(self.grid)

    def __call__(self, path: Path, samples: pd.DataFrame, label: str,
                 isolated: bool = False) -> dict:
        """{scores, confusion, areas[, isolated_pixels]} of the map stored at `path`."""
        predicted = map_values_at(path, self.grid, samples, self.crs_of_tile)
        reference = samples["code"].to_numpy()
        confusion = confusion_matrix(reference, predicted, self.codes)
        result = scores(confusion, self.codes, self.names)
        result["unclassified"] = unclassified_count(reference, predicted, self.codes)
        classification = lazy.read_zarr(path, "classification")
        wanted = [class_counts(classification, self.codes)]
        if isolated:
            wanted.append(isolated_count(classification))
        counted = lazy.compute_all(wanted, label=f"class areas of {label}")
        out = {"scores": result, "confusion": confusion.tolist(),
               "areas": self.areas(confusion, counted[0])}
        if isolated:
            out["isolated_pixels"] = int(counted[1][0])
        return out

    def areas(self, confusion: np.ndarray, counts: np.ndarray) -> dict | None:
        if counts.sum() == 0:
            return None
        result = area_adjusted_accuracy(confusion, counts, self.codes, pixel_area=self.area)
        for entry in result["per_class"]:
            entry["name"] = self.names.get(entry["code"], str(entry["code"]))
        result["unit"] = self.unit
        result["design"] = DESIGN_NOTE
        return result


def outputs(config: Config, store: RunStore, record=None) -> list[Path]:
    final = store.final
    paths = []
    for run in range(config.chain.runs):
        paths += [final / f"ClassificationResults_seed_{run}.txt",
                  final / f"confusion_seed_{run}.csv", final / f"metrics_seed_{run}.json"]
        if config.classification.smoothing.method:
            paths.append(store.smoothed_results(run))
    return [*paths, final / "RESULTS.txt", final / "metrics.json"]


def _area_summary(results: list[dict | None]) -> dict | None:
    kept = [r for r in results if r is not None]
    return combine_runs(kept) if kept else None


def run(config: Config, store: RunStore, force: bool = False) -> Accuracy:
    """Write the accuracy reports of every run, of the fusion of runs and of the smoothed
    maps, and return `final/metrics.json`'s content."""
    final = store.final
    assess = _Assessor(config, store)
    codes, names = assess.codes, assess.names
    smoothing = config.classification.smoothing.method
    runs, smoothed = [], []
    for run_number in range(config.chain.runs):
        samples = _samples(store, run_number)
        if samples.empty:
            log.warning("run %d: no validation sample (no chain.ground_truth): the accuracy "
                        "is not measured", run_number)
        entry = assess(store.mosaic(run_number), samples, f"run {run_number}",
                       isolated=bool(smoothing))
        runs.append({"run": run_number, **entry})
        _write_run(final, run_number, entry, codes, names, assess.unit)
        result = entry["scores"]
        log.info("run %d: OA %.3f, kappa %.3f on %d validation pixels", run_number,
                 result["overall_accuracy"], result["kappa"], result["n_samples"])
        if smoothing:
            smooth = assess(store.smoothed_mosaic(run_number), samples,
                            f"the smoothed map of run {run_number}", isolated=True)
            smoothed.append({"run": run_number, **smooth})
            _write_smoothed(store, run_number, smooth, entry, smoothing, codes, names,
                            assess.unit)
            log.info("run %d smoothed (%s): OA %.3f, isolated pixels %d -> %d", run_number,
                     smoothing, smooth["scores"]["overall_accuracy"], entry["isolated_pixels"],
                     smooth["isolated_pixels"])
    summary = summarize([r["scores"] for r in runs])
    summary["areas"] = _area_summary([r["areas"] for r in runs])
    metrics = Accuracy({"runs": runs, "summary": summary, "fusion": None, "smoothed": None,
                        "area_design": DESIGN_NOTE, "area_unit": assess.unit})
    text = format_summary(summary, names)
    if summary["areas"] is not None:
        text += "\n" + format_area_summary(summary["areas"], names, assess.unit)
    if smoothed:
        smooth_summary = summarize([r["scores"] for r in smoothed])
        smooth_summary["areas"] = _area_summary([r["areas"] for r in smoothed])
        metrics["smoothed"] = {"method": smoothing, "runs": smoothed, "summary": smooth_summary}
        oa = smooth_summary["overall_accuracy"]
        spread = f" +- {oa['ci95']:.3f}" if oa["ci95"] is not None else ""
        text += (f"\nSmoothed maps ({smoothing}): OA = {oa['mean']:.3f}{spread}; isolated "
                 "pixels (8 neighbours of other classes) per run: "
                 + ", ".join(f"{r['isolated_pixels']} -> {s['isolated_pixels']}"
                             for r, s in zip(runs, smoothed)) + "\n")
    if (final / "Classifications_fusion.tif").exists():
        samples, which = _fusion_samples(store, config.chain.runs)
        entry = assess(store.mosaic("fusion"), samples, "the fusion of runs")
        metrics["fusion"] = {**entry, "validation": which}
        result = entry["scores"]
        text += (f"\nFusion of runs ({config.classification.merge_final_classifications.method},"
                 f" on the {which}): OA = {result['overall_accuracy']:.3f}, "
                 f"Kappa = {result['kappa']:.3f}\n")
        if entry["areas"] is not None:
            text += "\nFused map:\n" + format_areas(entry["areas"], names, assess.unit)
    text += f"\nArea estimates: {DESIGN_NOTE}.\n"
    write_text_atomic(final / "RESULTS.txt", text)
    write_text_atomic(final / "metrics.json", json.dumps(metrics, indent=2))
    return metrics


def _write_run(final: Path, run: int, entry: dict, codes, names, unit: str):
    title = "geoclass classification results"
    confusion, result = np.asarray(entry["confusion"]), entry["scores"]
    text = (format_run_report(confusion, result, codes, names, run, title)
            + f"\nValidation pixels left unclassified (0) by the map: "
              f"{result['unclassified']}\n")
    if entry["areas"] is not None:
        text += "\n" + format_areas(entry["areas"], names, unit)
    write_text_atomic(final / f"ClassificationResults_seed_{run}.txt", text)
    with atomic_output(final / f"confusion_seed_{run}.csv") as tmp:
        write_confusion_csv(tmp, confusion, codes, names)
    write_text_atomic(final / f"metrics_seed_{run}.json",
                      json.dumps({"run": run, **result, "confusion": entry["confusion"],
                                  "areas": entry["areas"]}, indent=2))


def _write_smoothed(store: RunStore, run: int, entry: dict, raw: dict, method: str, codes,
                    names, unit: str):
    title = f"geoclass classification results, smoothed map ({method})"
    confusion, result = np.asarray(entry["confusion"]), entry["scores"]
    text = (format_run_report(confusion, result, codes, names, run, title)
            + f"\nIsolated pixels (all 8 neighbours of another class): "
              f"{entry['isolated_pixels']} (unsmoothed map: {raw['isolated_pixels']})\n"
            + f"Unsmoothed map: OA {raw['scores']['overall_accuracy']:.4f}\n")
    if entry["areas"] is not None:
        text += "\n" + format_areas(entry["areas"], names, unit)
    write_text_atomic(store.smoothed_results(run), text)

"""One self-contained HTML report of a finished run (map quicklook, areas, scores): a jinja2
template (`page.html.j2`) filled with plain values and matplotlib figures (`figures.py`)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from pathlib import Path

import jinja2
import numpy as np
import rasterio
import yaml
from rasterio.enums import Resampling
from rasterio.windows import Window

from geoclass import fs
from geoclass.atomic import atomic_output
from geoclass.report import figures
from geoclass.report.figures import class_colors

__all__ = ["class_areas", "class_colors", "quicklook", "write_report"]

TEMPLATES = jinja2.Environment(loader=jinja2.PackageLoader("geoclass", "report"),
                               autoescape=True, keep_trailing_newline=True)
QUICKLOOK_SIDE = 800  # longest side of the map quicklook, pixels
WINDOW_SIDE = 2048  # target side of the windows read by class_areas, pixels
METRICS = (("overall_accuracy", "OA"), ("kappa", "Kappa"), ("macro_f1", "Macro F1"))

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222;
       padding: 0 1em; }
h1 { border-bottom: 3px solid #2a6f97; padding-bottom: .3em; }
h2 { color: #2a6f97; margin-top: 1.8em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #ccc; padding: .25em .7em; text-align: right; }
th { background: #eef3f7; }
td.name, th.name { text-align: left; }
.headline { font-size: 1.4em; font-weight: 600; margin: .2em 0; }
.warnings { background: #fff4d6; border-left: 6px solid #e0a100; padding: .6em 1em; }
.ok { background: #e6f4ea; border-left: 6px solid #2e7d32; padding: .6em 1em; }
.swatch { display: inline-block; width: 1em; height: 1em; border: 1px solid #555;
          vertical-align: middle; margin-right: .4em; }
img { max-width: 100%; height: auto; }
pre { background: #f6f8fa; padding: 1em; overflow-x: auto; }
.muted { color: #777; }
"""


# ---------------------------------------------------------------- rasters


def _windows(src: rasterio.DatasetReader, side: int) -> Iterator[Window]:
    """Windows aligned on the raster's blocks, about `side` pixels wide and high."""
    block_h, block_w = src.block_shapes[0]
    step_r = block_h * max(1, side // block_h) if block_h <= side else side
    step_c = block_w * max(1, side // block_w) if block_w <= side else side
    for row in range(0, src.height, step_r):
        for col in range(0, src.width, step_c):
            yield Window(col, row, min(step_c, src.width - col), min(step_r, src.height - row))


def _count_values(block: np.ndarray) -> dict[int, int]:
    """Pixel count of each value of an integer block."""
    if block.dtype.kind == "u" and block.dtype.itemsize <= 2:
        counts = np.bincount(block.ravel())
        values = np.flatnonzero(counts)
        return {int(v): int(counts[v]) for v in values}
    values, counts = np.unique(block, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts)}


def _pixel_area_ha(src: rasterio.DatasetReader) -> float:
    """Area of one pixel in hectares; the CRS must be projected."""
    if src.crs is not None and src.crs.is_geographic:
        raise ValueError(f"{src.name}: class areas need a projected CRS, not {src.crs}")
    factor = src.crs.linear_units_factor[1] if src.crs is not None else 1.0
    return abs(src.transform.a * src.transform.e) * factor**2 / 10_000


def class_areas(map_path: Path, codes: list[int]) -> dict[int, float]:
    """Hectares of each class code in a classification map, read window by window."""
    totals = dict.fromkeys((int(c) for c in codes), 0)
    with fs.open_raster(map_path) as src:
        pixel_ha = _pixel_area_ha(src)
        for window in _windows(src, WINDOW_SIDE):
            for value, count in _count_values(src.read(1, window=window)).items():
                if value in totals:
                    totals[value] += count
    return {code: count * pixel_ha for code, count in totals.items()}


def quicklook(map_path: Path, max_side: int = QUICKLOOK_SIDE) -> tuple[np.ndarray, int | None]:
    """A decimated copy of the map (overviews used when present) and its nodata value."""
    with fs.open_raster(map_path) as src:
        scale = min(1.0, max_side / max(src.height, src.width))
        shape = (max(1, round(src.height * scale)), max(1, round(src.width * scale)))
        data = src.read(1, out_shape=shape, resampling=Resampling.nearest)
        nodata = src.nodata
    if nodata is None or not math.isfinite(nodata):
        return data, None
    return data, int(nodata)


# ---------------------------------------------------------------- the page


def _num(value: object, digits: int = 3) -> str:
    """A score for display ('–' when missing)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{float(value):.{digits}f}"


def _headline(name: str, stats: dict, n_runs: int) -> str:
    """'OA 0.912 ± 0.010 (95 % CI, 5 runs)' from a summary entry."""
    mean, ci = stats.get("mean"), stats.get("ci95")
    runs = f"{n_runs} run{'s' if n_runs != 1 else ''}"
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        return f"{name} {_num(mean)} (95 % CI {_num(ci[0])}–{_num(ci[1])}, {runs})"
    if ci is not None:
        return f"{name} {_num(mean)} ± {_num(ci)} (95 % CI, {runs})"
    return f"{name} {_num(mean)} ± {_num(stats.get('std'))} (std, {runs})"


def _headlines(summary: dict | None, fusion: dict | None, runs: list[dict]) -> list[str]:
    lines = []
    if summary:
        n_runs = int(summary.get("n_runs") or len(runs))
        lines += [_headline(label, summary[key], n_runs) for key, label in METRICS
                  if isinstance(summary.get(key), dict)]
    if fusion:
        lines.append(f"Fused map: OA {_num(fusion.get('overall_accuracy'))}, "
                     f"kappa {_num(fusion.get('kappa'))}, macro F1 "
                     f"{_num(fusion.get('macro_f1'))}")
    return lines


def _score_row(label: str, scores: dict) -> dict:
    return {"label": label, "oa": _num(scores.get("overall_accuracy")),
            "kappa": _num(scores.get("kappa")), "macro_f1": _num(scores.get("macro_f1")),
            "samples": scores.get("n_samples", "–")}


def _plain(value: object) -> object:
    """Settings made YAML-safe (paths, numpy scalars, tuples, other objects as text)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _spread(figure: dict, digits: int = 3) -> str:
    """'12.30 ± 1.20' from a mean / ci95 spread ('–' when missing)."""
    if figure.get("mean") is None:
        return "–"
    if figure.get("ci95") is None:
        return _num(figure["mean"], digits)
    return f"{_num(figure['mean'], digits)} ± {_num(figure['ci95'], digits)}"


def _adjusted_rows(adjusted: dict, names: dict, swatch: dict) -> list[dict]:
    rows = []
    for e in adjusted["per_class"]:
        code = int(e["code"])
        rows.append({"code": code, "name": names.get(code, f"class {code}"),
                     "color": swatch.get(code, "#808080"),
                     "mapped": e["mapped_area"], "adjusted": _num(e["area"], 2),
                     "adjusted_ci": _num(e["area_ci95"], 2),
                     "ua": _num(e["users_accuracy"]), "ua_ci": _num(e["users_accuracy_ci95"]),
                     "pa": _num(e["producers_accuracy"]),
                     "pa_ci": _num(e["producers_accuracy_ci95"]), "n": e["n_samples"]})
    return rows


def _context(title, settings, classes, map_path, runs, summary, fusion, areas, warnings,
             extra) -> dict:
    """What the template shows, as plain values (jinja2 escapes every one of them)."""
    colors = figures.class_colors(classes)
    names = {int(c["code"]): str(c["name"]) for c in classes}
    swatch = {code: figures.hex_color(rgb) for code, rgb in colors.items()}
    total = sum(areas.values())
    unit = extra.get("area_unit") or "ha"
    context = {
        "title": title, "css": CSS, "warnings": warnings, "version": extra.get("version"),
        "stamp": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "headlines": _headlines(summary, fusion, runs),
        "settings": yaml.safe_dump(_plain(settings), sort_keys=False, allow_unicode=True),
        "areas": [{"code": code, "name": names.get(code, f"class {code}"),
                   "color": swatch.get(code, "#808080"), "hectares": hectares,
                   "share": 100 * hectares / total if total else 0.0}
                  for code, hectares in areas.items()],
        "total_area": total, "area_unit": unit, "map_figure": None, "runs": [],
        "area_source": extra.get("area_source"), "area_design": extra.get("area_design"),
    }
    adjusted = extra.get("adjusted_areas")
    if adjusted:
        context["adjusted"] = _adjusted_rows(adjusted, names, swatch)
        context["adjusted_oa"] = _num(adjusted.get("overall_accuracy"))
        context["adjusted_oa_ci"] = _num(adjusted.get("overall_accuracy_ci95"))
        context["adjusted_warnings"] = adjusted.get("warnings") or []
        context["areas_figure"] = figures.adjusted_areas_figure(adjusted["per_class"], names,
                                                                colors, unit)
    elif areas:
        context["areas_figure"] = figures.areas_figure(areas, names, colors)
    if map_path is not None:
        codes, nodata = quicklook(fs.as_path(map_path))
        context["map_figure"] = figures.map_figure(codes, nodata, classes, colors)
        context["map_source"] = fs.as_path(map_path).name
    uncertainty = extra.get("uncertainty_path")
    if uncertainty is not None and fs.as_path(uncertainty).exists():
        values, nodata = quicklook(fs.as_path(uncertainty))
        measure = extra.get("uncertainty_measure") or "entropy"
        context["uncertainty_figure"] = figures.uncertainty_figure(values, nodata, measure)
        context["uncertainty_source"] = fs.as_path(uncertainty).name
        context["uncertainty_measure"] = measure
    if runs:
        stats = figures.per_class_stats(runs)
        context.update(
            runs=[_score_row(f"run {r['run']}", r["scores"]) for r in runs]
            + ([_score_row("fusion", fusion)] if fusion else []),
            first_run=runs[0]["run"], n_runs=len(runs),
            confusion_figure=figures.confusion_figure(runs[0]["confusion"],
                                                      figures.labels(runs[0], classes)),
            f1_figure=figures.f1_figure(stats, colors, len(runs)) if stats else None,
            per_class=[{"code": s["code"], "name": s["name"],
                        "color": swatch.get(s["code"], "#808080"),
                        "precision": _num(figures.mean(s["precision"])),
                        "recall": _num(figures.mean(s["recall"])),
                        "f1": _num(figures.mean(s["f1"])), "f1_std": _num(figures.std(s["f1"])),
                        "support": _num(np.mean(s["support"]), 0)} for s in stats])
    if fusion and extra.get("fusion_confusion") is not None:
        labels = [str(p["name"]) for p in fusion.get("per_class") or []] or \
            [str(c["name"]) for c in classes]
        context["fusion_confusion_figure"] = figures.confusion_figure(
            extra["fusion_confusion"], labels)
    smoothed = extra.get("smoothed")
    if smoothed:
        raw = {r["run"]: r for r in runs}
        context["smoothing_method"] = smoothed["method"]
        context["smoothed"] = [
            {"run": s["run"], "oa": _num(raw.get(s["run"], {}).get("scores", {})
                                         .get("overall_accuracy")),
             "oa_smoothed": _num(s["scores"].get("overall_accuracy")),
             "isolated": raw.get(s["run"], {}).get("isolated_pixels", "–"),
             "isolated_smoothed": s.get("isolated_pixels", "–")} for s in smoothed["runs"]]
    over_runs = extra.get("area_summary")
    if over_runs and over_runs.get("n_runs", 0) > 1:
        context["area_runs"] = over_runs["n_runs"]
        context["area_oa_runs"] = _spread(over_runs["overall_accuracy"])
        context["areas_over_runs"] = [
            {"code": int(e["code"]), "name": names.get(int(e["code"]), f"class {e['code']}"),
             "color": swatch.get(int(e["code"]), "#808080"),
             "area": _spread(e["area"], 2), "ua": _spread(e["users_accuracy"]),
             "pa": _spread(e["producers_accuracy"])} for e in over_runs["per_class"]]
    counts = extra.get("sample_counts")
    if counts:
        context["sample_runs"] = counts["runs"]
        context["samples"] = [{**row, "color": swatch.get(row["code"], "#808080"),
                               "name": names.get(row["code"], f"class {row['code']}")}
                              for row in counts["per_class"]]
    return context


def write_report(path: Path, *, title: str, settings: dict, classes: list[dict],
                 map_path: Path | None, runs: list[dict], summary: dict | None,
                 fusion: dict | None, areas: dict[int, float], warnings: list[str],
                 adjusted_areas: dict | None = None, area_unit: str = "ha",
                 area_source: str | None = None, area_design: str | None = None,
                 uncertainty_path: Path | None = None, uncertainty_measure: str | None = None,
                 fusion_confusion: list | None = None, smoothed: dict | None = None,
                 sample_counts: dict | None = None, version: str | None = None,
                 area_summary: dict | None = None) -> Path:
    """Write the run's self-contained HTML report (inline CSS, base64 PNG figures) atomically,
    from the jinja2 template `page.html.j2`.

    `areas`: code -> mapped area of the map `map_path`. Optional sections: adjusted_areas
    (an `area_adjusted_accuracy` result of that map), area_unit ("ha"), area_source (which
    map the quicklook and areas come from, in words), area_design (the validation design the
    estimates assume), uncertainty_path and uncertainty_measure (an uncertainty COG for a
    quicklook), fusion_confusion (the fused map's matrix), smoothed ({method, runs: [{run,
    scores, isolated_pixels}]}, `runs` holding the unsmoothed maps' isolated_pixels),
    sample_counts ({runs, per_class: [{code, learn: [per run], validation: [per run]}]}),
    version (geoclass's), area_summary (a `combine_runs` result: the runs' adjusted areas,
    mean +- 95 % CI)."""
    extra = {"adjusted_areas": adjusted_areas, "area_unit": area_unit,
             "area_source": area_source, "area_design": area_design,
             "uncertainty_path": uncertainty_path, "uncertainty_measure": uncertainty_measure,
             "fusion_confusion": fusion_confusion, "smoothed": smoothed,
             "sample_counts": sample_counts, "version": version,
             "area_summary": area_summary}
    page = TEMPLATES.get_template("page.html.j2").render(
        **_context(title, settings, classes, map_path, runs, summary, fusion, areas, warnings,
                   extra))
    path = fs.as_path(path)
    with atomic_output(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path

"""One self-contained HTML accuracy report for a finished run (map quicklook, areas, scores)."""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import matplotlib
import numpy as np
import rasterio
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from rasterio.enums import Resampling
from rasterio.windows import Window

from geoclass.atomic import atomic_output

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
    with rasterio.open(map_path) as src:
        pixel_ha = _pixel_area_ha(src)
        for window in _windows(src, WINDOW_SIDE):
            for value, count in _count_values(src.read(1, window=window)).items():
                if value in totals:
                    totals[value] += count
    return {code: count * pixel_ha for code, count in totals.items()}


def quicklook(map_path: Path, max_side: int = QUICKLOOK_SIDE) -> tuple[np.ndarray, int | None]:
    """A decimated copy of the map (overviews used when present) and its nodata value."""
    with rasterio.open(map_path) as src:
        scale = min(1.0, max_side / max(src.height, src.width))
        shape = (max(1, round(src.height * scale)), max(1, round(src.width * scale)))
        data = src.read(1, out_shape=shape, resampling=Resampling.nearest)
        nodata = src.nodata
    if nodata is None or not math.isfinite(nodata):
        return data, None
    return data, int(nodata)


# ---------------------------------------------------------------- colours and figures


def class_colors(classes: list[dict]) -> dict[int, tuple[float, float, float]]:
    """RGB colour (0-1) of each class code: its own, or a tab20 colour when it has none."""
    tab20 = matplotlib.colormaps["tab20"]
    colors = {}
    for i, cls in enumerate(classes):
        rgb = cls.get("color")
        if rgb is None:
            colors[int(cls["code"])] = tuple(float(v) for v in tab20(i % 20)[:3])
        else:
            colors[int(cls["code"])] = tuple(float(v) / 255 for v in rgb[:3])
    return colors


def _hex(rgb: Sequence[float]) -> str:
    """#rrggbb of a 0-1 RGB colour."""
    return "#" + "".join(f"{round(v * 255):02x}" for v in rgb)


def _mpl_text(text: object) -> str:
    """Text shown literally by matplotlib (no mathtext on '$')."""
    return str(text).replace("$", r"\$")


def _new_figure(width: float, height: float) -> Figure:
    """A figure drawn by the Agg canvas, independent of pyplot's global state."""
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png_uri(fig: Figure) -> str:
    """The figure as a base64 PNG data URI; the figure is cleared afterwards."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight", facecolor="white",
                metadata={"Software": None})
    fig.clear()
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _rgba(codes: np.ndarray, colors: dict[int, tuple], nodata: int | None) -> np.ndarray:
    """RGBA image of a code array; nodata (0 and the file's nodata) and unknown codes clear."""
    image = np.zeros(codes.shape + (4,), dtype=np.float32)
    for code, rgb in colors.items():
        if code == 0 or code == nodata:
            continue
        image[codes == code] = (*rgb, 1.0)
    return image


def _map_figure(codes: np.ndarray, nodata: int | None, classes: list[dict], colors: dict) -> str:
    """The map quicklook in class colours with a legend, as a data URI."""
    height, width = codes.shape
    inches = max(max(height, width) / 100, 4.0) / max(height, width)
    fig = _new_figure(width * inches, height * inches)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(_rgba(codes, colors, nodata), interpolation="nearest")
    ax.set_axis_off()
    handles = [Patch(facecolor=colors[int(c["code"])], edgecolor="#555",
                     label=_mpl_text(f"{c['code']} {c['name']}")) for c in classes]
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False,
              ncol=1 + len(handles) // 25, fontsize=9)
    return _png_uri(fig)


def _labels(run: dict, classes: list[dict]) -> list[str]:
    """Class names in the order of a run's confusion matrix."""
    per_class = run["scores"].get("per_class") or []
    if len(per_class) == len(run["confusion"]):
        return [str(p["name"]) for p in per_class]
    if len(classes) == len(run["confusion"]):
        return [str(c["name"]) for c in classes]
    return [str(i) for i in range(len(run["confusion"]))]


def _confusion_figure(confusion: list[list[int]], labels: list[str]) -> str:
    """Heatmap of a confusion matrix (rows reference, columns prediction, row-normalised)."""
    counts = np.asarray(confusion, dtype=np.int64)
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    n = len(labels)
    size = max(4.0, 0.5 * n + 2.5)
    fig = _new_figure(size + 1, size)
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the reference row")
    names = [_mpl_text(name) for name in labels]
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("Prediction")
    ax.set_ylabel("Reference")
    fontsize = max(4, 10 - n // 4)
    for (i, j), count in np.ndenumerate(counts):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=fontsize,
                color="white" if share[i, j] > 0.5 else "black")
    return _png_uri(fig)


def _per_class_stats(runs: list[dict]) -> list[dict]:
    """Per class (first run's order): name and the values of each score across runs."""
    stats: dict[int, dict] = {}
    for run in runs:
        for entry in run["scores"].get("per_class") or []:
            item = stats.setdefault(int(entry["code"]), {"code": int(entry["code"]),
                                                         "name": entry["name"]})
            for key in ("precision", "recall", "f1", "support"):
                value = entry[key]  # None: not measured (no validation pixel)
                item.setdefault(key, []).append(np.nan if value is None else float(value))
    return list(stats.values())


def _std(values: list[float]) -> float:
    """Sample standard deviation of the measured values (0 for a single one)."""
    values = [v for v in values if not np.isnan(v)]
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _mean(values: list[float]) -> float:
    """Mean of the measured values (NaN: none measured)."""
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def _f1_figure(stats: list[dict], colors: dict, n_runs: int) -> str:
    """Per-class F1 bars (mean across runs, with the standard deviation when several)."""
    fig = _new_figure(max(5.0, 0.5 * len(stats) + 2), 4)
    ax = fig.add_subplot()
    means = [_mean(s["f1"]) for s in stats]
    errors = [_std(s["f1"]) for s in stats] if n_runs > 1 else None
    ax.bar(range(len(stats)), means, yerr=errors, capsize=4, edgecolor="#333",
           color=[colors.get(s["code"], (0.5, 0.5, 0.5)) for s in stats])
    ax.set_xticks(range(len(stats)), [_mpl_text(s["name"]) for s in stats],
                  rotation=45, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("F1" + (f" (mean ± std, {n_runs} runs)" if n_runs > 1 else ""))
    ax.grid(axis="y", alpha=0.3)
    return _png_uri(fig)


def _areas_figure(areas: dict[int, float], names: dict[int, str], colors: dict) -> str:
    """Horizontal bars of the area of each class, in class colours."""
    codes = list(areas)
    fig = _new_figure(7, max(2.0, 0.35 * len(codes) + 1))
    ax = fig.add_subplot()
    ax.barh(range(len(codes)), [areas[c] for c in codes], edgecolor="#333",
            color=[colors.get(c, (0.5, 0.5, 0.5)) for c in codes])
    ax.set_yticks(range(len(codes)), [_mpl_text(names.get(c, f"class {c}")) for c in codes])
    ax.invert_yaxis()
    ax.set_xlabel("Area (ha)")
    ax.grid(axis="x", alpha=0.3)
    return _png_uri(fig)


# ---------------------------------------------------------------- HTML pieces


def _esc(value: object) -> str:
    """HTML-escaped text of any value."""
    return html.escape(str(value), quote=True)


def _num(value: object, digits: int = 3) -> str:
    """A score for display ('–' when missing)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{float(value):.{digits}f}"


def _table(headers: list[str], rows: list[list[str]], name_cols: tuple[int, ...] = ()) -> str:
    """An HTML table; cells are HTML already escaped by the caller."""
    def cell(tag: str, i: int, text: str) -> str:
        cls = ' class="name"' if i in name_cols else ""
        return f"<{tag}{cls}>{text}</{tag}>"

    head = "".join(cell("th", i, _esc(h)) for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(uri: str, alt: str) -> str:
    """An <img> of a data URI."""
    return f'<img src="{uri}" alt="{_esc(alt)}">'


def _swatch_name(code: int, name: str, colors: dict) -> str:
    """A class name preceded by a swatch of its colour."""
    rgb = colors.get(int(code), (0.5, 0.5, 0.5))
    return f'<span class="swatch" style="background:{_hex(rgb)}"></span>{_esc(name)}'


def _section(title: str, body: str) -> str:
    """A titled section."""
    return f"<section><h2>{_esc(title)}</h2>\n{body}\n</section>"


def _headline(name: str, stats: dict, n_runs: int) -> str:
    """'OA 0.912 ± 0.010 (95 % CI, 5 runs)' from a summary entry."""
    mean, ci = stats.get("mean"), stats.get("ci95")
    runs = f"{n_runs} run{'s' if n_runs != 1 else ''}"
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        text = f"{name} {_num(mean)} (95 % CI {_num(ci[0])}–{_num(ci[1])}, {runs})"
    elif ci is not None:
        text = f"{name} {_num(mean)} ± {_num(ci)} (95 % CI, {runs})"
    else:
        text = f"{name} {_num(mean)} ± {_num(stats.get('std'))} (std, {runs})"
    return f'<p class="headline">{_esc(text)}</p>'


def _summary_html(summary: dict | None, fusion: dict | None, runs: list[dict]) -> str:
    """Headlines of the scores across runs and of the fused map."""
    parts = []
    if summary:
        n_runs = int(summary.get("n_runs") or len(runs))
        parts += [_headline(label, summary[key], n_runs) for key, label in METRICS
                  if isinstance(summary.get(key), dict)]
    if fusion:
        text = (f"Fused map: OA {_num(fusion.get('overall_accuracy'))}, "
                f"kappa {_num(fusion.get('kappa'))}, macro F1 {_num(fusion.get('macro_f1'))}")
        parts.append(f'<p class="headline">{_esc(text)}</p>')
    return "\n".join(parts) or '<p class="muted">No accuracy summary.</p>'


def _warnings_html(warnings: list[str]) -> str:
    """The warnings in a highlighted box, or a note that there are none."""
    if not warnings:
        return '<div class="ok">No warnings.</div>'
    items = "".join(f"<li>{_esc(w)}</li>" for w in warnings)
    return f'<div class="warnings"><ul>{items}</ul></div>'


def _scores_row(label: str, scores: dict) -> list[str]:
    """Table cells of one score dict."""
    return [_esc(label), _num(scores.get("overall_accuracy")), _num(scores.get("kappa")),
            _num(scores.get("macro_f1")), _esc(scores.get("n_samples", "–"))]


def _runs_html(runs: list[dict], fusion: dict | None) -> str:
    """Table of OA, kappa and macro F1 per run (and of the fused map)."""
    rows = [_scores_row(f"run {r['run']}", r["scores"]) for r in runs]
    if fusion:
        rows.append(_scores_row("fusion", fusion))
    return _table(["Run", "OA", "Kappa", "Macro F1", "Samples"], rows, name_cols=(0,))


def _per_class_html(stats: list[dict], colors: dict, n_runs: int) -> str:
    """Table of the per-class scores (means across runs)."""
    rows = []
    for s in stats:
        rows.append([_esc(s["code"]), _swatch_name(s["code"], s["name"], colors),
                     _num(_mean(s["precision"])), _num(_mean(s["recall"])),
                     _num(_mean(s["f1"])), _num(_std(s["f1"])),
                     _num(np.mean(s["support"]), 0)])
    note = f'<p class="muted">Means over {n_runs} run{"s" if n_runs != 1 else ""}.</p>'
    headers = ["Code", "Class", "Precision", "Recall", "F1", "F1 std", "Support"]
    return note + _table(headers, rows, name_cols=(1,))


def _areas_html(areas: dict[int, float], names: dict[int, str], colors: dict) -> str:
    """Table and bar chart of the class areas."""
    total = sum(areas.values())
    rows = []
    for code, hectares in areas.items():
        share = 100 * hectares / total if total else 0.0
        rows.append([_esc(code), _swatch_name(code, names.get(code, f"class {code}"), colors),
                     f"{hectares:,.2f}", f"{share:.1f} %"])
    rows.append(["", "<b>Total</b>", f"<b>{total:,.2f}</b>", "100.0 %" if total else "–"])
    table = _table(["Code", "Class", "Area (ha)", "Share"], rows, name_cols=(1,))
    return table + _img(_areas_figure(areas, names, colors), "Class areas")


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


def _settings_html(settings: dict) -> str:
    """The run's configuration as YAML."""
    text = yaml.safe_dump(_plain(settings), sort_keys=False, allow_unicode=True)
    return f"<pre>{_esc(text)}</pre>"


def _accuracy_sections(runs: list[dict], classes: list[dict], colors: dict,
                       fusion: dict | None) -> list[str]:
    """Sections of the per-run scores, confusion matrix and per-class F1."""
    if not runs:
        return [_section("Accuracy per run", '<p class="muted">No validation runs.</p>')]
    first = runs[0]
    stats = _per_class_stats(runs)
    sections = [
        _section("Accuracy per run", _runs_html(runs, fusion)),
        _section(f"Confusion matrix (run {first['run']})",
                 _img(_confusion_figure(first["confusion"], _labels(first, classes)),
                      "Confusion matrix")),
    ]
    if stats:
        body = _img(_f1_figure(stats, colors, len(runs)), "Per-class F1")
        sections.append(_section("Per-class F1", body + _per_class_html(stats, colors, len(runs))))
    return sections


def _page(title: str, sections: list[str]) -> str:
    """The whole HTML document."""
    stamp = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{_esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<h1>{_esc(title)}</h1>\n<p class=\"muted\">Generated {_esc(stamp)}</p>\n"
        + "\n".join(sections) + "\n</body>\n</html>\n"
    )


def write_report(path: Path, *, title: str, settings: dict, classes: list[dict],
                 map_path: Path | None, runs: list[dict], summary: dict | None,
                 fusion: dict | None, areas: dict[int, float], warnings: list[str]) -> Path:
    """Write the run's self-contained HTML report (inline CSS, base64 PNG figures) atomically."""
    colors = class_colors(classes)
    names = {int(c["code"]): str(c["name"]) for c in classes}
    sections = [_section("Summary", _summary_html(summary, fusion, runs)),
                _section("Warnings", _warnings_html(warnings))]
    if map_path is not None:
        codes, nodata = quicklook(Path(map_path))
        sections.append(_section("Classification map",
                                 _img(_map_figure(codes, nodata, classes, colors), "Map")))
    if areas:
        sections.append(_section("Class areas", _areas_html(areas, names, colors)))
    sections += _accuracy_sections(runs, classes, colors, fusion)
    sections.append(_section("Settings", _settings_html(settings)))
    path = Path(path)
    with atomic_output(path) as tmp:
        tmp.write_text(_page(title, sections), encoding="utf-8")
    return path

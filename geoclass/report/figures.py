"""The report's figures: matplotlib (Agg) PNGs as data URIs, in the class colours."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch


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


def hex_color(rgb: Sequence[float]) -> str:
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


def map_figure(codes: np.ndarray, nodata: int | None, classes: list[dict], colors: dict) -> str:
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


def labels(run: dict, classes: list[dict]) -> list[str]:
    """Class names in the order of a run's confusion matrix."""
    per_class = run["scores"].get("per_class") or []
    if len(per_class) == len(run["confusion"]):
        return [str(p["name"]) for p in per_class]
    if len(classes) == len(run["confusion"]):
        return [str(c["name"]) for c in classes]
    return [str(i) for i in range(len(run["confusion"]))]


def confusion_figure(confusion: list[list[int]], labels: list[str]) -> str:
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


def per_class_stats(runs: list[dict]) -> list[dict]:
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


def std(values: list[float]) -> float:
    """Sample standard deviation of the measured values (0 for a single one)."""
    values = [v for v in values if not np.isnan(v)]
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def mean(values: list[float]) -> float:
    """Mean of the measured values (NaN: none measured)."""
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def f1_figure(stats: list[dict], colors: dict, n_runs: int) -> str:
    """Per-class F1 bars (mean across runs, with the standard deviation when several)."""
    fig = _new_figure(max(5.0, 0.5 * len(stats) + 2), 4)
    ax = fig.add_subplot()
    means = [mean(s["f1"]) for s in stats]
    errors = [std(s["f1"]) for s in stats] if n_runs > 1 else None
    ax.bar(range(len(stats)), means, yerr=errors, capsize=4, edgecolor="#333",
           color=[colors.get(s["code"], (0.5, 0.5, 0.5)) for s in stats])
    ax.set_xticks(range(len(stats)), [_mpl_text(s["name"]) for s in stats],
                  rotation=45, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("F1" + (f" (mean ± std, {n_runs} runs)" if n_runs > 1 else ""))
    ax.grid(axis="y", alpha=0.3)
    return _png_uri(fig)


def areas_figure(areas: dict[int, float], names: dict[int, str], colors: dict) -> str:
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




def adjusted_areas_figure(per_class: list[dict], names: dict[int, str], colors: dict,
                          unit: str) -> str:
    """Mapped area against the area-adjusted estimate with its 95 % confidence interval,
    per class (Olofsson et al. 2014): pairs of horizontal bars, the mapped one hatched."""
    codes = [int(e["code"]) for e in per_class]
    fig = _new_figure(7.5, max(2.5, 0.6 * len(codes) + 1.2))
    ax = fig.add_subplot()
    rows = np.arange(len(codes))
    height = 0.38
    mapped = [e["mapped_area"] for e in per_class]
    adjusted = [np.nan if e["area"] is None else e["area"] for e in per_class]
    errors = [0.0 if e["area_ci95"] is None else e["area_ci95"] for e in per_class]
    shades = [colors.get(c, (0.5, 0.5, 0.5)) for c in codes]
    ax.barh(rows - height / 2, mapped, height, color=shades, edgecolor="#333", hatch="//",
            alpha=0.55, label="mapped (pixel count)")
    ax.barh(rows + height / 2, adjusted, height, xerr=errors, capsize=3, color=shades,
            edgecolor="#333", label="adjusted ± 95 % CI")
    ax.set_yticks(rows, [_mpl_text(names.get(c, f"class {c}")) for c in codes])
    ax.invert_yaxis()
    ax.set_xlabel(f"Area ({unit})")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return _png_uri(fig)


def uncertainty_figure(values: np.ndarray, nodata: int | None, measure: str,
                       scale: float = 1e-4) -> str:
    """An uncertainty quicklook (0 certain .. 1 most uncertain) with its colour bar; nodata
    pixels transparent."""
    data = values.astype(np.float64) * scale
    if nodata is not None:
        data = np.where(values == nodata, np.nan, data)
    height, width = data.shape
    inches = max(max(height, width) / 100, 4.0) / max(height, width)
    fig = _new_figure(width * inches + 1.2, height * inches)
    ax = fig.add_axes((0, 0, width * inches / (width * inches + 1.2), 1))
    image = ax.imshow(np.ma.masked_invalid(data), cmap="magma", vmin=0, vmax=1,
                      interpolation="nearest")
    ax.set_axis_off()
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=f"{measure} uncertainty")
    return _png_uri(fig)

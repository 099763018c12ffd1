"""Accuracy figures of classification maps: confusion matrix, per-run scores, the summary over
several runs with Student's t confidence intervals, and the text/CSV reports (like iota2's
ClassificationResults_seed_N.txt and RESULTS.txt).

Every ratio whose denominator is zero (a class without reference sample, a class never
predicted, an empty matrix) is reported as 0.0."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from sklearn import metrics

HEADER_WIDTH = 12
CLASS_FIGURES = ("precision", "recall", "f1")
RUN_FIGURES = ("overall_accuracy", "kappa", "macro_f1")


def _class_positions(values: np.ndarray, classes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Index of each value in `classes` and whether it is one of them."""
    codes = np.asarray(classes)
    if codes.size == 0 or codes.size != np.unique(codes).size:
        raise ValueError(f"classes must be distinct and not empty, got {list(classes)}")
    order = np.argsort(codes)
    sorted_codes = codes[order]
    slot = np.clip(np.searchsorted(sorted_codes, values), 0, codes.size - 1)
    return order[slot], sorted_codes[slot] == values


def _in_matrix(reference, predicted, classes: list[int]):
    """Flattened class indices of both arrays and the mask of pixels that enter the matrix."""
    reference, predicted = np.ravel(reference), np.ravel(predicted)
    if reference.shape != predicted.shape:
        raise ValueError(f"reference has {reference.size} pixels, predicted {predicted.size}")
    ref_index, ref_known = _class_positions(reference, classes)
    pred_index, pred_known = _class_positions(predicted, classes)
    return ref_index, pred_index, ref_known & pred_known


def confusion_matrix(
    reference: np.ndarray, predicted: np.ndarray, classes: list[int],
) -> np.ndarray:
    """int64 (C, C) counts, rows = reference, columns = prediction, in the order of `classes`
    (scikit-learn's). Pixels whose reference or prediction is not in `classes` (e.g.
    prediction 0 = nodata) are left out; `unclassified_count` gives how many."""
    _, _, kept = _in_matrix(reference, predicted, classes)
    if not kept.any():
        return np.zeros((len(classes), len(classes)), np.int64)
    return metrics.confusion_matrix(np.ravel(reference)[kept], np.ravel(predicted)[kept],
                                    labels=list(classes)).astype(np.int64)


def unclassified_count(reference: np.ndarray, predicted: np.ndarray, classes: list[int]) -> int:
    """Number of pixels that `confusion_matrix` leaves out (reference or prediction not in
    `classes`), e.g. validation pixels that the map left as nodata."""
    return int((~_in_matrix(reference, predicted, classes)[2]).sum())


def _pairs(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (reference, prediction) class indices of every pixel a matrix counts."""
    confusion = np.asarray(confusion, np.int64)
    cells = np.arange(confusion.size)
    flat = np.repeat(cells, confusion.ravel())
    return np.divmod(flat, confusion.shape[1])


def _per_class(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's precision, recall and F1 of each class (0 where undefined)."""
    n = np.asarray(confusion).shape[0]
    if np.asarray(confusion).sum() == 0:
        return np.zeros(n), np.zeros(n), np.zeros(n)
    reference, predicted = _pairs(confusion)
    precision, recall, f1, _ = metrics.precision_recall_fscore_support(
        reference, predicted, labels=np.arange(n), zero_division=0)
    return precision, recall, f1


def precisions(confusion: np.ndarray) -> np.ndarray:
    """Per class: diagonal / column sum (share of the class's predictions that are right)."""
    return _per_class(confusion)[0]


def recalls(confusion: np.ndarray) -> np.ndarray:
    """Per class: diagonal / row sum (share of the class's reference pixels found)."""
    return _per_class(confusion)[1]


def f1_scores(confusion: np.ndarray) -> np.ndarray:
    """Per class: 2 P R / (P + R)."""
    return _per_class(confusion)[2]


def overall_accuracy(confusion: np.ndarray) -> float:
    """OA = trace / total (0 for an empty matrix)."""
    confusion = np.asarray(confusion)
    total = confusion.sum()
    return float(np.trace(confusion) / total) if total else 0.0


def cohen_kappa(confusion: np.ndarray) -> float:
    """Cohen's kappa = (po - pe) / (1 - pe) (scikit-learn's; 0 where undefined)."""
    if np.asarray(confusion).sum() == 0:
        return 0.0
    reference, predicted = _pairs(confusion)
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = metrics.cohen_kappa_score(reference, predicted,
                                          labels=np.arange(np.asarray(confusion).shape[0]))
    return 0.0 if not np.isfinite(kappa) else float(kappa)


def _name(code: int, names: dict[int, str] | None) -> str:
    return str((names or {}).get(code, code))


def scores(confusion: np.ndarray, classes: list[int], names: dict[int, str] | None = None) -> dict:
    """JSON-ready figures of one confusion matrix (rows = reference, columns = prediction).

    overall_accuracy, kappa (Cohen), n_samples, macro_f1 (mean F1 over the classes that have
    validation pixels), not_measured (the names of the classes without any: their recall
    and F1 are None, not 0, and they do not count in macro_f1) and per_class: code, name,
    precision, recall, f1, support (reference count) and predicted (prediction count)."""
    confusion = np.asarray(confusion)
    support, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    precision, recall, f1 = _per_class(confusion)
    measured = support > 0
    per_class = [
        {"code": int(code), "name": _name(code, names), "precision": float(precision[i]),
         "recall": float(recall[i]) if measured[i] else None,
         "f1": float(f1[i]) if measured[i] else None, "support": int(support[i]),
         "predicted": int(predicted[i])}
        for i, code in enumerate(classes)
    ]
    return {
        "overall_accuracy": overall_accuracy(confusion),
        "kappa": cohen_kappa(confusion),
        "n_samples": int(confusion.sum()),
        "macro_f1": float(f1[measured].mean()) if measured.any() else 0.0,
        "not_measured": [_name(c, names) for c, m in zip(classes, measured) if not m],
        "per_class": per_class,
    }


def spread(values: list[float]) -> dict:
    """mean, std (ddof=1) and the 95 % CI half-width t(0.975, n-1) * std / sqrt(n) of the
    values that were measured (None: not measured, e.g. the F1 of a class without
    validation pixel in that run).

    With a single value std and ci95 are None (undefined); all None gives all None."""
    if len(values) and all(v is None for v in values):
        return {"mean": None, "std": None, "ci95": None}  # never measured
    values = np.asarray([v for v in values if v is not None], np.float64)
    n = values.size
    if n == 0:
        raise ValueError("no value to summarize")
    if n == 1:
        return {"mean": float(values[0]), "std": None, "ci95": None}
    std = float(values.std(ddof=1))
    half_width = float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n))
    return {"mean": float(values.mean()), "std": std, "ci95": half_width}


def _class_codes(per_run: list[dict]) -> list[int]:
    """The class codes shared by every run; raise if the runs disagree."""
    codes = [[c["code"] for c in run["per_class"]] for run in per_run]
    if any(c != codes[0] for c in codes):
        raise ValueError("the runs do not have the same classes")
    return codes[0]


def summarize(per_run: list[dict]) -> dict:
    """Summary of several runs' `scores`: for OA, kappa, macro_f1 and each class's precision,
    recall and f1 a `spread` (mean, std, ci95 = Student's t 95 % half-width; None with one
    run). Returns {n_runs, overall_accuracy, kappa, macro_f1, per_class: [{code, name,
    precision, recall, f1}]}."""
    if not per_run:
        raise ValueError("no run to summarize")
    summary = {"n_runs": len(per_run)}
    summary.update({key: spread([run[key] for run in per_run]) for key in RUN_FIGURES})
    summary["per_class"] = []
    for i, code in enumerate(_class_codes(per_run)):
        entry = {"code": code, "name": per_run[0]["per_class"][i]["name"]}
        for key in CLASS_FIGURES:
            entry[key] = spread([run["per_class"][i][key] for run in per_run])
        summary["per_class"].append(entry)
    return summary


def _short(name: str, width: int | None) -> str:
    return name if width is None else name[:width]


def class_labels(classes: list[int], names: dict[int, str] | None,
                 width: int | None = None) -> list[str]:
    """One distinct label per class: its name (cut to `width`), with '#code' appended to
    names that would otherwise clash; the bare codes if that is still ambiguous."""
    labels = [_short(_name(code, names), width) for code in classes]
    clashing = {label for label in labels if labels.count(label) > 1}
    for i, code in enumerate(classes):
        if labels[i] in clashing:
            tag = f"#{code}"
            labels[i] = _short(_name(code, names), None if width is None else width - len(tag))
            labels[i] += tag
    if len(set(labels)) < len(labels):
        return [str(code) for code in classes]
    return labels


def _matrix_table(confusion: np.ndarray, classes: list[int], names) -> list[str]:
    """The confusion matrix as aligned text lines, rows = reference, columns = prediction."""
    rows = class_labels(classes, names)
    columns = class_labels(classes, names, HEADER_WIDTH)
    row_width = max(len("reference"), *(len(r) for r in rows))
    cell = max(HEADER_WIDTH, *(len(c) for c in columns), len(str(int(np.max(confusion)))))
    lines = [f"{'reference':<{row_width}} | " + " ".join(f"{c:>{cell}}" for c in columns)]
    lines.append("-" * len(lines[0]))
    for label, counts in zip(rows, np.asarray(confusion)):
        lines.append(f"{label:<{row_width}} | " + " ".join(f"{int(n):>{cell}}" for n in counts))
    return lines


def _class_table(per_class: list[dict], labels: list[str]) -> list[str]:
    """Per-class precision / recall / F1 / support as aligned text lines."""
    width = max(len("class"), *(len(label) for label in labels))
    lines = [f"{'class':<{width}}  {'precision':>9}  {'recall':>9}  {'F1':>9}  {'support':>9}"]
    for label, entry in zip(labels, per_class):
        lines.append(f"{label:<{width}}  {_cell(entry['precision'])}  {_cell(entry['recall'])}"
                     f"  {_cell(entry['f1'])}  {entry['support']:>9d}")
    return lines


def _cell(value: float | None) -> str:
    """A score in a 9-wide column; 'n/a' when not measured."""
    return f"{'n/a':>9}" if value is None else f"{value:>9.4f}"


def format_run_report(confusion: np.ndarray, scores_dict: dict, classes: list[int],
                      names: dict[int, str] | None, run: int, title: str) -> str:
    """A readable report of one run: header, confusion matrix (rows = reference, columns =
    prediction), OA, kappa and the per-class precision / recall / F1 table."""
    lines = [title, "=" * len(title), f"Run {run}", "",
             "Confusion matrix (rows = reference, columns = prediction)", ""]
    lines += _matrix_table(confusion, classes, names)
    lines += ["", f"Overall accuracy (OA): {scores_dict['overall_accuracy']:.4f}",
              f"Kappa: {scores_dict['kappa']:.4f}",
              f"Macro F1: {scores_dict['macro_f1']:.4f}",
              f"Samples: {scores_dict['n_samples']}", ""]
    lines += _class_table(scores_dict["per_class"], class_labels(classes, names))
    if scores_dict.get("not_measured"):
        lines += ["", "Not measured (no validation pixel; left out of the macro F1): "
                  + ", ".join(scores_dict["not_measured"])]
    return "\n".join(lines) + "\n"


def _mean_ci(figure: dict, n_runs: int) -> str:
    """'0.912 +- 0.010 (95 % CI, 3 runs)', '0.912 (1 run, no CI)', or 'not measured'."""
    if figure["mean"] is None:
        return "not measured (no validation pixel)"
    if figure["ci95"] is None:
        return f"{figure['mean']:.3f} ({n_runs} run, no CI)"
    return f"{figure['mean']:.3f} +- {figure['ci95']:.3f} (95 % CI, {n_runs} runs)"


def format_summary(summary: dict, names: dict[int, str] | None = None) -> str:
    """RESULTS.txt-style text of a `summarize` result: OA, kappa, macro F1 and each class's F1
    as mean +- 95 % CI half-width. `names` overrides the class names stored in the summary."""
    n_runs = summary["n_runs"]
    lines = [f"Results over {n_runs} run{'s' if n_runs > 1 else ''}", "",
             f"OA = {_mean_ci(summary['overall_accuracy'], n_runs)}",
             f"Kappa = {_mean_ci(summary['kappa'], n_runs)}",
             f"Macro F1 = {_mean_ci(summary['macro_f1'], n_runs)}", "", "F1 per class:"]
    codes = [entry["code"] for entry in summary["per_class"]]
    stored = {entry["code"]: entry["name"] for entry in summary["per_class"]}
    labels = class_labels(codes, {**stored, **(names or {})})
    width = max([0, *(len(label) for label in labels)])
    for label, entry in zip(labels, summary["per_class"]):
        lines.append(f"  {label:<{width}}  {_mean_ci(entry['f1'], n_runs)}")
    return "\n".join(lines) + "\n"


def write_confusion_csv(path, confusion: np.ndarray, classes: list[int],
                        names: dict[int, str] | None) -> Path:
    """Write the matrix as CSV: header row = prediction class names, first column = reference
    class names (read back with pandas.read_csv(path, index_col=0)). Returns the path."""
    labels = class_labels(classes, names)
    table = pd.DataFrame(np.asarray(confusion, np.int64), index=pd.Index(labels, name="reference"),
                         columns=labels)
    path = Path(path)
    table.to_csv(path)
    return path

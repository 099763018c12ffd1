"""The class table: the user's labels (strings or integers) tied to geoclass's integer codes,
names (nomenclature) and colours, and iota2's `*_table.csv`."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from geoclass import fs
from geoclass.atomic import atomic_output
from geoclass.errors import InputError

MAX_LISTED = 10


def as_int(value) -> int | None:
    """`value` as an int if it is one (1, 1.0, ' 1 '), else None."""
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def listed(items, sep: str = ", ") -> str:
    """The first items, and how many more there are."""
    items = list(items)
    return f"{sep.join(map(str, items[:MAX_LISTED]))}{more(items)}"


def more(items) -> str:
    n = len(items)
    return f" (and {n - MAX_LISTED} more)" if n > MAX_LISTED else ""


@dataclass(frozen=True)
class ClassInfo:
    """One class: the user's label, geoclass's integer code, its name and color."""

    user_label: str
    code: int
    name: str
    color: tuple[int, int, int]


@dataclass
class ClassTable:
    """The classes, in code order; ties user labels to geoclass's integer codes."""

    classes: list[ClassInfo]
    labels_are_strings: bool

    @property
    def codes(self) -> list[int]:
        return [c.code for c in self.classes]

    @property
    def names(self) -> dict[int, str]:
        return {c.code: c.name for c in self.classes}

    @property
    def colors(self) -> dict[int, tuple[int, int, int]]:
        return {c.code: c.color for c in self.classes}

    def encode(self, values) -> np.ndarray:
        """User labels -> codes (int32); unknown labels raise InputError."""
        series = pd.Series(np.asarray(values, dtype=object).reshape(-1))
        if self.labels_are_strings:
            codes = series.map({c.user_label: c.code for c in self.classes})
        else:
            numbers = pd.to_numeric(series, errors="coerce")
            codes = numbers.where(numbers.isin(self.codes))
        unknown = series[codes.isna()].unique()
        if len(unknown):
            raise InputError([f"labels not in the class table: {listed(map(repr, unknown))}"])
        return codes.to_numpy(dtype=np.int32).reshape(np.shape(values))

    def decode(self, codes) -> np.ndarray:
        """Codes -> user labels (strings, or the integer labels themselves)."""
        codes = np.asarray(codes)
        unknown = np.setdiff1d(codes, self.codes)
        if len(unknown):
            raise ValueError(f"codes not in the class table: {unknown[:MAX_LISTED].tolist()}")
        if not self.labels_are_strings:
            return codes
        lookup = {c.code: c.user_label for c in self.classes}
        return np.vectorize(lookup.__getitem__, otypes=[object])(codes)


def build_class_table(
    labels: Sequence, nomenclature: dict | None = None, colors: dict | None = None
) -> ClassTable:
    """The class table of these ground-truth labels (InputError if a color is missing)."""
    keys, strings = _class_keys(labels)
    found = [_describe(key, strings, nomenclature or {}, colors) for key in keys]
    missing = [key for key, (_, color) in zip(keys, found) if color is None]
    if colors is not None and missing:
        raise InputError([f"color table: no color for classes {', '.join(missing)}"])
    palette = _palette(len(keys))
    classes = []
    for i, (key, (name, color)) in enumerate(zip(keys, found)):
        code = i + 1 if strings else int(key)
        classes.append(ClassInfo(key, code, name or key, color or palette[i]))
    return ClassTable(sorted(classes, key=lambda c: c.code), strings)


def check_class_table_inputs(
    labels: Sequence,
    nomenclature: dict | None,
    colors: dict | None,
    ground_truth_file="ground truth",
    nomenclature_file="nomenclature",
    color_file="color table",
) -> list[str]:
    """Every ground-truth class missing from the nomenclature or the color table (if given)."""
    keys, strings = _class_keys(labels)
    gt = fs.as_path(ground_truth_file).name
    found = {k: _describe(k, strings, nomenclature or {}, colors or {}) for k in keys}
    problems = []
    if nomenclature is not None:
        missing = [k for k in keys if found[k][0] is None]
        if missing:
            problems.append(
                f"{fs.as_path(nomenclature_file).name}: no entry for classes {', '.join(missing)} "
                f"of {gt}; add 'name:code' lines"
            )
    if colors is not None:
        missing = [k for k in keys if found[k][1] is None]
        if missing:
            problems.append(
                f"{fs.as_path(color_file).name}: no color for classes {', '.join(missing)} "
                f"of {gt}; add 'code R G B' lines"
            )
    return problems


def write_class_table(table: ClassTable, path) -> None:
    """Write iota2's `*_table.csv` (USER_LABEL,GEOCLASS_LABEL,RED,GREEN,BLUE) atomically,
    readable by all as any output file (the umask decides)."""
    lines = ["USER_LABEL,GEOCLASS_LABEL,RED,GREEN,BLUE"]
    for c in table.classes:
        lines.append(",".join([_csv_field(c.user_label), str(c.code), *map(str, c.color)]))
    with atomic_output(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")


def _csv_field(text: str) -> str:
    """`text`, quoted CSV-style if it holds a comma or a quote."""
    if "," not in text and '"' not in text:
        return text
    escaped = text.replace('"', '""')
    return f'"{escaped}"'


def _class_keys(labels: Sequence) -> tuple[list[str], bool]:
    """The distinct labels as sorted strings, and whether they are string labels."""
    values = [v for v in pd.unique(pd.Series(list(labels), dtype=object)) if not pd.isna(v)]
    strings = any(isinstance(v, str) for v in values)
    if strings:
        return sorted({str(v) for v in values}), True
    ints = {as_int(v) for v in values}
    if None in ints:
        raise InputError([f"labels must be integers or strings, got {values}"])
    return [str(v) for v in sorted(ints)], False


def _describe(key: str, strings: bool, nomenclature: dict, colors: dict | None):
    """(name, color) of a class from the nomenclature and color table; None where absent."""
    name = nomenclature.get(key)
    color_key = key
    if strings and name is None:
        by_name = [code for code, n in nomenclature.items() if n == key]
        if by_name:
            name, color_key = key, by_name[0]
    colors = colors or {}
    return name, colors.get(key, colors.get(color_key))


def _palette(n: int) -> list[tuple[int, int, int]]:
    """`n` distinct colors, always the same: golden-ratio hues, two brightnesses."""
    colors: list[tuple[int, int, int]] = []
    i = 0
    while len(colors) < n:
        hue = (i * 0.618033988749895) % 1
        rgb = colorsys.hsv_to_rgb(hue, 0.8, 0.95 if i % 2 == 0 else 0.7)
        color = tuple(round(v * 255) for v in rgb)
        if color not in colors:
            colors.append(color)
        i += 1
    return colors


def class_table_to_json(table: ClassTable) -> dict:
    return {"labels_are_strings": table.labels_are_strings,
            "classes": [asdict(c) for c in table.classes]}


def class_table_from_json(data: dict) -> ClassTable:
    classes = [ClassInfo(c["user_label"], int(c["code"]), c["name"], tuple(c["color"]))
               for c in data["classes"]]
    return ClassTable(classes, data["labels_are_strings"])

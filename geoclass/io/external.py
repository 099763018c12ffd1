"""External training samples (`chain.external_samples`): a CSV or Parquet table of labelled
time series, wide (one row per sample) or long (one row per sample and date), matched to the
cube's features by name or by position."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from geoclass import fs
from geoclass.config import Config, ExternalSamples
from geoclass.errors import InputError
from geoclass.io.reference import as_int, check_labels, listed

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass
class ExternalTable:
    """The samples of a table, one row per sample, in file order: user `labels`, `regions`
    (None: the samples serve every region), feature `values` (columns as in the file) and
    `names`: how messages name each sample ("row 3", "sample_id 17")."""

    file: str
    labels: pd.Series
    regions: pd.Series | None
    values: pd.DataFrame
    names: list[str]


def external_path(config: Config) -> Path | None:
    """The table's path: relative paths resolve against the config file's folder."""
    options = config.chain.external_samples
    if options is None:
        return None
    path = fs.as_path(options.path)
    if fs.is_url(path):
        return path
    if not path.is_absolute() and config.source is not None:
        path = Path(config.source).parent / path
    return path.resolve()


def read_table(path: Path) -> pd.DataFrame:
    """The table as it is in the file (CSV or Parquet)."""
    if not path.is_file():
        raise InputError([f"{path}: file not found (chain.external_samples.path)"])
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise InputError([f"{path.name}: unknown table format '{path.suffix}'; external "
                          "samples must be a .csv or .parquet file"])
    try:
        return fs.read_csv(path) if kind == "csv" else fs.read_parquet(path)
    except Exception as err:  # noqa: BLE001 - any reader failure means "unreadable"
        raise InputError([f"{path.name}: not a readable {kind} table ({err})"]) from err


# --- wide and long tables ---------------------------------------------------------------------


def _field_problem(frame: pd.DataFrame, file: str, key: str, field: str) -> list[str]:
    if field in frame.columns:
        return []
    hint = [c for c in frame.columns if str(c).lower() == field.lower()]
    return [f"{file}: no column '{field}' (chain.external_samples.{key}); columns are: "
            f"{listed(list(frame.columns))}" + (f" (did you mean '{hint[0]}'?)" if hint else "")]


def _is_long(frame: pd.DataFrame, options: ExternalSamples) -> bool:
    return options.date_field in frame.columns


def _wide(frame: pd.DataFrame, options: ExternalSamples):
    """(labels, regions, values, names) of a wide table; rows are named from 1."""
    names = [f"row {i}" for i in range(1, len(frame) + 1)]
    frame = frame.set_axis(names)
    meta = [options.label_field, options.region_field, options.id_field]
    values = frame[[c for c in frame.columns if c not in meta]]
    regions = frame[options.region_field] if options.region_field else None
    return frame[options.label_field], regions, values, names


def _one_per_sample(frame, id_field: str, field: str, file: str, problems) -> pd.Series:
    """The value of `field` of each sample; a sample with several values is a problem."""
    per_sample = frame.groupby(id_field, sort=False)[field]
    several = per_sample.nunique(dropna=False)
    if (several > 1).any():
        problems.append(f"{file}: {id_field} {listed(several.index[several > 1])}: several "
                        f"values of '{field}' for one sample; give each sample one value")
    return per_sample.first()


def _long(frame: pd.DataFrame, options: ExternalSamples, file: str, problems: list[str]):
    """(labels, regions, values, names) of a long table, pivoted to `<band>_<YYYYMMDD>`
    columns: each band over the sorted dates, bands in file order (the cube's layout)."""
    id_field, date_field = options.id_field, options.date_field
    dates = pd.to_datetime(frame[date_field], errors="coerce")
    if dates.isna().any():
        rows = [f"row {i + 1}" for i in np.flatnonzero(dates.isna().to_numpy())]
        problems.append(f"{file}: {listed(rows)}: '{date_field}' is not a date")
        return None
    frame = frame.assign(**{date_field: dates.dt.strftime("%Y%m%d")})
    twice = frame.duplicated([id_field, date_field])
    if twice.any():
        pairs = frame.loc[twice, [id_field, date_field]].astype(str).agg(" ".join, axis=1)
        problems.append(f"{file}: {listed(list(pairs))}: several rows for one "
                        f"({id_field}, {date_field}); keep one row per sample and date")
        return None
    ids = pd.unique(frame[id_field])
    meta = [id_field, date_field, options.label_field, options.region_field]
    bands = [c for c in frame.columns if c not in meta]
    if not bands:
        problems.append(f"{file}: no band column besides {id_field}, {date_field} and the label")
        return None
    labels = _one_per_sample(frame, id_field, options.label_field, file, problems)
    regions = (_one_per_sample(frame, id_field, options.region_field, file, problems)
               if options.region_field else None)
    wide = frame.pivot(index=id_field, columns=date_field, values=bands).reindex(ids)
    days = sorted(frame[date_field].unique())
    columns = [(band, day) for band in bands for day in days]
    values = wide.reindex(columns=pd.MultiIndex.from_tuples(columns))
    values.columns = [f"{band}_{day}" for band, day in columns]
    names = [f"{id_field} {i}" for i in ids]
    return (labels.reindex(ids).set_axis(names), None if regions is None else
            regions.reindex(ids).set_axis(names), values.set_axis(names), names)


def parse_table(frame: pd.DataFrame, options: ExternalSamples, file: str):
    """The ExternalTable of a table read from `file`, and every problem found (the table is
    None when it cannot be built)."""
    problems = _field_problem(frame, file, "label_field", options.label_field)
    if options.region_field:
        problems += _field_problem(frame, file, "region_field", options.region_field)
    if _is_long(frame, options) and options.id_field not in frame.columns:
        problems.append(f"{file}: a '{options.date_field}' column but no '{options.id_field}' "
                        "column: a long table (one row per sample and date) needs both "
                        "(chain.external_samples.id_field)")
    if problems:
        return None, problems
    parts = (_long(frame, options, file, problems) if _is_long(frame, options)
             else _wide(frame, options))
    if parts is None:
        return None, problems
    labels, regions, values, names = parts
    problems += check_labels(labels, file, options.label_field, ids=listed,
                             item="sample")
    if regions is not None:
        bad = [n for n, v in regions.items() if as_int(v) is None]
        if bad:
            problems.append(f"{file}: {listed(bad)}: column '{options.region_field}' must "
                            "hold integer regions")
        else:
            regions = regions.map(as_int).astype(np.int64)
    text = [str(c) for c in values.columns if not pd.api.types.is_numeric_dtype(values[c])]
    if text:
        problems.append(f"{file}: columns {listed(text)} hold text; feature columns must be "
                        "numbers")
    if values.shape[1] == 0:
        problems.append(f"{file}: no feature column besides the label")
    return ExternalTable(file, labels, regions, values, names), problems


def read_external(config: Config) -> ExternalTable:
    """The external samples of the config (InputError listing every problem)."""
    path = external_path(config)
    table, problems = parse_table(read_table(path), config.chain.external_samples, path.name)
    if problems:
        raise InputError(problems)
    return table


# --- matching to the cube ---------------------------------------------------------------------


def match_problems(table: ExternalTable, names: list[str], match: str) -> list[str]:
    """Why the table's feature columns cannot be matched to the cube's features `names`."""
    columns = [str(c) for c in table.values.columns]
    if match == "position":
        if len(columns) == len(names):
            return []
        return [f"{table.file}: {len(columns)} feature columns but the cube has {len(names)} "
                f"features (match: position maps them in order, so the counts must be equal)"]
    missing = [n for n in names if n not in set(columns)]
    unknown = [c for c in columns if c not in set(names)]
    if not missing and not unknown:
        return []
    parts = ([f"missing {len(missing)} of the cube's features: {listed(missing)}"]
             if missing else [])
    parts += [f"unknown columns: {listed(unknown)}"] if unknown else []
    return [f"{table.file}: feature columns do not match the cube's {len(names)} features "
            f"(match: name): {'; '.join(parts)}; rename the columns (e.g. {names[0]}) or use "
            "match: position"]


def nan_problems(table: ExternalTable) -> list[str]:
    """Samples with a missing (NaN, empty) or infinite feature value."""
    numeric = table.values.apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(numeric).all(axis=1)
    if not bad.any():
        return []
    return [f"{table.file}: {listed([table.names[i] for i in np.flatnonzero(bad)])}: missing "
            "(NaN) or infinite feature values; fill or remove these samples"]


def matched_values(table: ExternalTable, names: list[str], match: str) -> pd.DataFrame:
    """The feature values as float32 columns named and ordered as the cube's `names`."""
    problems = match_problems(table, names, match)
    problems += [] if problems else nan_problems(table)
    if problems:
        raise InputError(problems)
    values = table.values.astype(np.float32)
    if match == "position":
        return values.set_axis(list(names), axis=1).reset_index(drop=True)
    return values[list(names)].reset_index(drop=True)


def inspect_external(config: Config, names: list[str] | None):
    """(table or None, problems) of the config's external samples, matched to `names` if
    given; reads the table, writes nothing."""
    path = external_path(config)
    options = config.chain.external_samples
    try:
        frame = read_table(path)
    except InputError as err:
        return None, err.problems
    table, problems = parse_table(frame, options, path.name)
    if table is not None and not problems and names is not None:
        problems = match_problems(table, names, options.match) or nan_problems(table)
    return table, problems

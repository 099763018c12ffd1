"""File-name patterns with fields: `TERRA_MODIS_NDVI_{date:%Y-%m-%d}.tif`, `s1?_{tile}_{pol}_..`.

`{date:FORMAT}` is a strftime date (or date and time), `{tile}` the tile name (with or without
its leading `T`), any other `{name}` one or more characters other than `_` and `/`; `*` and `?`
are the usual wildcards. Fields match case-insensitively."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from geoclass import fs

_FIELD = re.compile(r"\{(\w+)(?::([^}]*))?\}")
_STRFTIME = {
    "Y": r"\d{4}", "y": r"\d{2}", "m": r"\d{2}", "d": r"\d{2}", "j": r"\d{3}", "H": r"\d{2}",
    "M": r"\d{2}", "S": r"\d{2}", "f": r"\d{1,6}", "b": r"[A-Za-z]{3}", "%": "%",
}


def _date_regex(fmt: str) -> str:
    out, i = [], 0
    while i < len(fmt):
        if fmt[i] == "%" and i + 1 < len(fmt):
            code = fmt[i + 1]
            if code not in _STRFTIME:
                raise ValueError(f"unsupported date directive %{code} in '{fmt}'")
            out.append(_STRFTIME[code])
            i += 2
        else:
            out.append(re.escape(fmt[i]))
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class Match:
    path: Path
    date: dt.datetime
    fields: dict[str, str]


class NamePattern:
    """A compiled file-name pattern; `fill` substitutes fields before matching."""

    def __init__(self, pattern: str, **fill: str):
        self.text = pattern
        self.date_format: str | None = None
        parts, last = [], 0
        for m in _FIELD.finditer(pattern):
            parts.append(self._literal(pattern[last:m.start()]))
            name, fmt = m.group(1), m.group(2)
            if name == "date":
                if not fmt:
                    raise ValueError(f"pattern '{pattern}': write the date as {{date:%Y%m%d}}")
                self.date_format = fmt
                parts.append(f"(?P<date>{_date_regex(fmt)})")
            elif name in fill:
                value = fill[name]
                alternatives = {value}
                if name == "tile" and value[:1] == "T":
                    alternatives.add(value[1:])
                parts.append(f"(?P<{name}>{'|'.join(map(re.escape, sorted(alternatives)))})")
            else:
                parts.append(f"(?P<{name}>[^_/]+?)")
            last = m.end()
        parts.append(self._literal(pattern[last:]))
        if self.date_format is None:
            raise ValueError(f"pattern '{pattern}' has no {{date:...}} field")
        self.regex = re.compile("^" + "".join(parts) + "$", re.IGNORECASE)

    @staticmethod
    def _literal(text: str) -> str:
        return re.escape(text).replace(r"\*", ".*").replace(r"\?", ".")

    @property
    def fields(self) -> set[str]:
        return set(self.regex.groupindex) - {"date"}

    def match(self, name: str) -> tuple[dt.datetime, dict[str, str]] | None:
        m = self.regex.match(name)
        if m is None:
            return None
        try:
            date = dt.datetime.strptime(m.group("date"), self.date_format)
        except ValueError:
            return None
        return date, {k: v for k, v in m.groupdict().items() if k != "date"}

    def undated(self, folder: Path) -> list[str]:
        """Files of `folder` whose name has this pattern's shape but whose date does not
        parse (e.g. 2018-13-45): left out by `find`, to be reported."""
        folder = fs.as_path(folder)
        names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        return [n for n in names if self.regex.match(n) and self.match(n) is None]

    def find(self, folder: Path) -> list[Match]:
        """Every file of `folder` that matches, sorted by date then name."""
        found = []
        folder = fs.as_path(folder)
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            if path.is_file() and (hit := self.match(path.name)):
                found.append(Match(path, *hit))
        return sorted(found, key=lambda m: (m.date, m.path.name))

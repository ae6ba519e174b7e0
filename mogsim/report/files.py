"""Reading a run folder's files for a report: every problem is one :class:`InputError` that names the file.

:class:`RunFiles` loads JSON and CSV files once, and hands out stored values as :class:`~.printed.Num` /
:class:`~.printed.StoredText` with their :class:`~.printed.Source`. Extra fields are ignored; a missing required
file or field, damaged JSON, or a CSV cell that should be a number and is not, is an :class:`InputError`.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from ..errors import InputError
from .printed import KEY, Num, Source, StoredText

_MISSING = object()


class RunFiles:
    """The files of one run folder, read on demand and cached."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._json: dict[str, Any] = {}
        self._csv: dict[str, list[dict[str, str]]] = {}
        self._header: dict[str, list[str]] = {}

    def path(self, name: str) -> Path:
        return self.folder / name

    def exists(self, name: str) -> bool:
        return self.path(name).is_file()

    def _require(self, name: str) -> Path:
        path = self.path(name)
        if not path.is_file():
            raise InputError(f"{path}: missing; the run folder is incomplete (re-run the experiment, or give a "
                             "finished run folder)")
        return path

    # -- whole files --------------------------------------------------------------------------------------------------
    def json(self, name: str) -> Any:
        """The parsed JSON file ``name`` (NaN and Infinity allowed, as Python writes them)."""
        if name not in self._json:
            path = self._require(name)
            try:
                self._json[name] = json.loads(path.read_text())
            except (OSError, UnicodeDecodeError) as exc:
                raise InputError(f"{path}: cannot read it ({exc})") from None
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}: damaged JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
                                 "restore it or re-run the experiment") from None
        return self._json[name]

    def csv(self, name: str, columns: tuple[str, ...] = ()) -> list[dict[str, str]]:
        """The rows of CSV file ``name`` as dicts of strings; ``columns`` must all be in its header."""
        if name not in self._csv:
            path = self._require(name)
            try:
                with open(path, newline="") as fh:
                    reader = csv.DictReader(fh)
                    rows = list(reader)
                    header = reader.fieldnames or []
            except (OSError, UnicodeDecodeError, csv.Error) as exc:
                raise InputError(f"{path}: damaged CSV ({exc}); restore it or re-run the experiment") from None
            for i, row in enumerate(rows):
                if None in row or any(v is None for v in row.values()):
                    raise InputError(f"{path}: damaged CSV (row {i + 2} has a different number of cells than the "
                                     "header); restore it or re-run the experiment")
            self._csv[name], self._header[name] = rows, list(header)
        missing = [c for c in columns if c not in self._header[name]]
        if missing:
            raise InputError(f"{self.path(name)}: damaged CSV (no column {', '.join(missing)}); restore it or re-run "
                             "the experiment")
        return self._csv[name]

    # -- values -------------------------------------------------------------------------------------------------------
    def get(self, name: str, *keys: Any, default: Any = _MISSING) -> Any:
        """The raw JSON value at ``keys``; without ``default`` a missing field is an InputError."""
        node = self.json(name)
        for i, key in enumerate(keys):
            try:
                node = node[key]
            except (KeyError, IndexError, TypeError):
                if default is not _MISSING:
                    return default
                where = ".".join(str(k) for k in keys[:i + 1])
                raise InputError(f"{self.path(name)}: no field {where}; the file is incomplete or from another "
                                 "mogsim version") from None
        return node

    def num(self, name: str, *keys: Any, style: str = "sig3", optional: bool = False) -> Num | None:
        """The stored number at ``keys`` of JSON file ``name``; None for null/NaN (and, if ``optional``, absent)."""
        value = self.get(name, *keys, default=None) if optional else self.get(name, *keys)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"{self.path(name)}: field {'.'.join(str(k) for k in keys)} is {value!r}, not a number")
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return Num(value, Source(self.path(name), tuple(keys)), style)

    def text(self, name: str, *keys: Any, optional: bool = False) -> StoredText | None:
        """The stored value at ``keys`` as text (strings verbatim; numbers and booleans as JSON writes them)."""
        value = self.get(name, *keys, default=None) if optional else self.get(name, *keys)
        if value is None:
            return None
        if not isinstance(value, str):
            value = json.dumps(value)
        return StoredText(value, Source(self.path(name), tuple(keys)))

    def key_text(self, name: str, *keys: Any) -> StoredText:
        """The last of ``keys`` as text: a JSON object's key (e.g. the rank in ``{"2": 200.3}``), checked to exist."""
        self.get(name, *keys)
        return StoredText(str(keys[-1]), Source(self.path(name), (*keys, KEY)))

    def cell(self, name: str, row: int, column: str, style: str = "sig3") -> Num | None:
        """The number in ``column`` of data row ``row`` (0-based) of CSV file ``name``; None if empty or NaN."""
        raw = self.csv(name, (column,))[row][column]
        if raw.strip() == "" or raw.strip().lower() in ("nan", "none"):
            return None
        try:
            value: float = int(raw) if raw.strip().lstrip("-").isdigit() else float(raw)
        except ValueError:
            raise InputError(f"{self.path(name)}: damaged CSV (row {row + 2}, column {column}: {raw!r} is not a "
                             "number); restore it or re-run the experiment") from None
        if not math.isfinite(value):
            return None
        return Num(value, Source(self.path(name), ("row", row, column)), style)

    def numeric_rows(self, name: str, columns: tuple[str, ...]) -> list[dict[str, Any]]:
        """The CSV rows with ``columns`` (those present) as floats (NaN where empty), for figures; a cell that is not a
        number is an InputError naming the file, row and column."""
        rows = self.csv(name)
        present = [c for c in columns if rows and c in rows[0]]
        out = []
        for i, row in enumerate(rows):
            converted: dict[str, Any] = dict(row)
            for c in present:
                num = self.cell(name, i, c)
                converted[c] = float("nan") if num is None else float(num.value)
            out.append(converted)
        return out

    def cell_text(self, name: str, row: int, column: str) -> StoredText:
        """The string in ``column`` of data row ``row`` of CSV file ``name``."""
        return StoredText(self.csv(name, (column,))[row][column], Source(self.path(name), ("row", row, column)))

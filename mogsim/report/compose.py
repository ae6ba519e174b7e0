"""Pieces that section modules share: key = value lists, ranges over seeds, provenance rows, stored claims."""

from __future__ import annotations

from typing import Any, Sequence

from .files import RunFiles
from .printed import Num, Printed, StoredText, join
from .sections import AGREES, Claim

DASH = "\u2014"


def value_text(files: RunFiles, name: str, *keys: Any, style: str = "sig4") -> str:
    """The stored value at ``keys`` as report text: a number, a string, a list or ``key = value`` pairs (integers
    as plain digits: in configurations they are sizes, steps and seeds)."""
    raw = files.get(name, *keys)
    if isinstance(raw, dict):
        return kv_list(files, name, *keys, style=style)
    if isinstance(raw, list):
        if not raw:
            return "none"
        if all(isinstance(v, (int, float, str)) and not isinstance(v, bool) for v in raw):
            return join([value_text(files, name, *keys, i, style=style) for i in range(len(raw))])
        return f"{files.text(name, *keys)}"
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        num = files.num(name, *keys, style="id" if isinstance(raw, int) else style)
        return f"{num}" if num is not None else DASH
    if raw is None:
        return DASH
    return f"{files.text(name, *keys)}"


def kv_list(files: RunFiles, name: str, *keys: Any, skip: Sequence[str] = (), style: str = "sig4") -> str:
    """``a = 1; b = x; c: (d = 2)`` for the JSON object at ``keys`` (keys in italics, nested objects in brackets)."""
    node = files.get(name, *keys)
    parts = []
    for k, v in node.items():
        if k in skip:
            continue
        key = files.key_text(name, *keys, k)
        if isinstance(v, dict) and v:
            parts.append(f"<i>{key}</i>: ({kv_list(files, name, *keys, k, style=style)})")
        else:
            parts.append(f"<i>{key}</i> = {value_text(files, name, *keys, k, style=style)}")
    return "; ".join(parts)


def span(nums: Sequence[Num | None], sep: str = "\u2013") -> str:
    """``lo–hi`` of stored values (the smallest and largest are printed, nothing is computed); one value alone;
    a dash when none."""
    present = [n for n in nums if n is not None]
    if not present:
        return DASH
    lo = min(present, key=lambda n: n.value)
    hi = max(present, key=lambda n: n.value)
    if lo.text() == hi.text():
        return f"{lo}"
    return f"{lo}{sep}{hi}"


def distinct(items: Sequence[StoredText]) -> list[StoredText]:
    """The first occurrence of each distinct stored string, in order."""
    seen: dict[str, StoredText] = {}
    for item in items:
        seen.setdefault(item.value, item)
    return list(seen.values())


def agreement(labels: Sequence[str], expected: str) -> str:
    """``yes`` when every stored label is ``expected``, ``partly`` when some are, ``no`` when none is."""
    hits = sum(label == expected for label in labels)
    return "yes" if labels and hits == len(labels) else "partly" if hits else "no"


def stored_claims(files: RunFiles, name: str, key: str = "paper_claims") -> list[Claim]:
    """Claims an experiment stored itself: a list of ``{"paper", "measured", "agrees", "basis"}`` under ``key``
    (printed verbatim; ``agrees`` must be one of :data:`~.sections.AGREES`)."""
    stored = files.get(name, key, default=None)
    if not stored:
        return []
    out = []
    for i, item in enumerate(stored):
        agrees = files.get(name, key, i, "agrees")
        if agrees not in AGREES:
            from ..errors import InputError

            raise InputError(f"{files.path(name)}: {key}[{i}].agrees is {agrees!r}; expected one of "
                             f"{', '.join(AGREES)}")
        basis = files.text(name, key, i, "basis", optional=True)
        out.append(Claim(f"{files.text(name, key, i, 'paper')}", f"{files.text(name, key, i, 'measured')}", agrees,
                         f"{basis}" if basis is not None else "stored by the experiment"))
    return out


def provenance_rows(files: RunFiles, name: str, *keys: Any, label: str = "",
                    same_as: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """Rows for a stored provenance record (``mogsim.provenance.provenance``): time, command, commit, versions,
    device, platform; extra fields too. Fields equal to those of ``same_as`` (an earlier record) are left out."""
    record = files.get(name, *keys, default=None)
    if not isinstance(record, dict):
        return []
    same_as = same_as or {}
    prefix = f"{label} " if label else ""
    names = {"created_utc": "created (UTC)", "command": "command", "git_commit": "git commit",
             "versions": "versions", "device": "device", "device_name": "device name", "platform": "platform"}
    rows = []
    for k in list(names) + [k for k in record if k not in names]:
        if k in record and (k not in same_as or same_as[k] != record[k]):
            rows.append((prefix + names.get(k, k.replace("_", " ")), value_text(files, name, *keys, k)))
    return rows


def words(items: Sequence[Printed | str], last: str = " and ") -> str:
    """``a, b and c``."""
    return join(items, ", ", last)

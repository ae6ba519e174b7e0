"""Checking and parsing of user-given values: whole numbers and finite numbers in a range, seed lists ("0-99",
"1,5,9") and integer grids ("16,32,...,4096").

One helper per idea, shared by the library, the command line and the plain scripts in ``scripts/`` (which must not
depend on ``mogsim.cli``). Every failure is an :class:`~mogsim.errors.InputError` whose one line names the argument
(``--dim`` for an option, ``n=`` for a Python argument) and says what to pass instead.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np

from .errors import InputError

#: Seeds are stored as int64 (``samples.npz``), so every seed must be below 2^63.
SEED_LIMIT = 2**63
#: Most seeds one seed list may name: 10^7 samples is far beyond any one run of mogsim on one machine.
MAX_SEEDS = 10**7
#: Most values an integer progression ("2,4,6,...,N") may expand to.
MAX_GRID = 10**6
#: Seed lists up to this length are written out in full in result files; longer ones as a range summary.
SEEDS_LISTED = 16


def _shown(name: str, value: Any) -> str:
    """``--dim 5`` for an option, ``n=5`` for a Python argument."""
    return f"{name} {value}" if name.startswith("-") else f"{name}={value!r}"


def whole_number(value: Any, name: str, *, lo: int = 0, hi: int | None = None, fix: str = "") -> int:
    """``value`` as an ``int`` if it is a whole number in ``[lo, hi]``; else an :class:`InputError` naming ``name``.

    Accepts ``int``, numpy integers and one-element integer tensors (anything with ``__index__``); refuses
    ``bool``, floats (even 8.0: a float where a count is meant is a mistake), strings and ``None``. ``fix`` is
    added to the message (e.g. what the bound protects).
    """
    span = f"{lo}..{hi}" if hi is not None else f">= {lo}"
    tail = f"; {fix}" if fix else ""
    if isinstance(value, (bool, np.bool_)):
        raise InputError(f"{_shown(name, value)} is not a whole number; pass an integer {span}{tail}")
    try:
        number = operator.index(value)
    except TypeError:
        raise InputError(f"{_shown(name, value)} is not a whole number; pass an integer {span}{tail}") from None
    if number < lo:
        raise InputError(f"{_shown(name, number)} is below {lo}; pass an integer {span}{tail}")
    if hi is not None and number > hi:
        raise InputError(f"{_shown(name, number)} is above {hi}; pass an integer {span}{tail}")
    return number


def finite_number(value: Any, name: str, *, lo: float | None = None, hi: float | None = None,
                  lo_open: bool = False, fix: str = "") -> float:
    """``value`` as a Python ``float`` if it is a finite real number in the range; else an :class:`InputError`.

    ``lo_open=True`` excludes ``lo`` itself (e.g. ``> 0``). Refuses NaN, infinities, ``bool`` and strings. The
    check is done in float64, so 1e-300 stays 1e-300.
    """
    if isinstance(value, (bool, np.bool_, str, bytes)):
        number = math.nan
    else:
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            number = math.nan
    low = "" if lo is None else (f"> {lo:g}" if lo_open else f">= {lo:g}")
    high = "" if hi is None else f"<= {hi:g}"
    span = " and ".join(s for s in (low, high) if s) or "finite"
    tail = f"; {fix}" if fix else ""
    if not math.isfinite(number):
        raise InputError(f"{_shown(name, value)} is not a finite number; pass a real number {span}{tail}")
    if lo is not None and (number < lo or (lo_open and number == lo)):
        raise InputError(f"{_shown(name, value)} is too small; pass a number {span}{tail}")
    if hi is not None and number > hi:
        raise InputError(f"{_shown(name, value)} is too large; pass a number {span}{tail}")
    return number


def parse_seeds(text: str, *, option: str = "--seeds") -> list[int]:
    """Parse ``"0-99"``, ``"1,5,9"`` or ``"0-9,100-109"`` into a list of distinct seeds in ``0..2^63-1``, in order.

    Sizes are checked before any list is built: at most :data:`MAX_SEEDS` seeds.
    """
    parts: list[tuple[int, int]] = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        try:
            if "-" in part[1:]:
                lo_s, hi_s = part.split("-", 1)
                lo, hi = int(lo_s), int(hi_s)
                if hi < lo:
                    raise ValueError
            else:
                lo = hi = int(part)
        except ValueError:
            raise InputError(f"{option} {text!r}: write seeds as 0-99 or 1,5,9 (non-negative integers)") from None
        if lo < 0 or hi >= SEED_LIMIT:
            raise InputError(f"{option} {text!r}: seeds must be whole numbers in 0..2^63-1")
        parts.append((lo, hi))
    if not parts:
        raise InputError(f"{option} is empty; give at least one seed, e.g. 0-99")
    count = sum(hi - lo + 1 for lo, hi in parts)
    if count > MAX_SEEDS:
        raise InputError(f"{option} {text!r} names {count:,} seeds; at most {MAX_SEEDS:,} per run, split the "
                         "seeds over several runs")
    seeds = [s for lo, hi in parts for s in range(lo, hi + 1)]
    if len(set(seeds)) != len(seeds):
        raise InputError(f"{option} {text!r}: a seed appears twice; each seed names one sample")
    return seeds


def seeds_record(spec: str, seeds: list[int]) -> dict[str, Any]:
    """A JSON-ready account of the seeds a run used, for result files.

    ``spec``: the seed list as the user wrote it ("0-63"); ``count``, ``first``, ``last``: its size and its first
    and last seed in sample order (sample i used seed ``values[i]``); ``values``: every seed, when there are at most
    :data:`SEEDS_LISTED` of them, else ``null`` (the full list is then in the run's ``.npz``, key ``seeds``).
    """
    return {"spec": str(spec), "count": len(seeds), "first": seeds[0], "last": seeds[-1],
            "values": list(seeds) if len(seeds) <= SEEDS_LISTED else None}


def parse_int_list(text: str, *, option: str) -> tuple[int, ...]:
    """Parse ``"2,4,6,8"``; ``"16,32,...,4096"`` (geometric: ratio of the first two); ``"2,4,6,...,16"`` (arithmetic
    when the first three have equal differences, geometric when equal ratios)."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    try:
        if "..." in parts:
            i = parts.index("...")
            head = [int(p) for p in parts[:i]]
            tail = [int(p) for p in parts[i + 1:]]
            if len(head) < 2 or len(tail) != 1:
                raise ValueError
            end = tail[0]
            a, b = head[-2], head[-1]
            arithmetic = len(head) >= 3 and head[-1] - head[-2] == head[-2] - head[-3]
            values = list(head)
            if arithmetic:
                step = b - a
                if step <= 0 or (end - b) // step > MAX_GRID:
                    raise ValueError
                values += range(b + step, end + 1, step)
            else:
                if a <= 0 or b % a or b // a < 2:
                    raise ValueError
                ratio = b // a
                while values[-1] * ratio <= end:
                    values.append(values[-1] * ratio)
            if values[-1] != end:
                raise ValueError
        else:
            values = [int(p) for p in parts]
    except ValueError:
        raise InputError(f"{option} {text!r}: write integers as 2,4,6,8 or a progression 16,32,...,4096") from None
    if not values:
        raise InputError(f"{option} is empty; give at least one integer")
    if min(values) < 1:
        raise InputError(f"{option} {text!r}: values must be >= 1")
    return tuple(values)

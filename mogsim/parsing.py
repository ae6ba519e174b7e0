"""Checking and parsing of user-given values: whole numbers and finite numbers in a range, seed lists ("0-99",
"1,5,9") and integer grids ("16,32,...,4096").

One helper per idea, shared by the library, the declared parameters of the config dataclasses
(:mod:`mogsim.params`), the command line and the plain scripts in ``scripts/`` (which must not depend on
``mogsim.cli``). Every failure is an :class:`~mogsim.errors.InputError` whose one line names the parameter
(``n=0: must be >= 1``) and says what to pass instead; the command line rewrites the name to its flag
(:func:`mogsim.params.to_flags`).
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
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


def _number_text(x: float) -> str:
    """Integers in full (2^63 - 1 stays exact), other numbers in ``%g`` form."""
    return str(x) if isinstance(x, int) else f"{x:g}"


@dataclass(frozen=True)
class Bounds:
    """The allowed range of a number: ``lo`` and ``hi`` (None: no bound), excluded when ``lo_open``/``hi_open``."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, x: float) -> bool:
        if self.lo is not None and (x < self.lo or (self.lo_open and x == self.lo)):
            return False
        return self.hi is None or not (x > self.hi or (self.hi_open and x == self.hi))

    def text(self) -> str:
        """``>= 1 and <= 48``, ``> 0``, or ``""`` when unbounded."""
        parts = []
        if self.lo is not None:
            parts.append(f"{'>' if self.lo_open else '>='} {_number_text(self.lo)}")
        if self.hi is not None:
            parts.append(f"{'<' if self.hi_open else '<='} {_number_text(self.hi)}")
        return " and ".join(parts)


def number_error(name: str, shown: Any, need: str, bounds: Bounds, fix: str = "") -> InputError:
    """The one message for a refused number: ``name=shown: need <range>; fix``, with ``name`` as its parameter.

    ``need`` is ``"pass a whole number"``, ``"pass a number"``, ``"pass a finite number"`` (the value is not one)
    or ``"must be"`` (it is one, outside ``bounds``).
    """
    words = " ".join(part for part in (need, bounds.text()) if part)
    tail = f"; {fix}" if fix else ""
    return InputError(f"{name}={shown!r}: {words}{tail}", parameter=name)


def whole_number(value: Any, name: str, *, lo: int | None = 0, hi: int | None = None, lo_open: bool = False,
                 hi_open: bool = False, fix: str = "", shown: Any = None) -> int:
    """``value`` as an ``int`` if it is a whole number in the range; else an :class:`InputError` naming ``name``.

    Accepts ``int``, numpy integers and one-element integer tensors (anything with ``__index__``); refuses
    ``bool``, floats (even 8.0: a float where a count is meant is a mistake), strings and ``None``. The range is
    ``lo..hi`` (``lo_open``/``hi_open`` exclude the ends); ``fix`` is added to the message (e.g. what the bound
    protects); ``shown`` is the value as the message shows it (default: ``value``).
    """
    bounds = Bounds(lo, hi, lo_open, hi_open)
    number = None
    if not isinstance(value, (bool, np.bool_)):
        try:
            number = operator.index(value)
        except TypeError:
            pass
    if number is None:
        raise number_error(name, value if shown is None else shown, "pass a whole number", bounds, fix)
    if number not in bounds:
        raise number_error(name, number if shown is None else shown, "must be", bounds, fix)
    return number


def finite_number(value: Any, name: str, *, lo: float | None = None, hi: float | None = None,
                  lo_open: bool = False, hi_open: bool = False, fix: str = "", shown: Any = None) -> float:
    """``value`` as a Python ``float`` if it is a finite real number in the range; else an :class:`InputError`.

    Refuses NaN, infinities, numbers too large for a float, ``bool`` and strings. The check is done in float64,
    so 1e-300 stays 1e-300. Range, ``fix`` and ``shown`` as for :func:`whole_number`.
    """
    bounds = Bounds(lo, hi, lo_open, hi_open)
    number = math.nan
    if not isinstance(value, (bool, np.bool_, str, bytes)):
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            pass
    if not math.isfinite(number):
        raise number_error(name, value if shown is None else shown, "pass a finite number", bounds, fix)
    if number not in bounds:
        raise number_error(name, number if shown is None else shown, "must be", bounds, fix)
    return number


def parse_seeds(text: str, *, option: str = "seeds") -> list[int]:
    """Parse ``"0-99"``, ``"1,5,9"`` or ``"0-9,100-109"`` into a list of distinct seeds in ``0..2^63-1``, in order.

    Sizes are checked before any list is built: at most :data:`MAX_SEEDS` seeds. Errors name the parameter
    ``option``.
    """
    shown = f"{option}={str(text)!r}"
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
            raise InputError(f"{shown}: write a seed list as 0-99 or 1,5,9 (non-negative integers, ranges low-high)",
                             parameter=option) from None
        if lo < 0 or hi >= SEED_LIMIT:
            raise InputError(f"{shown}: every seed must be a whole number in 0..2^63-1", parameter=option)
        parts.append((lo, hi))
    if not parts:
        raise InputError(f"{option} is empty; give at least one seed, e.g. 0-99", parameter=option)
    count = sum(hi - lo + 1 for lo, hi in parts)
    if count > MAX_SEEDS:
        raise InputError(f"{shown} names {count:,} samples; at most {MAX_SEEDS:,} per run, split the list over "
                         "several runs", parameter=option)
    seeds = [s for lo, hi in parts for s in range(lo, hi + 1)]
    if len(set(seeds)) != len(seeds):
        raise InputError(f"{shown}: a seed appears twice; each seed names one sample", parameter=option)
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

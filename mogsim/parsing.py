"""Parsing of list-valued options: seed lists ("0-99", "1,5,9") and integer grids ("16,32,...,4096").

Shared by the command line and the plain scripts in ``scripts/``, which must not depend on ``mogsim.cli``.
"""

from __future__ import annotations

from .errors import InputError


def parse_seeds(text: str, *, option: str = "--seeds") -> list[int]:
    """Parse ``"0-99"``, ``"1,5,9"`` or ``"0-9,100-109"`` into a list of distinct non-negative seeds, in order."""
    seeds: list[int] = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        try:
            if "-" in part[1:]:
                lo_s, hi_s = part.split("-", 1)
                lo, hi = int(lo_s), int(hi_s)
                if hi < lo:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise InputError(f"{option} {text!r}: write seeds as 0-99 or 1,5,9 (non-negative integers)") from None
    if not seeds:
        raise InputError(f"{option} is empty; give at least one seed, e.g. 0-99")
    if min(seeds) < 0:
        raise InputError(f"{option} {text!r}: seeds must be >= 0")
    if len(set(seeds)) != len(seeds):
        raise InputError(f"{option} {text!r}: a seed appears twice; each seed names one sample")
    return seeds


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
                if step <= 0:
                    raise ValueError
                while values[-1] + step <= end:
                    values.append(values[-1] + step)
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

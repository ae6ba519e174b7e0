"""Option parsing shared by the commands: seed lists and the like."""

from __future__ import annotations

from mogsim.errors import InputError


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

"""Paper 2's collapse (Wang et al., Fig. 5a): generalization against N_k / d, one curve per subspace dimension d.

From a sweep table alone (rows with ``rank`` = d, ``n`` = N, ``seed``, ``copy_fraction_net`` and
``on_subspace_fraction_net``), for a mixture of K components with N_k = N / K training points each:

* **GL** = 1 - the fraction of the net's samples that copy a training point (nearest / second-nearest training-point
  distance below the sweep's ``copy_ratio``, 1/3 by default): paper 2's generalizability with the nearest-neighbour
  copy rule in place of its similarity threshold;
* the **on-subspace fraction**: samples whose relative residual to the nearest true subspace is below the sweep's
  ``subspace_tol`` (0.1 by default);
* the **crossing**: per d, the N_k / d at which the seed-mean GL first reaches ``level`` (0.9), interpolated
  linearly in log(N_k / d) between that grid point and the one before (:func:`~.transitions.crossing`); "not
  reached" when no grid point reaches it, "below range" when the smallest already does. **Pooled**: the same on
  the mean over d (and seeds) of GL at each N_k / d; the collapse claim is that the per-d crossings agree with it.

**GL alone cannot tell generalization from not having learned**: an untrained net copies nothing (GL = 1) and
puts no sample on a subspace. Each curve therefore also reports the on-subspace fraction at the first grid point
where GL reaches the level (``on_subspace_where_reached``); the collapse claim is judged only where that is at
least 1/2 (:func:`mogsim.experiments.score_match.claims.collapse_claims`).

Rows of a training-time axis (with ``step``) give the same per evaluated step, so GL can be read against images
seen (``step * batch``). Everything is JSON-ready.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import InputError
from .transitions import Row, crossing, number

#: GL level whose crossing is reported (paper 2: GL reaches ~0.9 near N_k / d of 50-60)
GL_LEVEL = 0.9


def rule(level: float = GL_LEVEL) -> str:
    """The crossing rule in words (stored with every result)."""
    return (f"GL = 1 - copy_fraction_net (a sample copies when d1/d2 < the sweep's copy_ratio); per d, the seed-mean "
            f"GL against N_k / d = N / (K d); the crossing is the first N_k / d where GL >= {level:g}, interpolated "
            "linearly in log(N_k / d) from the grid point before; 'not_reached' when no grid point reaches it, "
            "'below_range' when the smallest already does; 'pooled' applies the rule to the mean over d and seeds "
            "at each N_k / d")


def _points(rows: Sequence[Row], components: int) -> list[dict[str, float]]:
    """One point per row with both numbers: d, N_k / d, seed, GL and the on-subspace fraction."""
    out = []
    for r in rows:
        d, n, copies = number(r.get("rank")), number(r.get("n")), number(r.get("copy_fraction_net"))
        if d is None or n is None or copies is None or d <= 0:
            continue
        subspace = number(r.get("on_subspace_fraction_net"))
        out.append({"d": int(d), "nk_over_d": n / (components * d), "seed": number(r.get("seed")) or 0.0,
                    "gl": 1.0 - copies, "on_subspace": np.nan if subspace is None else subspace})
    return out


def _curve(points: Sequence[Mapping[str, float]], level: float) -> dict[str, Any]:
    """Seed-mean GL and on-subspace fraction per N_k / d, and where GL reaches ``level``."""
    by_x: dict[float, list[Mapping[str, float]]] = defaultdict(list)
    for p in points:
        by_x[round(p["nk_over_d"], 9)].append(p)
    xs = sorted(by_x)
    gl = [float(np.mean([p["gl"] for p in by_x[x]])) for x in xs]
    sub = [float(np.nanmean([p["on_subspace"] for p in by_x[x]])) if any(np.isfinite(p["on_subspace"])
           for p in by_x[x]) else None for x in xs]
    found = crossing(xs, gl, level, "up")
    status = {"crossed": "crossed", "below_range": "below_range", "above_range": "not_reached"}.get(
        found["status"], found["status"])
    reached = next((i for i, g in enumerate(gl) if g >= level), None)
    return {"nk_over_d": xs, "gl": gl, "on_subspace": sub, "models": [len(by_x[x]) for x in xs],
            "crossing": found["n_star"], "status": status, "monotone": found["monotone"],
            "all_crossings": found["crossings"],
            "on_subspace_where_reached": None if reached is None else sub[reached]}


def collapse(rows: Sequence[Row], components: int, *, level: float = GL_LEVEL) -> dict[str, Any]:
    """GL and the on-subspace fraction against N_k / d per d and pooled over d, with the N_k / d where GL reaches
    ``level`` (see the module docstring); JSON-ready."""
    if not isinstance(components, (int, np.integer)) or isinstance(components, bool) or components < 1:
        raise InputError(f"components={components!r}: give K, a whole number >= 1", parameter="components")
    if not 0.0 < level < 1.0:
        raise InputError(f"level={level!r}: GL lies in [0, 1]; give a level strictly between 0 and 1",
                         parameter="level")
    points = _points(rows, int(components))
    by_d: dict[int, list[dict[str, float]]] = defaultdict(list)
    for p in points:
        by_d[p["d"]].append(p)
    per_d = {str(d): _curve(by_d[d], level) for d in sorted(by_d)}
    pooled = _curve(points, level) if points else None
    crossed = [c["crossing"] for c in per_d.values() if c["status"] == "crossed"]
    spread = (max(crossed) / min(crossed)) if len(crossed) >= 2 else None
    return {"level": level, "components": int(components), "per_d": per_d, "pooled": pooled,
            "crossing_ratio_max_over_min": spread, "rule": rule(level)}


def collapse_over_time(time_rows: Sequence[Row], components: int, batch: int, *, level: float = GL_LEVEL
                       ) -> list[dict[str, Any]]:
    """:func:`collapse` at every training step of a time axis (rows with ``step``), oldest first, each with the
    images seen per model (``step * batch``)."""
    by_step: dict[int, list[Row]] = defaultdict(list)
    for r in time_rows:
        step = number(r.get("step"))
        if step is not None:
            by_step[int(step)].append(r)
    return [{"step": step, "images_seen": step * int(batch), **collapse(by_step[step], components, level=level)}
            for step in sorted(by_step)]


def collapse_table(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The curves of a :func:`collapse` result as CSV rows: one per (d or "pooled", N_k / d)."""
    out = []
    curves = {**result["per_d"], **({"pooled": result["pooled"]} if result.get("pooled") else {})}
    for d, curve in curves.items():
        for i, x in enumerate(curve["nk_over_d"]):
            out.append({"d": d, "nk_over_d": x, "gl": curve["gl"][i], "on_subspace_fraction": curve["on_subspace"][i],
                        "models": curve["models"][i], "gl_crossing": curve["crossing"], "status": curve["status"]})
    return out

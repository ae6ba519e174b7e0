"""N*(r): the training-set size at which a seed-averaged measure crosses a level, with seed-bootstrap intervals and
a power-law fit ``N* ~ r^b``, from sweep tables alone.

A sweep table is a list of rows, one per trained model, each with ``rank``, ``n``, ``seed`` and measures (numbers or
the strings a CSV gives back). A :class:`Measure` turns a row into a number (or None when undefined) and says
whether it rises with N (``up``: RP against the true sampler, the position on training queries, the share of seeds
judged generalizing) or falls (``down``: copy fractions). No measure here selects its noise levels from the net's
own errors; that is what made the old generalization index (kept as :data:`OLD_INDEX` for comparison) unreliable.

**Crossing rule.** Per rank, the measure is averaged over the seeds of each N (missing values skipped); N* is the
first N at which the curve reaches the level (``>= level`` going up, ``<= level`` going down), interpolated
linearly in log N between that N and the one before. Status ``below_range``: the smallest N is already past the
level (N* < min N); ``above_range``: never reached (N* > max N). Every crossing is listed, and ``monotone`` is
False when the curve crosses more than once or starts past the level and comes back.

**Intervals.** A stratified seed bootstrap: each resample redraws, independently for every (rank, N), that cell's
seeds with replacement, recomputes the seed means and N*(r); the interval is the equal-tailed percentile interval
(order statistics, so an end may be ``below_range`` / ``above_range``, reported as None with a note). For the
exponent, each resample fits ``log N* = a + b log r`` by least squares over the ranks that crossed (at least two);
the share of resamples with a fit is reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ..errors import InputError

Row = Mapping[str, Any]


def number(value: Any) -> float | None:
    """A table entry as a float, or None for missing / empty / non-finite values (CSV strings accepted)."""
    if value is None or isinstance(value, bool):
        return None if value is None else float(value)
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


@dataclass(frozen=True)
class Measure:
    """A per-model number and the direction in which it moves from memorization to generalization."""

    name: str
    value: Callable[[Row], float | None]
    direction: str  # "up" or "down"
    description: str

    def __post_init__(self) -> None:
        if self.direction not in ("up", "down"):
            raise InputError(f"measure {self.name!r}: direction {self.direction!r}; use 'up' or 'down'")


def column(name: str, direction: str, description: str, key: str | None = None) -> Measure:
    """A measure read from one table column."""
    col = key or name
    return Measure(name, lambda row: number(row.get(col)), direction, description)


def _copy_excess(row: Row) -> float | None:
    net, chance = number(row.get("copy_fraction_net")), number(row.get("copy_fraction_true"))
    if net is None or chance is None or chance >= 1.0:
        return None
    return (net - chance) / (1.0 - chance)


def label_share(label: str = "generalizing", key: str = "verdict", direction: str = "up") -> Measure:
    """The share of seeds whose ``key`` column equals ``label``: a verdict as a 0/1 measure (``direction="down"``
    for a label that fades with N, e.g. memorizing). On a coarse N grid with seeds that agree, its N* is the
    geometric midpoint of the two N that bracket the change, and the bootstrap cannot resolve more than that."""
    return Measure(f"{key}_{label.replace(' ', '_')}",
                   lambda row: None if row.get(key) in (None, "") else float(row.get(key) == label), direction,
                   f"share of seeds whose {key} is {label!r}")


RP_TRUE = column("rp_net_true", "up", "RP(net, true-score sampler): fraction of shared seeds whose two samples are "
                 "within relative distance 1/3")
COPY_FRACTION = column("copy_fraction_net", "down", "fraction of the net's samples that copy a training point "
                       "(nearest/second-nearest distance ratio < 1/3)")
COPY_EXCESS = Measure("copy_excess_normalised", _copy_excess, "down",
                      "copies net of chance: (copy_net - copy_true_sampler) / (1 - copy_true_sampler)")
POSITION_TRAIN = column("position_train_fixed", "up", "mean position t between D_emp (0) and D_true (1) on noisy "
                        "training points at fixed EDM levels (see position_at_levels)")
OLD_INDEX = column("generalization_index", "up", "the old generalization index (mean position over levels selected "
                   "by the net's own errors); for comparison only")

#: The EDM-grid levels (18 steps) whose mean position on training queries gives ``position_train_fixed``.
FIXED_POSITION_SIGMAS = (0.0599, 0.1395, 0.2964)


def position_at_levels(per_sigma: Iterable[Row], sigmas: Sequence[float] = FIXED_POSITION_SIGMAS,
                       queries: str = "train", rel_tol: float = 0.01) -> dict[tuple[int, int, int], float]:
    """Per model (rank, n, seed): the mean position ``t`` over the per-sigma rows of ``queries`` at ``sigmas``
    (matched within ``rel_tol``). Models missing any level are left out."""
    found: dict[tuple[int, int, int], dict[int, float]] = {}
    for row in per_sigma:
        if row.get("queries") != queries:
            continue
        s, t = number(row.get("sigma")), number(row.get("position"))
        if s is None or t is None:
            continue
        for i, target in enumerate(sigmas):
            if abs(s - target) <= rel_tol * target:
                found.setdefault(_cell_key(row), {})[i] = t
    return {k: float(np.mean(list(v.values()))) for k, v in found.items() if len(v) == len(sigmas)}


def with_fixed_position(rows: Iterable[Row], per_sigma: Iterable[Row],
                        sigmas: Sequence[float] = FIXED_POSITION_SIGMAS) -> list[dict[str, Any]]:
    """The table rows with ``position_train_fixed`` added from the per-sigma table (None where unavailable)."""
    pos = position_at_levels(per_sigma, sigmas)
    return [{**row, "position_train_fixed": pos.get(_cell_key(row))} for row in rows]


def _cell_key(row: Row) -> tuple[int, int, int]:
    try:
        return int(float(row["rank"])), int(float(row["n"])), int(float(row["seed"]))
    except (KeyError, TypeError, ValueError):
        raise InputError(f"a table row lacks numeric rank, n and seed: {dict(row)!r}") from None


# -- crossings ---------------------------------------------------------------------------------------------------------
def crossing(ns: Sequence[float], values: Sequence[float], level: float = 0.5, direction: str = "up"
             ) -> dict[str, Any]:
    """Where the curve ``values`` over increasing ``ns`` first reaches ``level`` (see the module docstring)."""
    if len(ns) != len(values) or len(ns) == 0:
        return {"n_star": None, "status": "no_data", "crossings": [], "monotone": True}
    order = np.argsort(ns)
    x = np.log(np.asarray(ns, dtype=np.float64)[order])
    sign = 1.0 if direction == "up" else -1.0
    v = sign * (np.asarray(values, dtype=np.float64)[order] - level)  # >= 0: past the level
    crossings = []
    for i in range(1, len(v)):
        if (v[i - 1] < 0) != (v[i] < 0):
            frac = (0.0 - v[i - 1]) / (v[i] - v[i - 1])
            crossings.append(float(math.exp(x[i - 1] + frac * (x[i] - x[i - 1]))))
    past = v >= 0
    if past[0]:
        n_star, status = None, "below_range"
    elif not past.any():
        n_star, status = None, "above_range"
    else:
        first = int(np.argmax(past))
        frac = (0.0 - v[first - 1]) / (v[first] - v[first - 1])
        n_star, status = float(math.exp(x[first - 1] + frac * (x[first] - x[first - 1]))), "crossed"
    return {"n_star": n_star, "status": status, "crossings": crossings,
            "monotone": len(crossings) <= 1 and not past[0]}


def first_crossings(ns: Sequence[float], values: np.ndarray, level: float = 0.5, direction: str = "up"
                    ) -> np.ndarray:
    """:func:`crossing`'s N* for many curves at once: ``values`` (R, len(ns)) over increasing ``ns``; returns (R,)
    with -inf where a curve starts past the level (below the range) and +inf where it never reaches it."""
    x = np.log(np.asarray(ns, dtype=np.float64))
    v = (1.0 if direction == "up" else -1.0) * (np.asarray(values, dtype=np.float64) - level)
    past = v >= 0
    first = np.argmax(past, axis=1)
    out = np.full(v.shape[0], math.inf)
    out[past[:, 0]] = -math.inf
    inside = past.any(axis=1) & ~past[:, 0]
    rows, i = np.nonzero(inside)[0], first[inside]
    frac = (0.0 - v[rows, i - 1]) / (v[rows, i] - v[rows, i - 1])
    out[rows] = np.exp(x[i - 1] + frac * (x[i] - x[i - 1]))
    return out


def _cells(rows: Iterable[Row], measure: Measure) -> dict[int, dict[int, list[float]]]:
    """rank -> n -> the defined values of the measure over seeds."""
    cells: dict[int, dict[int, list[float]]] = {}
    for row in rows:
        rank, n, _ = _cell_key(row)
        value = measure.value(row)
        by_n = cells.setdefault(rank, {})
        by_n.setdefault(n, [])
        if value is not None:
            by_n[n].append(float(value))
    return cells


def _curve(by_n: Mapping[int, Sequence[float]]) -> tuple[list[int], list[float]]:
    ns = sorted(n for n, vals in by_n.items() if vals)
    return ns, [float(np.mean(by_n[n])) for n in ns]


def fit_power_law(points: Mapping[int, float | None]) -> dict[str, Any]:
    """Least-squares fit ``log y = a + b log x`` over the points ``{x: y}`` with a finite positive y (``N*(r)``
    against r, or an event step against N); b None with fewer than 2. ``used``: the x that entered."""
    pts = sorted((x, v) for x, v in points.items() if v is not None and v > 0)
    if len(pts) < 2:
        return {"b": None, "prefactor": None, "used": [x for x, _ in pts]}
    b, a = np.polyfit(np.log([x for x, _ in pts]), np.log([v for _, v in pts]), 1)
    return {"b": float(b), "prefactor": float(math.exp(a)), "used": [x for x, _ in pts]}


def interval(samples: Sequence[float], confidence: float) -> tuple[float, float]:
    """The equal-tailed percentile interval of bootstrap draws (order statistics: ends may be +-inf)."""
    arr = np.asarray(samples, dtype=np.float64)
    alpha = (1.0 - confidence) / 2.0
    return (float(np.quantile(arr, alpha, method="inverted_cdf")),
            float(np.quantile(arr, 1.0 - alpha, method="inverted_cdf")))


def bound(value: float, n_min: int, n_max: int) -> tuple[float | None, str | None]:
    """An interval end as a number, or None and a note when it lies outside the range ``n_min..n_max``."""
    if value == -math.inf:
        return None, f"below the N range (< {n_min})"
    if value == math.inf:
        return None, f"above the N range (> {n_max})"
    return value, None


def analyse_measure(rows: Sequence[Row], measure: Measure, *, level: float = 0.5, resamples: int = 2000,
                    seed: int = 0, confidence: float = 0.95) -> dict[str, Any]:
    """N*(r) of one measure with bootstrap intervals, and the fit ``N* ~ r^b`` with its interval (JSON-ready)."""
    if resamples < 1 or not 0 < confidence < 1:
        raise InputError(f"resamples={resamples}, confidence={confidence}; need resamples >= 1, 0 < confidence < 1")
    cells = _cells(rows, measure)
    rng = np.random.Generator(np.random.PCG64(int(seed)))
    per_rank: dict[str, Any] = {}
    boot: dict[int, np.ndarray] = {}
    point: dict[int, float | None] = {}
    for rank in sorted(cells):
        ns, curve = _curve(cells[rank])
        result = crossing(ns, curve, level, measure.direction)
        point[rank] = result["n_star"]
        seeds_per_n = [np.asarray(cells[rank][n]) for n in ns]
        means = np.stack([vals[rng.integers(0, len(vals), (resamples, len(vals)))].mean(axis=1)
                          for vals in seeds_per_n], axis=1) if ns else np.empty((resamples, 0))
        draws = first_crossings(ns, means, level, measure.direction) if ns else np.full(resamples, math.nan)
        boot[rank] = draws
        entry: dict[str, Any] = {**result, "curve": {str(n): c for n, c in zip(ns, curve)},
                                 "seeds_per_n": {str(n): len(cells[rank][n]) for n in ns}}
        if ns:
            lo, hi = interval(draws, confidence)
            entry["ci_low"], note_lo = bound(lo, ns[0], ns[-1])
            entry["ci_high"], note_hi = bound(hi, ns[0], ns[-1])
            entry["ci_note"] = "; ".join(x for x in (note_lo, note_hi) if x) or None
            entry["resamples_crossed"] = float(np.isfinite(draws).mean())
        per_rank[str(rank)] = entry
    fit = fit_power_law(point)
    slopes = []
    ranks = sorted(boot)
    for b in range(resamples):
        f = fit_power_law({r: (float(boot[r][b]) if math.isfinite(boot[r][b]) else None) for r in ranks})
        if f["b"] is not None:
            slopes.append(f["b"])
    if slopes:
        fit["ci_low"], fit["ci_high"] = interval(slopes, confidence)
    else:
        fit["ci_low"] = fit["ci_high"] = None
    fit["resamples_with_fit"] = len(slopes) / resamples
    return {"measure": measure.name, "description": measure.description, "direction": measure.direction,
            "level": level, "n_star": per_rank, "fit": fit}


DEFAULT_MEASURES = (RP_TRUE, COPY_FRACTION, COPY_EXCESS, POSITION_TRAIN)
#: The verdict as measures: the share of seeds judged generalizing (up) and memorizing (down).
VERDICT_MEASURES = (label_share("generalizing"), label_share("memorizing", direction="down"))


def analyse(rows: Sequence[Row], measures: Sequence[Measure] = DEFAULT_MEASURES, *, level: float = 0.5,
            resamples: int = 2000, seed: int = 0, confidence: float = 0.95) -> dict[str, Any]:
    """:func:`analyse_measure` for each measure, with the rules and settings (JSON-ready; stored numbers only)."""
    if not rows:
        raise InputError("the sweep table has no rows")
    return {
        "measures": {m.name: analyse_measure(rows, m, level=level, resamples=resamples, seed=seed,
                                             confidence=confidence) for m in measures},
        "settings": {"level": level, "resamples": resamples, "seed": seed, "confidence": confidence,
                     "bootstrap": "stratified: seeds redrawn with replacement independently in every (rank, N)"},
        "rule": ("N*(r): first N where the seed-averaged measure reaches the level (>= going up, <= going down), "
                 "log-linear interpolation between neighbouring N; below_range / above_range when the smallest N is "
                 "already past it / it is never reached. Intervals: equal-tailed percentiles of a stratified seed "
                 "bootstrap. b: least squares of log N* on log r over the ranks that crossed."),
    }

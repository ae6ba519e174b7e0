"""The training-time axis: at which step memorization sets in, and at which the net becomes accurate against
D_true, per (r, N); and how those steps grow with N (fits ``t* ~ N^a`` with seed-bootstrap intervals).

Input: the rows of ``sweep_time.csv`` (or a run's ``time.csv``), one per (width, rank, N, seed, step) with the
verdict's numbers at that step. An :class:`Event` is a per-row number, a level and a direction:

* ``memorization_onset``: kappa (copies net of chance) reaches 0.1 going up; ``memorization_majority``: reaches 0.5;
* ``accurate``: ``max(worst rel vs D_true on fresh, on training queries)`` drops to 0.2 (the verdict's accuracy
  bound) or below;
* ``generalizing``: the share of seeds whose label is "generalizing" reaches 1/2.

**Event step.** Per (width, rank, N) the number is averaged over seeds at each evaluated step and the event step is
where that curve first reaches the level, interpolated linearly in log(step) (:func:`~.transitions.crossing`);
``before_first`` when the first evaluated step is already past it, ``never`` when the budget ends first (censored:
counted, left out of the fits). Per seed the same rule gives each model's own step (``per_seed``).

**Fits.** Per (width, rank): least squares of log t* on log N over the N whose event happened inside the axis, with
the exponent's equal-tailed interval from a seed bootstrap (each resample redraws every (rank, N)'s seeds with
replacement, whole trajectories, and refits). Bonnaire et al. (NeurIPS 2025) expect an exponent near 1 for
memorization and near 0 for generalization-side events.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import InputError
from .transitions import bound, crossing, first_crossings, fit_power_law, interval, number

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Event:
    """A per-row number crossing a level along training time."""

    name: str
    value: Callable[[Row], float | None]
    level: float
    direction: str  # "up" or "down"
    description: str


def _max_rel_true(row: Row) -> float | None:
    fresh, train = number(row.get("worst_rel_true_fresh")), number(row.get("worst_rel_true_train"))
    return None if fresh is None or train is None else max(fresh, train)


def _kappa(row: Row) -> float | None:
    return number(row.get("kappa"))


def _generalizing(row: Row) -> float | None:
    label = row.get("verdict")
    return None if label in (None, "") else float(label == "generalizing")


EVENTS = (
    Event("memorization_onset", _kappa, 0.1, "up", "kappa (copies net of chance) reaches 0.1"),
    Event("memorization_majority", _kappa, 0.5, "up", "kappa reaches 0.5"),
    Event("accurate", _max_rel_true, 0.2, "down",
          "max(worst rel vs D_true, fresh and training queries) drops to 0.2 or below"),
    Event("generalizing", _generalizing, 0.5, "up", "at least half of the seeds are judged generalizing"),
)

RULE = ("event step: per (width, r, N) the seed-mean curve over the evaluated steps first reaches the level, "
        "interpolated linearly in log(step); before_first / never (censored, left out of fits) when the first step is "
        "already past it / the budget ends first. Fit: least squares of log t* on log N per (width, r); interval: "
        "equal-tailed percentiles of a seed bootstrap (whole trajectories redrawn per (r, N)).")


def _key(row: Row) -> tuple[int, int, int, int]:
    try:
        return (int(float(row.get("width") or 0)), int(float(row["rank"])), int(float(row["n"])),
                int(float(row["seed"])))
    except (KeyError, TypeError, ValueError):
        raise InputError(f"a time-axis row lacks numeric rank, n and seed: {dict(row)!r}") from None


def _trajectories(rows: Sequence[Row], event: Event) -> dict[tuple[int, int, int], dict[int, dict[int, float]]]:
    """(width, rank, N) -> seed -> step -> value (defined values only)."""
    out: dict[tuple[int, int, int], dict[int, dict[int, float]]] = {}
    for row in rows:
        width, rank, n, seed = _key(row)
        step = number(row.get("step"))
        value = event.value(row)
        seeds = out.setdefault((width, rank, n), {})
        seeds.setdefault(seed, {})
        if step is not None and value is not None:
            seeds[seed][int(step)] = float(value)
    return out


def _matrix(seeds: Sequence[Mapping[int, float]]) -> tuple[list[int], np.ndarray]:
    """The steps every given seed evaluated, and the values there (seeds x steps)."""
    steps = sorted(set.intersection(*(set(s) for s in seeds))) if seeds else []
    return steps, np.array([[s[t] for t in steps] for s in seeds], dtype=np.float64).reshape(len(seeds), len(steps))


def _event_step(steps: Sequence[int], values: Sequence[float], event: Event) -> tuple[float | None, str]:
    if len(steps) == 0:
        return None, "no_data"
    res = crossing(steps, values, event.level, event.direction)
    status = {"crossed": "crossed", "below_range": "before_first", "above_range": "never"}.get(res["status"], "no_data")
    return res["n_star"], status


def analyse_event(rows: Sequence[Row], event: Event, *, resamples: int = 2000, seed: int = 0,
                  confidence: float = 0.95) -> dict[str, Any]:
    """The event step per (width, r, N) (and per seed), and per (width, r) the fit ``t* ~ N^b`` with its interval."""
    traj = _trajectories(rows, event)
    rng = np.random.Generator(np.random.PCG64(int(seed)))
    cells: dict[str, Any] = {}
    point: dict[tuple[int, int], dict[int, float | None]] = {}
    draws: dict[tuple[int, int], dict[int, np.ndarray]] = {}
    for (width, rank, n), by_seed in sorted(traj.items()):
        steps, values = _matrix([by_seed[s] for s in sorted(by_seed) if by_seed[s]])
        step, status = _event_step(steps, values.mean(axis=0).tolist(), event)
        if steps:
            picked = rng.integers(0, values.shape[0], (resamples, values.shape[0]))
            boot = first_crossings(steps, values[picked].mean(axis=1), event.level, event.direction)
        else:
            boot = np.full(resamples, math.inf)
        per_seed = {}
        for s in sorted(by_seed):
            own_steps, own = _matrix([by_seed[s]]) if by_seed[s] else ([], np.empty((1, 0)))
            per_seed[str(s)] = dict(zip(("step", "status"), _event_step(own_steps, own[0].tolist(), event)))
        entry: dict[str, Any] = {"width": width, "rank": rank, "n": n, "step": step, "status": status,
                                 "per_seed": per_seed,
                                 "curve": {str(t): v for t, v in zip(steps, values.mean(axis=0).tolist())}}
        if steps:
            lo, hi = interval(boot, confidence)
            entry["ci_low"], note_lo = bound(lo, steps[0], steps[-1])
            entry["ci_high"], note_hi = bound(hi, steps[0], steps[-1])
            entry["ci_note"] = "; ".join(x for x in (note_lo, note_hi) if x) or None
        cells[f"{width}/{rank}/{n}"] = entry
        point.setdefault((width, rank), {})[n] = step
        draws.setdefault((width, rank), {})[n] = boot
    fits = {}
    for (width, rank), by_n in sorted(point.items()):
        fit = fit_power_law(by_n)
        statuses = [cells[f"{width}/{rank}/{n}"]["status"] for n in by_n]
        slopes = []
        for b in range(resamples):
            f = fit_power_law({n: (float(v[b]) if math.isfinite(v[b]) else None)
                               for n, v in draws[(width, rank)].items()})
            if f["b"] is not None:
                slopes.append(f["b"])
        fit["ci_low"], fit["ci_high"] = interval(slopes, confidence) if slopes else (None, None)
        fit["resamples_with_fit"] = len(slopes) / resamples
        fit["censored_never"] = statuses.count("never")
        fit["censored_before_first"] = statuses.count("before_first")
        fits[f"{width}/{rank}"] = {"width": width, "rank": rank, **fit}
    return {"event": event.name, "description": event.description, "level": event.level,
            "direction": event.direction, "cells": cells, "fits": fits}


def analyse_time(rows: Sequence[Row], events: Sequence[Event] = EVENTS, *, resamples: int = 2000, seed: int = 0,
                 confidence: float = 0.95) -> dict[str, Any]:
    """:func:`analyse_event` for each event, with the rule and settings (JSON-ready; stored numbers only)."""
    if not rows:
        raise InputError("the time-axis table has no rows")
    if resamples < 1 or not 0 < confidence < 1:
        raise InputError(f"resamples={resamples}, confidence={confidence}; need resamples >= 1, 0 < confidence < 1")
    return {"events": {e.name: analyse_event(rows, e, resamples=resamples, seed=seed, confidence=confidence)
                       for e in events},
            "settings": {"resamples": resamples, "seed": seed, "confidence": confidence},
            "rule": RULE}


def cell_events(rows: Sequence[Row], events: Sequence[Event] = EVENTS) -> dict[str, dict[str, Any]]:
    """One model's event steps from its own time rows (no bootstrap): ``{event: {"step", "status"}}``."""
    out = {}
    for event in events:
        by_step = {int(float(r["step"])): event.value(r) for r in rows if number(r.get("step")) is not None}
        steps = sorted(t for t, v in by_step.items() if v is not None)
        step, status = _event_step(steps, [float(by_step[t]) for t in steps], event)  # type: ignore[arg-type]
        out[event.name] = {"step": step, "status": status, "level": event.level}
    return out

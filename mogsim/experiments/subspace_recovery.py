"""Subspace recovery on noiseless MoLRG data: the phase transition at ``N_k = d`` (paper 2, Fig. 4).

Paper 2 (Wang et al., arXiv 2409.02426) proves that training its low-rank denoiser is PCA (K = 1, Theorem 1) or
K-subspace clustering (K > 1, hard-max weights and mutually orthogonal bases, Theorem 3), and that the true subspaces
are recovered exactly once every component has ``N_k >= d`` training points, d the intrinsic dimension (mogsim's
rank r): a sharp transition at ``N_k / d = 1``, independent of the ambient dimension n. Its Fig. 4 shows the success
rate over a grid of d and N_k (n = 48, K = 1, 2, 3).

A *cell* is (K, d, N_k); each cell runs ``trials`` independent problems: K mutually orthogonal d-dimensional
subspaces of R^n drawn as the authors do (:meth:`mogsim.MoLRG.random`) and exactly N_k noiseless points per
component. Every *method* estimates the K subspaces from the K N_k unlabelled points; the error of a trial is the
largest per-component distance ``||P_hat - P*||_F`` under the best pairing (:func:`mogsim.subspaces.matched_distance`),
and a trial *succeeds* when that error is at most ``threshold`` (default 0.1; our choice: the paper's numeric
criterion could not be recovered, and on noiseless data the estimators' errors are either ~1e-14 or of order 1, so any
threshold in between gives the same rates; an error of 0.1 is a principal angle of about 4 degrees).

Methods (:func:`make_methods`, names in :data:`METHOD_NAMES`; each applies to some K): ``pca`` (K = 1, Theorem 1), ``ksubspaces`` (K > 1, Theorem 3's
orthogonality constraint), ``ksubspaces-free`` (K > 1, the classic unconstrained algorithm; not in the default grid).
A trained network plugs in as one more :class:`Method` whose ``fit`` trains one member per trial of a cell (the
member axis of :class:`mogsim.nets.lowrank.LowRankDenoiser`) and returns the trained bases.

Reported (all stored in ``metrics.json``, nothing is computed at print time):

* per cell and method: success rate, median and mean error, and the *completion error*
  ``sqrt(2 m (1 - m / (n - N_k - (K - 1) d)))``, m = d - N_k, the RMS error of an estimate whose data directions are
  right and whose missing ``m`` directions are random (:func:`mogsim.subspaces.completion_error`; 0 for
  ``N_k >= d``): the scale the theorem predicts for the error, compared with the measured one;
* per method, K and d the *transition* ``N_k*``: the smallest N_k on the grid from which on every larger N_k has a
  success rate >= 1/2 (None when not reached), and ``N_k* / d``; and the agreement of the grid with the theorem
  (success rate >= 1/2 exactly where ``N_k >= d``).

Run folder ``<out>/subspace-recovery-<key>/`` (:class:`mogsim.runs.RunFolder`): ``config.json`` (resolved config,
seeds rule, provenance), ``trials.csv`` (one row per method and trial; rewritten atomically as cells finish, at
most every ``checkpoint_every_s`` seconds, and on Ctrl-C, errors and the time limit; the next call reuses its rows, so
a run resumes where it stopped), ``cells.csv``, ``metrics.json`` (written last: its presence means finished), ``phase.png`` and ``phase.pdf``.

Seeds: trial t of cell (K, d, N_k) uses subspaces seeded by (seed, n, K, d, t) and data seeded by
(seed, n, K, d, N_k, t); a method's own randomness by the data seed and the method's name, so every number depends on
its trial alone, not on the grid or on how the run was split.
"""

from __future__ import annotations

import math
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch

from ..closed_forms import MoLRG
from ..errors import InputError
from ..runs import RunFolder, config_key, read_csv, write_csv

RUN_KIND = "mogsim-subspace-recovery"
METRICS_FILE = "metrics.json"
from ..subspaces import completion_error, ksubspaces, matched_distance, pca

#: A trial succeeds when the largest per-component subspace distance is at most this (see the module notes).
SUCCESS_THRESHOLD = 0.1
#: A cell "recovers" when at least this fraction of its trials succeed (used for the transition).
RECOVERY_RATE = 0.5


# -- methods -------------------------------------------------------------------------------------------------------
class Method(Protocol):
    """An estimator of K subspaces from unlabelled points, run on all trials of one cell at once."""

    name: str

    def applies(self, components: int) -> bool:
        """Whether the method handles K = ``components``."""

    def fit(self, data: torch.Tensor, components: int, rank: int, seeds: Sequence[int]
            ) -> tuple[torch.Tensor, list[dict[str, Any]]]:
        """Estimate bases (T, K, n, d) from data (T, N, n) float64, one problem per trial (``seeds[t]`` seeds trial
        t); return them with one dict of extra per-trial numbers (JSON-ready) for ``trials.csv``."""

    def config(self) -> dict[str, Any]:
        """The settings that determine the method's results (part of the run's cache key)."""


@dataclass(frozen=True)
class PCAMethod:
    """Paper 2, Theorem 1: for K = 1 the low-rank denoiser's loss is minimised by PCA (:func:`mogsim.subspaces.pca`)."""

    name: str = "pca"

    def applies(self, components: int) -> bool:
        return components == 1

    def fit(self, data: torch.Tensor, components: int, rank: int, seeds: Sequence[int]
            ) -> tuple[torch.Tensor, list[dict[str, Any]]]:
        bases = pca(data, rank, seed=list(seeds))
        return bases[:, None], [{} for _ in seeds]

    def config(self) -> dict[str, Any]:
        return {"name": self.name}


@dataclass(frozen=True)
class KSubspacesMethod:
    """Paper 2, Theorem 3: for K > 1 (hard-max, orthogonal bases) the loss is minimised by K-subspace clustering
    (:func:`mogsim.subspaces.ksubspaces`; ``orthogonal=False`` is the classic unconstrained algorithm)."""

    name: str = "ksubspaces"
    orthogonal: bool = True
    restarts: int = 10
    max_iter: int = 100

    def applies(self, components: int) -> bool:
        return components > 1

    def fit(self, data: torch.Tensor, components: int, rank: int, seeds: Sequence[int]
            ) -> tuple[torch.Tensor, list[dict[str, Any]]]:
        res = ksubspaces(data, components, rank, restarts=self.restarts, max_iter=self.max_iter,
                         orthogonal=self.orthogonal, seed=list(seeds))
        extra = [{"residual": float(res.residual[t]), "iterations": int(res.iterations[t]),
                  "converged": bool(res.converged[t])} for t in range(len(seeds))]
        return res.bases, extra

    def config(self) -> dict[str, Any]:
        return asdict(self)


def make_methods(names: Sequence[str], *, restarts: int = 10, max_iter: int = 100) -> list[Method]:
    """The named methods (see :data:`METHOD_NAMES`) with the K-subspaces settings."""
    known: dict[str, Callable[[], Method]] = {
        "pca": PCAMethod,
        "ksubspaces": lambda: KSubspacesMethod("ksubspaces", True, restarts, max_iter),
        "ksubspaces-free": lambda: KSubspacesMethod("ksubspaces-free", False, restarts, max_iter),
    }
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise InputError(f"--methods {','.join(names)}: choose from {', '.join(known)}")
    if len(set(names)) != len(names):
        raise InputError(f"--methods {','.join(names)}: a method is listed twice")
    return [known[n]() for n in names]


#: The estimator methods this module provides (a trained denoiser is added as another :class:`Method`).
METHOD_NAMES = ("pca", "ksubspaces", "ksubspaces-free")


# -- configuration ---------------------------------------------------------------------------------------------------
def _int_tuple(values: Sequence[int], option: str) -> tuple[int, ...]:
    out = []
    for v in values:
        if isinstance(v, bool) or int(v) != v:
            raise InputError(f"{option} {list(values)}: pass integers")
        out.append(int(v))
    if not out:
        raise InputError(f"{option} is empty; give at least one value")
    if len(set(out)) != len(out):
        raise InputError(f"{option} {list(values)}: a value is listed twice")
    return tuple(out)


@dataclass(frozen=True)
class RecoveryConfig:
    """The grid and the rules of a subspace-recovery run (everything here is hashed into the run's key).

    ``dim`` n; ``components`` the K values; ``ranks`` the d values (the paper's intrinsic dimension, mogsim's r);
    ``per_component`` the N_k values; ``trials`` problems per cell; ``methods`` by name (each runs on the K it applies
    to); ``threshold`` the success threshold; ``restarts``, ``max_iter`` the K-subspaces settings; ``seed`` the
    master seed. The defaults are paper 2's Fig. 4 grid.
    """

    dim: int = 48
    components: tuple[int, ...] = (1, 2, 3)
    ranks: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)
    per_component: tuple[int, ...] = tuple(range(2, 16))
    trials: int = 20
    methods: tuple[str, ...] = ("pca", "ksubspaces")
    threshold: float = SUCCESS_THRESHOLD
    restarts: int = 10
    max_iter: int = 100
    seed: int = 0

    def check(self) -> None:
        """Raise :class:`InputError` naming the option and the fix for any value no run can use."""
        n = self.dim
        if isinstance(n, bool) or int(n) != n or n < 1:
            raise InputError(f"--dim {n}; pass the ambient dimension n, an integer >= 1")
        comps = _int_tuple(self.components, "--components")
        ranks = _int_tuple(self.ranks, "--ranks")
        nks = _int_tuple(self.per_component, "--nks")
        if min(comps) < 1:
            raise InputError(f"--components {list(comps)}: K must be >= 1")
        if min(ranks) < 1:
            raise InputError(f"--ranks {list(ranks)}: d must be >= 1")
        if max(ranks) > n:
            raise InputError(f"--ranks: d = {max(ranks)} exceeds --dim n = {n}; a subspace needs d <= n")
        if max(comps) * max(ranks) > n:
            raise InputError(f"--components, --ranks: K * d = {max(comps)} * {max(ranks)} = "
                             f"{max(comps) * max(ranks)} exceeds --dim n = {n}; mutually orthogonal subspaces need "
                             "K d <= n: lower K or d, or raise --dim")
        if min(nks) < 1:
            raise InputError(f"--nks {list(nks)}: every component needs N_k >= 1 points")
        for name, value in (("--trials", self.trials), ("--restarts", self.restarts), ("--max-iter", self.max_iter)):
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise InputError(f"{name} {value}; pass an integer >= 1")
        if not (isinstance(self.threshold, (int, float)) and math.isfinite(self.threshold) and self.threshold > 0):
            raise InputError(f"--threshold {self.threshold}; pass a positive subspace distance, e.g. 0.1")
        if isinstance(self.seed, bool) or int(self.seed) != self.seed or self.seed < 0:
            raise InputError(f"--seed {self.seed}; pass a non-negative integer")
        methods = self.make_methods()
        idle = [m.name for m in methods if not any(m.applies(k) for k in comps)]
        if idle:
            raise InputError(f"--methods {','.join(idle)}: not applicable to any K in --components {list(comps)} "
                             "(pca needs K = 1, ksubspaces K > 1)")

    def make_methods(self) -> list[Method]:
        return make_methods(list(self.methods), restarts=self.restarts, max_iter=self.max_iter)

    def cells(self) -> list[tuple[int, int, int]]:
        """Every (K, d, N_k), ordered by K, d, N_k."""
        return [(k, d, nk) for k in self.components for d in self.ranks for nk in self.per_component]

    def seed_for(self, *key: int) -> int:
        return int(np.random.SeedSequence([int(self.seed), *map(int, key)]).generate_state(1, np.uint32)[0])

    def resolved(self) -> dict[str, Any]:
        """JSON-ready description (cache key material)."""
        out = asdict(self)
        out.update(experiment="subspace-recovery", version=1,
                   method_configs=[m.config() for m in self.make_methods()],
                   seeds_rule="subspaces: SeedSequence(seed, 1, n, K, d, trial); data: SeedSequence(seed, 2, n, K, d, "
                              "N_k, trial); method: SeedSequence(data seed, crc32(method name))")
        return out

    def key(self) -> str:
        return config_key(self.resolved())

    def slug(self) -> str:
        return "subspace-recovery"


def make_trial(cfg: RecoveryConfig, components: int, rank: int, n_k: int, trial: int) -> tuple[MoLRG, torch.Tensor]:
    """The MoLRG of trial ``trial`` of cell (K, d, N_k) and its K N_k noiseless points (float64, balanced)."""
    mol = MoLRG.random(cfg.dim, components, rank, seed=cfg.seed_for(1, cfg.dim, components, rank, trial))
    data, _ = mol.sample(components * n_k, seed=cfg.seed_for(2, cfg.dim, components, rank, n_k, trial))
    return mol, data


def method_seed(data_seed: int, name: str) -> int:
    return int(np.random.SeedSequence([data_seed, zlib.crc32(name.encode())]).generate_state(1, np.uint32)[0])


# -- running -----------------------------------------------------------------------------------------------------------
#: ``progress(description, total)`` returns an ``advance(k)`` callable; None means silent.
ProgressFactory = Callable[[str, int], Callable[[int], None]]


def _silent(description: str, total: int) -> Callable[[int], None]:
    return lambda k: None


@dataclass
class RecoveryResult:
    """What :func:`run_subspace_recovery` returns: the run folder, its metrics (empty until complete), whether the
    run finished and whether it was reused."""

    path: Path
    metrics: dict[str, Any]
    complete: bool
    reused: bool
    trials_done: int = 0
    trials_total: int = 0
    timing: dict[str, float] = field(default_factory=dict)


def run_cell(cfg: RecoveryConfig, method: Method, components: int, rank: int, n_k: int) -> list[dict[str, Any]]:
    """All trials of one cell with one method: one ``trials.csv`` row per trial."""
    problems = [make_trial(cfg, components, rank, n_k, t) for t in range(cfg.trials)]
    data = torch.stack([p[1] for p in problems])
    seeds = [method_seed(cfg.seed_for(2, cfg.dim, components, rank, n_k, t), method.name) for t in range(cfg.trials)]
    bases, extras = method.fit(data, components, rank, seeds)
    rows = []
    for t, ((mol, _), extra) in enumerate(zip(problems, extras)):
        dist = matched_distance(bases[t], mol.bases)
        rows.append({"method": method.name, "components": components, "rank": rank, "per_component": n_k, "trial": t,
                     "error_max": dist.max, "error_mean": dist.mean,
                     "errors": " ".join(f"{e:.6g}" for e in dist.per_component),
                     "success": bool(dist.max <= cfg.threshold), **extra})
    return rows


def _uniform(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with one set of columns (methods report different extras; a missing value is written empty)."""
    columns: dict[str, None] = {}
    for r in rows:
        columns.update(dict.fromkeys(r))
    return [{c: r.get(c, "") for c in columns} for r in rows]


def _row_key(row: dict[str, Any]) -> tuple[str, int, int, int]:
    return (str(row["method"]), int(row["components"]), int(row["rank"]), int(row["per_component"]))


def run_subspace_recovery(cfg: RecoveryConfig, out: Any, *, progress: ProgressFactory = _silent,
                          deadline: float | None = None, checkpoint_every_s: float = 10.0) -> RecoveryResult:
    """Run (or resume, or reuse) the grid under ``out/subspace-recovery-<key>/`` and write its result files.

    ``deadline`` (a ``time.monotonic()`` value) stops cleanly after the current cell; the next call resumes.
    Estimators run in float64 on the CPU with one intra-op thread (the matrices are tiny; more threads only spin).
    """
    from ..provenance import provenance

    cfg.check()
    t_start = time.monotonic()
    folder = RunFolder.keyed(out, cfg.slug(), cfg.resolved(), kind=RUN_KIND)
    if folder.has(METRICS_FILE):
        metrics = folder.read_json(METRICS_FILE)
        return RecoveryResult(folder.path, metrics, True, True, metrics.get("trials_done", 0),
                              metrics.get("trials_done", 0))
    with folder.session({"config": cfg.resolved(), "provenance": provenance("cpu")}):
        return _run_grid(cfg, folder, progress, deadline, checkpoint_every_s, t_start)


def _run_grid(cfg: RecoveryConfig, folder: RunFolder, progress: ProgressFactory, deadline: float | None,
              checkpoint_every_s: float, t_start: float) -> RecoveryResult:
    """The trials still missing from ``trials.csv``, then the summary, the figure and ``metrics.json``."""
    from ..provenance import provenance

    trials_path = folder.file("trials.csv")
    rows: list[dict[str, Any]] = [dict(r) for r in read_csv(trials_path)] if trials_path.exists() else []
    done = {_row_key(r) for r in rows}
    methods = cfg.make_methods()
    todo = [(m, cell) for cell in cfg.cells() for m in methods if m.applies(cell[0])]
    total = len(todo) * cfg.trials
    advance = progress("subspace recovery", total)
    advance(sum(cfg.trials for m, c in todo if (m.name, *c) in done))
    complete, last_save, compute_s = True, time.monotonic(), 0.0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for method, (k, d, nk) in todo:
            if (method.name, k, d, nk) in done:
                continue
            if deadline is not None and time.monotonic() >= deadline:
                complete = False
                break
            t0 = time.monotonic()
            rows.extend(run_cell(cfg, method, k, d, nk))
            compute_s += time.monotonic() - t0
            done.add((method.name, k, d, nk))
            advance(cfg.trials)
            if time.monotonic() - last_save >= checkpoint_every_s:
                write_csv(trials_path, _uniform(rows))
                last_save = time.monotonic()
    finally:  # Ctrl-C or an error: keep every finished cell
        torch.set_num_threads(threads)
        write_csv(trials_path, _uniform(rows))
    timing = {"this_call_seconds": time.monotonic() - t_start, "compute_seconds_this_call": compute_s}
    if not complete:
        return RecoveryResult(folder.path, {}, False, False, len(rows), total, timing)
    metrics = summarize(cfg, rows)
    metrics.update(trials_done=len(rows), timing=timing, provenance=provenance("cpu"))
    write_csv(folder.file("cells.csv"), metrics["cells"])
    metrics["figures"] = draw_phase(folder.path, metrics)
    folder.write_json(METRICS_FILE, metrics)
    return RecoveryResult(folder.path, metrics, True, False, len(rows), total, timing)


# -- summarising ---------------------------------------------------------------------------------------------------------
def _truthy(v: Any) -> bool:
    return v is True or str(v).strip().lower() in ("true", "1")


def summarize(cfg: RecoveryConfig, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-cell statistics, transitions and the rules behind them, from the trial rows (as stored in trials.csv)."""
    groups: dict[tuple[str, int, int, int], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(_row_key(r), []).append(r)
    constrained = {m.name: bool(getattr(m, "orthogonal", False)) for m in cfg.make_methods()}
    cells = []
    for (name, k, d, nk), group in sorted(groups.items(), key=lambda kv: (cfg.methods.index(kv[0][0]), *kv[0][1:])):
        errors = np.array([float(r["error_max"]) for r in group])
        success = np.array([_truthy(r["success"]) for r in group])
        theory = completion_error(cfg.dim, d, nk, others=(k - 1) * d if constrained.get(name) else 0)
        cells.append({"method": name, "components": k, "rank": d, "per_component": nk, "ratio": nk / d,
                      "trials": len(group), "success_rate": float(success.mean()),
                      "error_median": float(np.median(errors)), "error_mean": float(errors.mean()),
                      "error_max": float(errors.max()), "completion_error": theory,
                      "theorem_predicts_recovery": nk >= d})
    transitions = []
    for name in cfg.methods:
        for k in cfg.components:
            for d in cfg.ranks:
                sub = sorted((c for c in cells if (c["method"], c["components"], c["rank"]) == (name, k, d)),
                             key=lambda c: c["per_component"])
                if not sub:
                    continue
                star = None
                for i, c in enumerate(sub):
                    if all(s["success_rate"] >= RECOVERY_RATE for s in sub[i:]):
                        star = c["per_component"]
                        break
                agree = sum((c["success_rate"] >= RECOVERY_RATE) == c["theorem_predicts_recovery"] for c in sub)
                transitions.append({"method": name, "components": k, "rank": d, "n_k_star": star,
                                    "ratio_star": (star / d) if star is not None else None,
                                    "cells": len(sub), "cells_agreeing_with_theorem": agree})
    summary = []
    for name in cfg.methods:
        for k in cfg.components:
            tr = [t for t in transitions if (t["method"], t["components"]) == (name, k)]
            if not tr:
                continue
            ratios = [t["ratio_star"] for t in tr if t["ratio_star"] is not None]
            below = [c for c in cells if (c["method"], c["components"]) == (name, k) and c["per_component"] < c["rank"]]
            summary.append({
                "method": name, "components": k,
                "ratio_star_by_rank": {str(t["rank"]): t["ratio_star"] for t in tr},
                "ratio_star_mean": float(np.mean(ratios)) if ratios else None,
                "ratio_star_min": min(ratios) if ratios else None, "ratio_star_max": max(ratios) if ratios else None,
                "cells_agreeing_with_theorem": sum(t["cells_agreeing_with_theorem"] for t in tr),
                "cells": sum(t["cells"] for t in tr),
                "error_over_completion_error_below_d": (
                    float(np.mean([c["error_mean"] / c["completion_error"] for c in below]))
                    if below else None),
            })
    return {
        "summary": summary,
        "transitions": transitions,
        "cells": cells,
        "rules": {
            "error": "largest per-component ||P_hat - P*||_F under the best pairing of estimated and true subspaces "
                     "(min over permutations of the sum of squared distances)",
            "success": f"a trial succeeds when its error <= {cfg.threshold:g}",
            "transition": f"N_k* = the smallest N_k of the grid from which on every larger N_k has success rate >= "
                          f"{RECOVERY_RATE:g}; ratio_star = N_k* / d; None when never reached",
            "theorem": "exact recovery iff N_k >= d (paper 2, Theorems 1-4, noiseless data); a cell agrees when its "
                       f"success rate >= {RECOVERY_RATE:g} exactly where N_k >= d",
            "completion_error": "sqrt(2 m (1 - m / (n - N_k - o))), m = d - N_k, o = (K - 1) d for methods with "
                                "mutually orthogonal bases (0 otherwise): the RMS error when the N_k data directions are right and "
                                "the other m are random; 0 for N_k >= d",
        },
        "config": cfg.resolved(),
    }


# -- figure --------------------------------------------------------------------------------------------------------------
def draw_phase(folder: Path, metrics: dict[str, Any]) -> str:
    """Write ``phase.png`` and ``phase.pdf`` (see :func:`phase_figure`) into ``folder``; returns a status line."""
    try:
        fig = phase_figure(metrics)
    except ImportError as exc:  # matplotlib missing on a bare machine: results stay, the figure can be drawn later
        return f"not drawn ({exc})"
    from ..io import atomic_path

    for suffix in ("png", "pdf"):
        with atomic_path(Path(folder) / f"phase.{suffix}") as tmp:
            fig.savefig(tmp, format=suffix, dpi=120)
    return "drawn"


def phase_figure(metrics: dict[str, Any]) -> Any:
    """Fig. 4-style figure, one column per (method, K): top, the success rate over (N_k, d) with the theorem's
    boundary N_k = d; bottom, the median error against N_k / d per d, with the completion error (dashed)."""
    from matplotlib.figure import Figure

    cfg = metrics["config"]
    cells = metrics["cells"]
    panels = [(s["method"], s["components"]) for s in metrics["summary"]]
    fig = Figure(figsize=(3.4 * len(panels) + 0.8, 7.2))
    fig.subplots_adjust(left=0.07, right=0.9, bottom=0.08, top=0.88, wspace=0.3, hspace=0.35)
    axes = fig.subplots(2, len(panels), squeeze=False)
    ranks, nks = list(cfg["ranks"]), list(cfg["per_component"])
    image = None
    for col, (name, k) in enumerate(panels):
        grid = np.full((len(ranks), len(nks)), np.nan)
        for c in cells:
            if (c["method"], c["components"]) == (name, k):
                grid[ranks.index(c["rank"]), nks.index(c["per_component"])] = c["success_rate"]
        ax = axes[0, col]
        image = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=1,
                          extent=(-0.5, len(nks) - 0.5, -0.5, len(ranks) - 0.5))
        xs, ys = [], []  # the boundary between N_k < d and N_k >= d, row by row
        for i, d in enumerate(ranks):
            x = float(np.interp(d - 0.5, nks, np.arange(len(nks))))
            xs += [x, x]
            ys += [i - 0.5, i + 0.5]
        ax.plot(xs, ys, color="w", lw=1.5, ls="--")
        ax.set_xticks(range(len(nks)), [str(v) for v in nks], fontsize=7)
        ax.set_yticks(range(len(ranks)), [str(v) for v in ranks], fontsize=7)
        ax.set_xlabel("N_k (points per component)")
        ax.set_ylabel("d (subspace dimension)")
        ax.set_title(f"{name}, K = {k}: success rate\n(dashed: theorem's boundary N_k = d)", fontsize=9)
        ax = axes[1, col]
        for i, d in enumerate(ranks):
            sub = sorted((c for c in cells if (c["method"], c["components"], c["rank"]) == (name, k, d)),
                         key=lambda c: c["per_component"])
            if not sub:
                continue
            ratio = [c["ratio"] for c in sub]
            ax.plot(ratio, [max(c["error_median"], 1e-16) for c in sub], "-o", ms=2.5, color=f"C{i}", label=f"d={d}")
            ax.plot(ratio, [max(c["completion_error"], 1e-16) for c in sub], "--", color=f"C{i}", lw=0.8)
        ax.axhline(cfg["threshold"], color="gray", ls=":", lw=0.8)
        ax.axvline(1.0, color="k", lw=0.6)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(1e-16, 10)
        ax.set_xlabel("N_k / d")
        ax.set_ylabel("median error ||P_hat - P*||_F (max over k)")
        ax.set_title("error vs N_k / d (dashed: completion error;\ndotted: success threshold)", fontsize=9)
        ax.legend(fontsize=6, ncol=2)
        ax.grid(True, which="both", alpha=0.3)
    if image is not None:
        fig.colorbar(image, ax=list(axes[0]), fraction=0.02, pad=0.02)
    fig.suptitle(f"Subspace recovery from noiseless MoLRG data (n = {cfg['dim']}, {cfg['trials']} trials per cell); "
                 "paper 2, Fig. 4", fontsize=10)
    return fig

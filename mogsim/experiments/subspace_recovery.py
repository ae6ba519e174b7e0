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
criterion could not be recovered, and on noiseless data the errors are either ~1e-14 (estimators) or ~1e-3 (trained
float32 networks) or of order 1, so any threshold in between gives the same rates; an error of 0.1 is a principal
angle of about 4 degrees).

Methods (:data:`METHOD_NAMES`; each applies to some K):

* estimators: ``pca`` (K = 1, Theorem 1), ``ksubspaces`` (K > 1, Theorem 3's orthogonality constraint),
  ``ksubspaces-free`` (K > 1, the classic unconstrained algorithm; not in the default list);
* trained networks: ``lowrank-net`` (:class:`mogsim.nets.lowrank.LowRankDenoiser` with the soft gate, the paper's
  network) and ``lowrank-net-hard`` (the hard-max gate of Theorems 3-4), trained with the denoising loss on mogsim's
  training engine (:class:`LowRankNetMethod`). Training costs far more than an estimator, so the trained methods run
  on their own, smaller grid (``net_components`` x ``net_ranks`` x ``net_nks``, ``net_trials`` per cell).

Reported (all stored in ``metrics.json``, nothing is computed at print time):

* per cell and method: success rate, median and mean error, and the *completion error*
  ``sqrt(2 m (1 - m / (n - N_k - o)))``, m = d - N_k, the RMS error of an estimate whose data directions are right and
  whose missing ``m`` directions are random (:func:`mogsim.subspaces.completion_error`; 0 for ``N_k >= d``): the scale
  the theorem predicts for the error below the transition, compared with the measured one;
* per method, K and d the *transition* ``N_k*``: the smallest N_k on the grid from which on every larger N_k has a
  success rate >= 1/2 (None when not reached), and ``N_k* / d``; the agreement of the grid with the theorem
  (success rate >= 1/2 exactly where ``N_k >= d``), and its label (yes: every cell agrees; partly: at least half do;
  no: fewer).

Run folder ``<out>/subspace-recovery-<key>/`` (:class:`mogsim.runs.RunFolder`): ``config.json`` (resolved config,
seeds rule, provenance), ``trials.csv`` (one row per method and trial; rewritten atomically as cells finish, at
most every ``checkpoint_every_s`` seconds, and on Ctrl-C, errors and the time limit; the next call reuses its rows, so
a run resumes where it stopped), ``cells.csv``, ``metrics.json`` (written last: its presence means finished),
``phase.png`` and ``phase.pdf``.

Seeds: trial t of cell (K, d, N_k) uses subspaces seeded by (seed, n, K, d, t) and data seeded by
(seed, n, K, d, N_k, t); a method's own randomness by the data seed and the method's name, so every estimator number
depends on its trial alone, not on the grid or on how the run was split. A trained method trains all trials and
starts of a cell as the members of one model, so its numbers depend on the cell's seeds and trial count (never on how
the run was split or resumed).
"""

from __future__ import annotations

import functools
import math
import time
import zlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch

from ..closed_forms import MoLRG
from ..denoiser import ProgressFactory
from ..errors import InputError
from ..params import check_params, param
from ..parsing import parse_int_list
from ..progress import silent
from ..runs import RunFolder, config_key, read_csv, write_csv
from ..seeds import derive_seed
from ..subspaces import completion_error, ksubspaces, matched_distance, pca
from .command_options import CommandResult

RUN_KIND = "mogsim-subspace-recovery"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.pdf"
#: A trial succeeds when the largest per-component subspace distance is at most this (see the module notes).
SUCCESS_THRESHOLD = 0.1
#: A cell "recovers" when at least this fraction of its trials succeed (used for the transition).
RECOVERY_RATE = 0.5
#: Noise draws per training point in a trained method's selection loss.
SELECTION_DRAWS = 16


# -- methods -------------------------------------------------------------------------------------------------------
class Method(Protocol):
    """An estimator of K subspaces from unlabelled points, run on all trials of one cell at once."""

    name: str
    #: True for trained networks, which run on the configuration's trained-method grid (``net_*``).
    trained: bool

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
    trained = False

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
    trained = False

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


@dataclass(frozen=True)
class LowRankNetMethod:
    """Paper 2's low-rank denoiser, trained with the denoising loss on mogsim's training engine.

    Every trial of a cell gets ``starts`` random initial bases (one for K = 1, where the loss is PCA's and has no
    spurious local minimum); all trials x starts train at once as the members of one
    :class:`~mogsim.nets.lowrank.LowRankDenoiser` (identity preconditioning, unweighted loss
    ``E||D(x0 + sigma eps; sigma) - x0||^2`` with ``ln sigma`` uniform on ``sigma_range``, Adam with the learning rate
    decaying to 0 along a cosine, the bases re-orthonormalised after every step). Each trial keeps the start with the
    least *selection loss*: the same loss at ``sigma_range[0]`` on all its training points, with noise shared by the
    trial's starts (no ground truth; at small sigma the loss is the K-subspace residual plus a constant). The bases
    are the trained weights themselves (the learning rate ends at 0, so no average is needed).
    """

    name: str = "lowrank-net"
    gate: str = "soft"
    components: tuple[int, ...] = (1, 2)
    starts: int = 8
    steps: int = 1000
    batch: int = 64
    lr: float = 0.03
    sigma_range: tuple[float, float] = (0.002, 0.1)
    trained = True

    def applies(self, components: int) -> bool:
        return components in self.components

    def starts_for(self, components: int) -> int:
        return 1 if components == 1 else self.starts

    def fit(self, data: torch.Tensor, components: int, rank: int, seeds: Sequence[int]
            ) -> tuple[torch.Tensor, list[dict[str, Any]]]:
        from ..nets import network_config
        from ..training import RuntimeOptions, TrainConfig, Trainer

        trials, points, n = data.shape
        starts = self.starts_for(components)
        init = [derive_seed(int(s), "start", j) for s in seeds for j in range(starts)]
        net = network_config("lowrank", (n,), components=components, rank=rank, gate=self.gate, members=len(init),
                             seed=init)
        config = TrainConfig(net=net, precond="identity", batch=self.batch, lr=self.lr, lr_warmup_images=0.0,
                             lr_decay_images=float(self.steps * self.batch), sigma_range=self.sigma_range,
                             ema_halflife_images=float(self.batch), ema_rampup_ratio=None,
                             seed=derive_seed("lowrank-net", *map(int, seeds)))
        sets = [data[t].float() for t in range(trials) for _ in range(starts)]
        trainer = Trainer(config, sets, runtime=RuntimeOptions(log_every=max(1, self.steps // 10),
                                                                checkpoint_every=0))
        summary = trainer.fit(self.steps)
        selection = self.selection_loss(trainer.net, data, seeds, starts).reshape(trials, starts)
        best = selection.argmin(dim=1)
        bases = trainer.net.bases().detach().to(torch.float64).reshape(trials, starts, components, n, rank)
        final = torch.tensor(summary["final_loss_per_member"], dtype=torch.float64).reshape(trials, starts)
        extra = [{"start": int(best[t]), "starts": starts, "selection_loss": float(selection[t, best[t]]),
                  "train_loss": float(final[t, best[t]])} for t in range(trials)]
        return bases[torch.arange(trials), best], extra

    def selection_loss(self, net: Any, data: torch.Tensor, seeds: Sequence[int], starts: int) -> torch.Tensor:
        """(T starts,) mean ``||D(x + s eps; s) - x||^2`` at ``s = sigma_range[0]`` over the trial's points and
        :data:`SELECTION_DRAWS` noise draws per point (seeded by the trial; float64)."""
        trials, points, n = data.shape
        level = float(self.sigma_range[0])
        eps = torch.stack([torch.randn(SELECTION_DRAWS * points, n, dtype=torch.float64,
                                       generator=torch.Generator().manual_seed(derive_seed(int(s), "selection")))
                           for s in seeds])
        clean = data.to(torch.float64).repeat(1, SELECTION_DRAWS, 1)
        noisy = (clean + level * eps).repeat_interleave(starts, dim=0)
        with torch.no_grad():
            out = net.denoise(noisy, torch.full(noisy.shape[:2], level, dtype=torch.float64))
        return (out - clean.repeat_interleave(starts, dim=0)).pow(2).sum(-1).mean(-1)

    def config(self) -> dict[str, Any]:
        return {**asdict(self), "selection": f"least loss at sigma = sigma_range[0] over {SELECTION_DRAWS} noise "
                                             "draws per training point, shared by a trial's starts",
                "starts_for_k1": 1}


#: Every method by name: the estimators, then the trained networks.
METHOD_NAMES = ("pca", "ksubspaces", "ksubspaces-free", "lowrank-net", "lowrank-net-hard")
#: The methods run when none are named (each where it applies).
DEFAULT_METHODS = ("pca", "ksubspaces", "lowrank-net")


# -- configuration ---------------------------------------------------------------------------------------------------
def _int_list(option: str) -> Callable[[str], tuple[int, ...]]:
    return functools.partial(parse_int_list, option=option)


@dataclass(frozen=True)
class RecoveryConfig:
    """The grid and the rules of a subspace-recovery run (everything here is hashed into the run's key).

    The estimators run on ``components`` x ``ranks`` x ``per_component`` with ``trials`` problems per cell; the
    trained methods on ``net_components`` x ``net_ranks`` x ``net_nks`` with ``net_trials`` (training costs more).
    The defaults are paper 2's Fig. 4 grid for the estimators, and for the trained network a grid that runs in about
    two minutes on one CPU core.
    """

    dim: int = param(48, "n: ambient dimension.", min=1, max=4096)
    components: tuple[int, ...] = param((1, 2, 3), "K values of the estimators: subspaces per problem.", min=1,
                                        max=64, parse=_int_list("--components"))
    ranks: tuple[int, ...] = param(tuple(range(2, 9)), "d values of the estimators: the dimension of each subspace "
                                   "(the paper's intrinsic dimension, mogsim's rank r), e.g. 2,...,8.", min=1, max=4096,
                                   parse=_int_list("--ranks"), shown="2,...,8")
    per_component: tuple[int, ...] = param(tuple(range(2, 16)), "N_k values of the estimators: noiseless training "
                                           "points per component, e.g. 2,...,15.", flag="--nks", min=1, max=10**5,
                                           parse=_int_list("--nks"), shown="2,...,15")
    trials: int = param(20, "Problems per (K, d, N_k) for the estimators.", min=1, max=10**5)
    methods: tuple[str, ...] | None = param(None, "Methods: " + ", ".join(METHOD_NAMES) + "; each runs on the K it "
                                            "applies to.", choices=METHOD_NAMES,
                                            shown=",".join(DEFAULT_METHODS) + " where they apply")
    threshold: float = param(SUCCESS_THRESHOLD, "Success: every component's ||P_hat - P*||_F <= this.",
                             positive=True, max=10.0)
    restarts: int = param(10, "K-subspaces restarts per problem.", min=1, max=10**4)
    max_iter: int = param(100, "K-subspaces steps per restart.", min=1, max=10**6)
    seed: int = param(0, "Master seed: subspaces, data, methods.", min=0, max=2**63 - 1)
    net_components: tuple[int, ...] = param((1, 2), "K values of the trained methods.", min=1, max=64,
                                            parse=_int_list("--net-components"))
    net_ranks: tuple[int, ...] = param((2, 4), "d values of the trained methods.", min=1, max=4096,
                                       parse=_int_list("--net-ranks"))
    net_nks: tuple[int, ...] = param((2, 3, 4, 5, 6, 8), "N_k values of the trained methods.", min=1, max=10**5,
                                     parse=_int_list("--net-nks"))
    net_trials: int = param(10, "Problems per cell for the trained methods.", min=1, max=10**5)
    net_starts: int = param(8, "Random starts per problem for K > 1 (the least selection loss is kept; K = 1 "
                            "needs one).", min=1, max=1024)
    net_steps: int = param(1000, "Adam steps of every trained network.", min=1, max=10**7)
    net_batch: int = param(64, "Batch size per network.", min=1, max=2**16)
    net_lr: float = param(0.03, "Adam learning rate, decayed to 0 along a cosine.", positive=True, max=10.0)
    net_sigma_min: float = param(0.002, "Training noise levels are log-uniform from this (also the level of the "
                                 "selection loss)...", positive=True, max=1e3)
    net_sigma_max: float = param(0.1, "...to this.", positive=True, max=1e3)

    def __post_init__(self) -> None:
        if self.methods is None:
            object.__setattr__(self, "methods", self.default_methods())
        self.check()

    def default_methods(self) -> tuple[str, ...]:
        """The default methods that apply to some K of their grid."""
        every = {m.name: m for m in make_methods(METHOD_NAMES, self)}
        return tuple(name for name in DEFAULT_METHODS if self.cells_for(every[name]))

    def check(self) -> None:
        """Raise :class:`InputError` naming the parameter and the fix for any value no run can use."""
        check_params(self)
        assert self.methods is not None
        n = self.dim
        for name in ("components", "ranks", "per_component", "methods", "net_components", "net_ranks", "net_nks"):
            values = getattr(self, name)
            if not values:
                raise InputError(f"{name} is empty; give at least one value", parameter=name)
            if len(set(values)) != len(values):
                raise InputError(f"{name}={','.join(map(str, values))}: a value is listed twice", parameter=name)
        kinds = {m.trained for m in make_methods(self.methods, self)}
        for ks, ds, prefix in ((self.components, self.ranks, ""), (self.net_components, self.net_ranks, "net_")):
            if (prefix == "net_") not in kinds:
                continue  # a grid no chosen method runs on
            if max(ds) > n:
                raise InputError(f"{prefix}ranks: d = {max(ds)} exceeds dim n = {n}; a subspace needs d <= n",
                                 parameter=(f"{prefix}ranks", "dim"))
            if max(ks) * max(ds) > n:
                raise InputError(f"{prefix}components * {prefix}ranks: K * d = {max(ks)} * {max(ds)} = "
                                 f"{max(ks) * max(ds)} exceeds dim n = {n}; mutually orthogonal subspaces need "
                                 "K d <= n: lower K or d, or raise dim",
                                 parameter=(f"{prefix}components", f"{prefix}ranks", "dim"))
        if self.net_sigma_min >= self.net_sigma_max:
            raise InputError(f"net_sigma_min={self.net_sigma_min} >= net_sigma_max={self.net_sigma_max}: the training "
                             "noise range needs min < max", parameter=("net_sigma_min", "net_sigma_max"))
        members = self.net_trials * self.net_starts
        if members > 100_000:
            raise InputError(f"net_trials * net_starts = {members} networks per cell; at most 100,000",
                             parameter=("net_trials", "net_starts"))
        idle = [m.name for m in self.make_methods() if not self.cells_for(m)]
        if idle:
            raise InputError(f"methods={','.join(idle)}: not applicable to any K of its grid (pca needs K = 1, "
                             "ksubspaces K > 1, lowrank-net a K of net_components)", parameter="methods")

    def make_methods(self) -> list[Method]:
        assert self.methods is not None
        return make_methods(self.methods, self)

    def cells_for(self, method: Method) -> list[tuple[int, int, int]]:
        """The (K, d, N_k) a method runs on, ordered by K, d, N_k."""
        grid = ((self.net_components, self.net_ranks, self.net_nks) if method.trained
                else (self.components, self.ranks, self.per_component))
        return [(k, d, nk) for k in grid[0] if method.applies(k) for d in grid[1] for nk in grid[2]]

    def trials_for(self, method: Method) -> int:
        return self.net_trials if method.trained else self.trials

    def seed_for(self, *key: int) -> int:
        return int(np.random.SeedSequence([int(self.seed), *map(int, key)]).generate_state(1, np.uint32)[0])

    def resolved(self) -> dict[str, Any]:
        """JSON-ready description (cache key material)."""
        out = asdict(self)
        out.update(experiment="subspace-recovery", version=2,
                   method_configs=[m.config() for m in self.make_methods()],
                   seeds_rule="subspaces: SeedSequence(seed, 1, n, K, d, trial); data: SeedSequence(seed, 2, n, K, d, "
                              "N_k, trial); method: SeedSequence(data seed, crc32(method name))")
        return out

    def key(self) -> str:
        return config_key(self.resolved())

    def slug(self) -> str:
        return "subspace-recovery"


def make_methods(names: Sequence[str], c: RecoveryConfig) -> list[Method]:
    """The named methods (see :data:`METHOD_NAMES`) with the settings of configuration ``c``."""
    trained = dict(components=tuple(c.net_components), starts=c.net_starts, steps=c.net_steps, batch=c.net_batch,
                   lr=c.net_lr, sigma_range=(c.net_sigma_min, c.net_sigma_max))
    known: dict[str, Callable[[], Method]] = {
        "pca": PCAMethod,
        "ksubspaces": lambda: KSubspacesMethod("ksubspaces", True, c.restarts, c.max_iter),
        "ksubspaces-free": lambda: KSubspacesMethod("ksubspaces-free", False, c.restarts, c.max_iter),
        "lowrank-net": lambda: LowRankNetMethod("lowrank-net", "soft", **trained),
        "lowrank-net-hard": lambda: LowRankNetMethod("lowrank-net-hard", "hard", **trained),
    }
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise InputError(f"methods={','.join(names)}: choose from {', '.join(known)}", parameter="methods")
    return [known[n]() for n in names]


def make_trial(cfg: RecoveryConfig, components: int, rank: int, n_k: int, trial: int) -> tuple[MoLRG, torch.Tensor]:
    """The MoLRG of trial ``trial`` of cell (K, d, N_k) and its K N_k noiseless points (float64, balanced)."""
    mol = MoLRG.random(cfg.dim, components, rank, seed=cfg.seed_for(1, cfg.dim, components, rank, trial))
    data, _ = mol.sample(components * n_k, seed=cfg.seed_for(2, cfg.dim, components, rank, n_k, trial))
    return mol, data


def method_seed(data_seed: int, name: str) -> int:
    return int(np.random.SeedSequence([data_seed, zlib.crc32(name.encode())]).generate_state(1, np.uint32)[0])


# -- running -----------------------------------------------------------------------------------------------------------
def run_cell(cfg: RecoveryConfig, method: Method, components: int, rank: int, n_k: int) -> list[dict[str, Any]]:
    """All trials of one cell with one method: one ``trials.csv`` row per trial."""
    trials = range(cfg.trials_for(method))
    problems = [make_trial(cfg, components, rank, n_k, t) for t in trials]
    data = torch.stack([p[1] for p in problems])
    seeds = [method_seed(cfg.seed_for(2, cfg.dim, components, rank, n_k, t), method.name) for t in trials]
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


def run_subspace_recovery(cfg: RecoveryConfig, out: Any, *, progress: ProgressFactory = silent,
                          deadline: float | None = None, checkpoint_every_s: float = 10.0,
                          report: bool = False) -> CommandResult:
    """Run (or resume, or reuse) the grid under ``out/subspace-recovery-<key>/`` and write its result files (with
    ``report``, also ``report.pdf`` through :func:`mogsim.report.write_report`).

    ``deadline`` (a ``time.monotonic()`` value) stops cleanly after the current cell; the next call resumes.
    Everything runs on the CPU with one intra-op thread (the matrices are tiny; more threads only spin): estimators
    in float64, trained networks in float32 (their selection loss and bases in float64).
    """
    from ..provenance import provenance

    cfg.check()
    t_start = time.monotonic()
    folder = RunFolder.keyed(out, cfg.slug(), cfg.resolved(), kind=RUN_KIND)
    if folder.has(METRICS_FILE):
        metrics = folder.read_json(METRICS_FILE)
        result = CommandResult(folder.path, metrics, True, True, metrics.get("trials_done", 0),
                               metrics.get("trials_done", 0), "trials")
    else:
        with folder.session({"config": cfg.resolved(), "provenance": provenance("cpu")}):
            result = _run_grid(cfg, folder, progress, deadline, checkpoint_every_s, t_start)
    if report and result.complete and not folder.has(REPORT_FILE):
        from ..report import write_report  # reportlab and matplotlib, only for reports

        write_report([folder.path], folder.file(REPORT_FILE))
    return result


def _run_grid(cfg: RecoveryConfig, folder: RunFolder, progress: ProgressFactory, deadline: float | None,
              checkpoint_every_s: float, t_start: float) -> CommandResult:
    """The trials still missing from ``trials.csv``, then the summary, the figure and ``metrics.json``."""
    from ..provenance import provenance

    trials_path = folder.file("trials.csv")
    rows: list[dict[str, Any]] = [dict(r) for r in read_csv(trials_path)] if trials_path.exists() else []
    done = {_row_key(r) for r in rows}
    todo = [(m, cell) for m in cfg.make_methods() for cell in cfg.cells_for(m)]
    total = sum(cfg.trials_for(m) for m, _ in todo)
    advance = progress("subspace recovery", total)
    advance(sum(cfg.trials_for(m) for m, c in todo if (m.name, *c) in done))
    complete, last_save = True, time.monotonic()
    compute_s = {m.name: 0.0 for m, _ in todo}
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
            compute_s[method.name] += time.monotonic() - t0
            done.add((method.name, k, d, nk))
            advance(cfg.trials_for(method))
            if time.monotonic() - last_save >= checkpoint_every_s:
                write_csv(trials_path, _uniform(rows))
                last_save = time.monotonic()
    finally:  # Ctrl-C or an error: keep every finished cell
        torch.set_num_threads(threads)
        write_csv(trials_path, _uniform(rows))
    timing = {"this_call_seconds": time.monotonic() - t_start, "compute_seconds_this_call": sum(compute_s.values()),
              "compute_seconds_this_call_by_method": compute_s}
    if not complete:
        return CommandResult(folder.path, {}, False, False, len(rows), total, "trials", timing)
    metrics = summarize(cfg, rows)
    metrics.update(trials_done=len(rows), timing=timing, provenance=provenance("cpu"))
    write_csv(folder.file("cells.csv"), metrics["cells"])
    metrics["figures"] = draw_phase(folder.path, metrics)
    folder.write_json(METRICS_FILE, metrics)
    return CommandResult(folder.path, metrics, True, False, len(rows), total, "trials", timing)


# -- summarising ---------------------------------------------------------------------------------------------------------
def _truthy(v: Any) -> bool:
    return v is True or str(v).strip().lower() in ("true", "1")


def summarize(cfg: RecoveryConfig, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-cell statistics, transitions and the rules behind them, from the trial rows (as stored in trials.csv)."""
    groups: dict[tuple[str, int, int, int], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(_row_key(r), []).append(r)
    methods = cfg.make_methods()
    constrained = {m.name: bool(getattr(m, "orthogonal", False)) for m in methods}
    cells = []
    order = [m.name for m in methods]
    for (name, k, d, nk), group in sorted(groups.items(), key=lambda kv: (order.index(kv[0][0]), *kv[0][1:])):
        errors = np.array([float(r["error_max"]) for r in group])
        success = np.array([_truthy(r["success"]) for r in group])
        theory = completion_error(cfg.dim, d, nk, others=(k - 1) * d if constrained.get(name) else 0)
        cells.append({"method": name, "components": k, "rank": d, "per_component": nk, "ratio": nk / d,
                      "trials": len(group), "success_rate": float(success.mean()),
                      "error_median": float(np.median(errors)), "error_mean": float(errors.mean()),
                      "error_max": float(errors.max()), "completion_error": theory,
                      "theorem_predicts_recovery": nk >= d})
    transitions = []
    grids = {m.name: sorted({(k, d) for k, d, _ in cfg.cells_for(m)}) for m in methods}
    for name in order:
        for k, d in grids[name]:
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
    for m in methods:
        for k in sorted({k for k, _ in grids[m.name]}):
            tr = [t for t in transitions if (t["method"], t["components"]) == (m.name, k)]
            if not tr:
                continue
            ratios = [t["ratio_star"] for t in tr if t["ratio_star"] is not None]
            below = [c for c in cells if (c["method"], c["components"]) == (m.name, k)
                     and c["per_component"] < c["rank"]]
            agreeing, total = sum(t["cells_agreeing_with_theorem"] for t in tr), sum(t["cells"] for t in tr)
            summary.append({
                "method": m.name, "components": k, "trained": m.trained, "trials": cfg.trials_for(m),
                "ratio_star_by_rank": {str(t["rank"]): t["ratio_star"] for t in tr},
                "ratio_star_mean": float(np.mean(ratios)) if ratios else None,
                "ratio_star_min": min(ratios) if ratios else None, "ratio_star_max": max(ratios) if ratios else None,
                "cells_agreeing_with_theorem": agreeing, "cells": total,
                "agreement": "yes" if agreeing == total else "partly" if 2 * agreeing >= total else "no",
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
            "agreement": "per method and K: yes when every cell agrees with the theorem, partly when at least half "
                         "do, no otherwise",
            "completion_error": "sqrt(2 m (1 - m / (n - N_k - o))), m = d - N_k, o = (K - 1) d for methods with "
                                "mutually orthogonal bases (0 otherwise): the RMS error when the N_k data directions are right and "
                                "the other m are random; 0 for N_k >= d",
        },
        "config": cfg.resolved(),
    }


# -- figure --------------------------------------------------------------------------------------------------------------
def phase_panels(metrics: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(method, K, trials) of every panel of the phase figure, from stored metrics."""
    return [(s["method"], int(s["components"]), int(s["trials"])) for s in metrics["summary"]]


def draw_phase(folder: Path, metrics: dict[str, Any]) -> str:
    """Write ``phase.png`` and ``phase.pdf`` (:func:`mogsim.report.figures.subspace_phase_figure`) into ``folder``;
    returns a status line."""
    try:
        from ..report.figures import subspace_phase_figure  # matplotlib, only when drawing
    except ImportError as exc:  # matplotlib missing on a bare machine: results stay, the figure can be drawn later
        return f"not drawn ({exc})"
    from ..io import atomic_path

    cfg = metrics["config"]
    fig = subspace_phase_figure(metrics["cells"], phase_panels(metrics), cfg["threshold"], cfg["dim"])
    for suffix in ("png", "pdf"):
        with atomic_path(Path(folder) / f"phase.{suffix}") as tmp:
            fig.savefig(tmp, format=suffix, dpi=150)
    return "drawn"

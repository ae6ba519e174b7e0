"""What determines a score-matching run (:class:`ScoreMatchConfig`) and a sweep of them (:class:`SweepConfig`):
declared parameters with their checks, the derived seeds, the budget, and the training recipe they give the engine.

Seeds: one master ``seed`` gives, through :func:`mogsim.seeds.derive_seed`, separate seeds for the subspaces, the
training set, the training (initial weights, data order, noise) and the evaluation queries, all recorded. The
subspaces depend on (seed, n, K, r) only and the training set on (seed, n, K, r, N) only, so a sweep cell and a
single run with the same values train on the same data. The sampler seeds are 0..S-1 for every run (shared noise).

Budget: ``steps`` Adam steps for every N (the default convention), or, with ``budget_per_sample`` B, the same
number of samples seen per training point: ``steps = ceil(B N / batch)`` (B epochs; the rule is recorded).
Training-time axis: the EMA weights are judged at ``eval_steps`` log-spaced steps up to the budget
(:meth:`ScoreMatchConfig.eval_schedule`), the intermediate ones only while their cost stays within
``eval_cost_cap`` of the training time.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Sequence

import numpy as np
import torch

from ...errors import InputError
from ...metrics.copies import COPY_RATIO
from ...metrics.reproducibility import RP_THRESHOLD
from ...nets import network_config
from ...params import check_params, param
from ...parsing import parse_int_list, parse_seeds
from ...runs import config_key
from ...seeds import derive_seed
from ...training import TrainConfig

ARCHS = ("mlp", "unet")
SOLVERS = ("heun", "euler")
#: default ``width`` per architecture: the MLP's hidden width, the UNet's ``model_channels`` (256 would be a
#: 50M-parameter UNet)
DEFAULT_WIDTH = {"mlp": 256, "unet": 64}
#: default ``group_size`` of a sweep per architecture (0 = every cell of a training recipe in one model): the MLP
#: batches all of them in its products; UNets run as a MemberList, one CUDA graph per member on its own stream, and
#: 8 of them keep an H200 busy (BENCHMARKS.md: 8 members ran 1.73x one captured model, 16 no faster) while a
#: stopped sweep loses at most one group of 8 to resume
DEFAULT_GROUP_SIZE = {"mlp": 0, "unet": 8}
#: A sample lies on a true subspace when min_k ||x - P_k x|| / ||x|| is below this.
SUBSPACE_TOL = 0.1
#: Default cap on the training-time axis's intermediate evaluations, as a fraction of the training time.
EVAL_COST_CAP = 0.25
#: EDM's EMA ramp-up: the half-life never exceeds this fraction of the samples seen so far.
EMA_RAMPUP = 0.05
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class ScoreMatchConfig:
    """Everything that determines one score-matching run (all of it is hashed into the run's cache key).

    Problem: ``rank`` r, ``num_train`` N (exactly N/K training points per component), ``components`` K, ``dim`` n.
    Network: ``arch`` (``mlp``: the MLP with ``width`` and ``depth`` hidden layers; ``unet``: DDPM++ ``VectorUNet``
    with ``model_channels = width``). Training: ``steps`` x ``batch`` (the budget, the same for every N), Adam
    ``lr`` with a linear warm-up over ``lr_warmup_frac`` of the steps, EMA half-life ``ema_halflife_frac`` of the
    steps, EDM's ``ln sigma ~ N(p_mean, p_std^2)``. Evaluation: ``eval_queries`` per level and query set on the EDM
    grid of ``sampler_steps`` levels, ``sample_seeds`` sampler seeds (``solver``), and the stated thresholds
    ``copy_ratio``, ``subspace_tol``, ``rp_threshold`` and the L_score band ``band_sigma_min..band_sigma_max``.
    """

    rank: int = param(4, "r: rank of every subspace.", min=1, max=4096)
    num_train: int = param(512, "N: training samples in total, exactly N/K per component.", flag="--n", min=1,
                           max=10**7)
    components: int = param(2, "K: subspaces.", min=1, max=4096)
    dim: int = param(48, "n: ambient dimension (48 = 3x4x4).", min=1, max=65536)
    arch: str = param("mlp", "mlp (the batched MLP) or unet (DDPM++ on (n/16)x4x4 images; meant for GPUs).",
                      choices=ARCHS)
    width: int | None = param(None, "MLP width / UNet model_channels.", min=1, max=8192,
                              shown="256 for mlp, 64 for unet")
    depth: int = param(3, "MLP hidden layers.", min=1, max=64)
    steps: int = param(3000, "Training budget: Adam steps, the same for every N (unless --budget-per-sample).", min=1,
                       max=10**8)
    budget_per_sample: float | None = param(None, "Budget that scales with N: samples seen per training point "
                                            "(epochs); steps = ceil(value * N / batch), replacing --steps.",
                                            positive=True, max=1e9, shown="off")
    batch: int = param(256, "Batch size.", min=1, max=2**20)
    lr: float = param(3e-3, "Adam learning rate.", positive=True, max=10.0)
    seed: int = param(0, "Master seed: subspaces, training set, training, evaluation queries.", min=0, max=MAX_SEED)
    lr_warmup_frac: float = param(0.05, "Learning-rate warm-up, as a fraction of the steps.", min=0.0, below=1.0)
    ema_halflife_frac: float = param(0.05, "EMA half-life, as a fraction of the steps (with EDM's ramp-up).",
                                     positive=True, max=1.0)
    p_mean: float = param(-1.2, "Training noise: mean of ln sigma (EDM).", min=-20.0, max=20.0)
    p_std: float = param(1.2, "Training noise: standard deviation of ln sigma (EDM).", positive=True, max=20.0)
    eval_queries: int = param(512, "Queries per noise level and query set (the verdict's levels and the EDM grid).",
                              min=16, max=10**6)
    sample_seeds: int = param(256, "Sampler seeds 0..S-1, shared by all models.", min=16, max=10**6)
    sampler_steps: int = param(18, "EDM noise levels of the evaluation grid and the sampler.", min=1, max=1000)
    solver: str = param("heun", "Sampler: heun or euler.", choices=SOLVERS)
    copy_ratio: float = param(COPY_RATIO, "A sample copies a training point when d1/d2 is below this.",
                              positive=True, max=1.0)
    subspace_tol: float = param(SUBSPACE_TOL, "A sample lies on a subspace when its relative residual is below this.",
                                positive=True, max=1.0)
    rp_threshold: float = param(RP_THRESHOLD, "Two samples from one seed reproduce each other when their relative "
                                "distance is below this.", positive=True, max=2.0)
    band_sigma_min: float = param(0.1, "Lower end of the L_score band.", positive=True, max=1e4)
    band_sigma_max: float = param(2.0, "Upper end of the L_score band.", positive=True, max=1e4)
    eval_steps: int = param(10, "Training-time axis: judge the EMA weights at this many log-spaced steps up to the "
                            "budget (the last one is the run's verdict; 1 = only at the end).", min=1, max=1000)
    eval_cost_cap: float = param(EVAL_COST_CAP, "Most time the intermediate evaluations may take, as a fraction of "
                                 "the training time; points beyond it are skipped and recorded.", min=0.0, max=1e6)

    def __post_init__(self) -> None:
        if self.width is None and self.arch in DEFAULT_WIDTH:
            object.__setattr__(self, "width", DEFAULT_WIDTH[self.arch])
        if isinstance(self.budget_per_sample, (int, float)) and not isinstance(self.budget_per_sample, bool) \
                and math.isfinite(self.budget_per_sample) and self.budget_per_sample > 0 \
                and isinstance(self.num_train, int) and isinstance(self.batch, int) and self.batch > 0:
            object.__setattr__(self, "steps", steps_for_budget(self.budget_per_sample, self.num_train, self.batch))
        self.check()

    def check(self) -> None:
        """Raise :class:`InputError` naming the parameter and the fix for any value no run can use."""
        check_params(self)
        k, r, n, big_n = self.components, self.rank, self.dim, self.num_train
        if k * r > n:
            raise InputError(f"components={k} * rank={r} = {k * r} exceeds dim={n}: K mutually orthogonal "
                             "r-dimensional subspaces need K r <= n; lower rank or components, or raise dim",
                             parameter=("rank", "components", "dim"))
        if big_n % k:
            raise InputError(f"num_train={big_n}: must be a multiple of components={k} (exactly N/K training points "
                             f"per component); pass {big_n - big_n % k or k} or {big_n - big_n % k + k}",
                             parameter="num_train")
        if self.arch == "unet" and n % 16:
            raise InputError(f"dim={n}: arch unet treats a sample as a (C, 4, 4) image and needs dim divisible by 16; "
                             "use dim 48 (3x4x4) or arch mlp", parameter=("dim", "arch"))
        if self.band_sigma_min > self.band_sigma_max:
            raise InputError(f"band_sigma_min={self.band_sigma_min} > band_sigma_max={self.band_sigma_max}: the "
                             "band needs min <= max", parameter=("band_sigma_min", "band_sigma_max"))

    # -- derived values ---------------------------------------------------------------------------------------------
    @property
    def sigma_data(self) -> float:
        """EDM's ``sigma_data``: the per-coordinate std of the MoLRG, ``sqrt(r / n)`` (E||x||^2 = r)."""
        return math.sqrt(self.rank / self.dim)

    def seeds(self) -> dict[str, int]:
        """The derived seeds, each from the master seed, the stream's name and what the stream depends on."""
        s, n, k, r, big_n = self.seed, self.dim, self.components, self.rank, self.num_train
        return {"subspaces": derive_seed(s, "subspaces", n, k, r),
                "training_set": derive_seed(s, "training-set", n, k, r, big_n),
                "training": derive_seed(s, "training", n, k, r, big_n),
                "fresh_queries": derive_seed(s, "fresh-queries", n, k, r),
                "fresh_query_noise": derive_seed(s, "fresh-query-noise", n, k, r),
                "train_query_noise": derive_seed(s, "train-query-noise", n, k, r, big_n)}

    def budget(self) -> dict[str, Any]:
        """The training budget in the units that move the transition, and the convention that set it."""
        seen = self.steps * self.batch
        return {"steps": self.steps, "batch": self.batch, "samples_seen": seen, "epochs": seen / self.num_train,
                "budget_per_sample": self.budget_per_sample, "convention": budget_convention(self.budget_per_sample)}

    def eval_schedule(self) -> list[int]:
        """The steps of the training-time axis: ``eval_steps`` points log-spaced from steps/1000 to the budget
        (rounded, duplicates merged); always ends at the budget."""
        return eval_schedule(self.steps, self.eval_steps)

    def resolved(self, device: torch.device) -> dict[str, Any]:
        """The JSON-ready resolved configuration (cache key material): fields, derived values, device type."""
        return {**asdict(self), "sigma_data": self.sigma_data, "derived_seeds": self.seeds(),
                "budget": self.budget(), "device_type": device.type, "experiment": "score-match", "version": 3}

    def key(self, device: torch.device) -> str:
        """Hash of the resolved configuration: the run's cache key."""
        return config_key(self.resolved(device))

    def slug(self) -> str:
        """A readable folder-name prefix."""
        return (f"r{self.rank}_N{self.num_train}_K{self.components}_d{self.dim}_{self.arch}{self.width}_"
                f"s{self.steps}_seed{self.seed}")


def steps_for_budget(per_sample: float, num_train: int, batch: int) -> int:
    """Adam steps for ``per_sample`` samples seen per training point: ``ceil(per_sample * N / batch)``."""
    return max(1, math.ceil(per_sample * num_train / batch - 1e-9))


def budget_convention(per_sample: float | None) -> str:
    """The budget rule in words (recorded with every result)."""
    if per_sample is None:
        return "fixed steps for every N (epochs = steps * batch / N)"
    return f"steps scale with N: steps = ceil({per_sample:g} * N / batch), {per_sample:g} epochs for every N"


def eval_schedule(steps: int, points: int) -> list[int]:
    """``points`` steps log-spaced from ``max(1, steps / 1000)`` to ``steps``, rounded to whole steps, duplicates
    merged, the last one exactly ``steps``."""
    if points <= 1 or steps <= 1:
        return [steps]
    grid = np.geomspace(max(1.0, steps / 1000.0), steps, points)
    return sorted({int(round(float(v))) for v in grid[:-1]} | {steps})


def training_config(cfgs: Sequence[ScoreMatchConfig]) -> TrainConfig:
    """The engine's recipe for training ``cfgs`` as the members of one model (a batched MLP, or a MemberList of
    UNets): EDM preconditioning and loss with each member's ``sigma_data``, warm-up and EMA half-life resolved to
    samples."""
    first = cfgs[0]
    shared = ("arch", "dim", "width", "depth", "steps", "batch", "lr", "lr_warmup_frac", "ema_halflife_frac",
              "p_mean", "p_std")
    if any(getattr(c, f) != getattr(first, f) for c in cfgs for f in shared):
        raise InputError(f"cfgs: members trained together must share {', '.join(shared)}", parameter="cfgs")
    if first.arch == "mlp":
        net = network_config("mlp", (first.dim,), width=first.width, depth=first.depth, members=len(cfgs))
    else:  # a MemberList of M UNets; one member is the plain UNet (its config records no member count, as before)
        net = network_config("unet-vector", (first.dim,), image_shape=(first.dim // 16, 4, 4),
                             model_channels=first.width, members=len(cfgs) if len(cfgs) > 1 else None)
    seeds = [c.seeds()["training"] for c in cfgs]
    samples = first.steps * first.batch
    return TrainConfig(net=net, precond="edm", sigma_data=tuple(c.sigma_data for c in cfgs), batch=first.batch,
                       lr=first.lr, lr_warmup_images=first.lr_warmup_frac * samples,
                       ema_halflife_images=first.ema_halflife_frac * samples, ema_rampup_ratio=EMA_RAMPUP,
                       seed=seeds[0] if len(seeds) == 1 else derive_seed("members", *seeds),
                       p_mean=first.p_mean, p_std=first.p_std)


def _parse_train_sizes(text: str) -> tuple[int, ...]:
    return parse_int_list(text, option="train_sizes")


def _parse_ranks(text: str) -> tuple[int, ...]:
    return parse_int_list(text, option="ranks")


def _parse_widths(text: str) -> tuple[int, ...]:
    return parse_int_list(text, option="widths")


def _parse_seeds(text: str) -> tuple[int, ...]:
    return tuple(parse_seeds(text, option="seeds"))


#: the sweep's default N values
DEFAULT_TRAIN_SIZES = tuple(2**k for k in range(4, 13))


def _parse_nk_over_d(text: str) -> tuple[int, ...]:
    return parse_int_list(text, option="nk_over_d")


@dataclass(frozen=True)
class SweepConfig:
    """A grid of cells (width, rank, N, seed) over a base configuration, trained ``group_size`` cells at a time as
    the members of one model (0 = all cells that share a training recipe at once; by default all for the MLP and
    8 for the UNet, :data:`DEFAULT_GROUP_SIZE`). Cells share a model only when they share width and steps.

    The N axis is either ``train_sizes`` (the same N for every rank) or ``nk_over_d`` (paper 2's axis: N_k / d
    training points per component per dimension of its subspace, so rank r trains N = K * value * r)."""

    base: ScoreMatchConfig = ScoreMatchConfig()
    ranks: tuple[int, ...] = param((2, 4, 6, 8), "Sweep ranks r, e.g. 2,4,6,8.", min=1, max=4096, parse=_parse_ranks)
    train_sizes: tuple[int, ...] = param(DEFAULT_TRAIN_SIZES, "Sweep N values, e.g. 16,32,...,4096.",
                                         flag="--ns", min=1, max=10**7, parse=_parse_train_sizes)
    nk_over_d: tuple[int, ...] | None = param(None, "Sweep N per rank instead of --ns: values of N_k / d (paper 2; d "
                                              "is the rank r), e.g. 4,8,...,128; rank r trains N = K * value * r.",
                                              flag="--nk-over-d", min=1, max=10**7, parse=_parse_nk_over_d,
                                              shown="off (--ns)")
    seeds: tuple[int, ...] = param((0,), "Sweep seeds, e.g. 0-2.", min=0, max=MAX_SEED, parse=_parse_seeds)
    widths: tuple[int, ...] | None = param(None, "Sweep widths (MLP width / UNet channels), e.g. 128,256.", min=1,
                                           max=8192, parse=_parse_widths, shown="--width only")
    group_size: int | None = param(None, "Models per training group (one model of M members); 0 = all cells of a "
                                   "training recipe at once.", min=0, max=10**6, shown="all for mlp, 8 for unet")

    def __post_init__(self) -> None:
        if self.group_size is None:
            object.__setattr__(self, "group_size", DEFAULT_GROUP_SIZE.get(self.base.arch, 0))
        self.check()

    def check(self) -> None:
        """Raise :class:`InputError` for an unusable grid (every cell is checked too)."""
        check_params(self)
        if self.nk_over_d is not None and self.train_sizes != DEFAULT_TRAIN_SIZES:
            raise InputError("train_sizes and nk_over_d: give one N axis (N values for every rank, or N_k / d per "
                             "rank)", parameter=("train_sizes", "nk_over_d"))
        for name in ("ranks", "train_sizes", "nk_over_d", "seeds", "widths"):
            values = getattr(self, name)
            if values is None and name in ("widths", "nk_over_d"):
                continue
            if not values:
                raise InputError(f"{name}: give at least one value", parameter=name)
            if len(set(values)) != len(values):
                raise InputError(f"{name}={','.join(map(str, values))}: a value appears twice; give distinct values",
                                 parameter=name)
        sizes = len(self.nk_over_d if self.nk_over_d is not None else self.train_sizes)
        count = len(self.width_values()) * len(self.ranks) * sizes * len(self.seeds)
        if count > 100_000:
            raise InputError(f"widths x ranks x train_sizes x seeds = {count} cells; a sweep takes at most 100,000",
                             parameter=("ranks", "train_sizes", "seeds"))
        for cell in self.cells():
            cell.check()

    def width_values(self) -> tuple[int, ...]:
        """The widths of the grid (the base width when no width axis is given)."""
        return self.widths if self.widths is not None else (int(self.base.width),)

    def sizes_for(self, rank: int) -> tuple[int, ...]:
        """The N values of rank ``rank``: ``train_sizes``, or K * (N_k / d) * r for each ``nk_over_d`` value."""
        if self.nk_over_d is None:
            return self.train_sizes
        return tuple(self.base.components * v * rank for v in self.nk_over_d)

    def cells(self) -> list[ScoreMatchConfig]:
        """Every (width, rank, N, seed) configuration, ordered by width, rank, N, then seed."""
        return [replace(self.base, width=w, rank=r, num_train=n, seed=s)
                for w in self.width_values() for r in self.ranks for n in self.sizes_for(r) for s in self.seeds]

    def groups(self) -> list[list[ScoreMatchConfig]]:
        """The cells split into training groups (one model each): cells of one recipe (width, steps), in cell order,
        ``group_size`` at a time (all of them for 0)."""
        recipes: dict[tuple[int, int], list[ScoreMatchConfig]] = {}
        for c in self.cells():
            recipes.setdefault((int(c.width), c.steps), []).append(c)
        out = []
        for members in recipes.values():
            size = self.group_size or len(members)
            out += [members[i:i + size] for i in range(0, len(members), size)]
        return out

    def resolved(self, device: torch.device) -> dict[str, Any]:
        """JSON-ready description (cache key material; ``nk_over_d`` only when set, so that earlier sweeps keep
        their keys)."""
        base = {k: v for k, v in asdict(self.base).items() if k not in ("rank", "num_train", "seed")}
        if self.widths is not None:
            base.pop("width")
        if self.nk_over_d is None:
            sizes, per_rank = list(self.train_sizes), {}
        else:  # every N of the grid, for readers of train_sizes
            sizes = sorted({n for r in self.ranks for n in self.sizes_for(r)})
            per_rank = {"nk_over_d": list(self.nk_over_d)}
        return {"base": base, "ranks": list(self.ranks), "train_sizes": sizes, **per_rank,
                "seeds": list(self.seeds), "widths": list(self.width_values()), "group_size": self.group_size,
                "device_type": device.type, "experiment": "score-match-sweep", "version": 3}

    def slug(self) -> str:
        b = self.base
        width = f"{b.width}" if self.widths is None else "w" + "-".join(map(str, self.widths))
        budget = f"s{b.steps}" if b.budget_per_sample is None else f"bps{b.budget_per_sample:g}"
        return f"sweep_K{b.components}_d{b.dim}_{b.arch}{width}_{budget}"


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/M"`` -> (i, M) with 0 <= i < M: this process trains every M-th training group, starting at i."""
    parts = text.split("/") if isinstance(text, str) else []
    try:
        index, count = (int(p) for p in parts)
    except ValueError:
        index, count = -1, 0
    if len(parts) != 2 or count < 1 or not 0 <= index < count:
        raise InputError(f"shard={text!r}: write i/M with 0 <= i < M, e.g. 0/4 for the first of 4 processes",
                         parameter="shard")
    return index, count

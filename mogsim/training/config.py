"""What defines a training run (:class:`TrainConfig`) and how it is executed (:class:`RuntimeOptions`).

Two runs with equal ``TrainConfig``, data and seed follow the same trajectory (bitwise on CPU; on a GPU up to the
nondeterminism of its kernels), whatever their budget: the budget only says where to stop, so a finished run
can be extended. ``precision`` belongs to the mathematics (fp32, tf32 or bf16 autocast); ``RuntimeOptions`` change
speed, not the mathematics (``torch.compile``, CUDA graphs and ``channels_last`` may change rounding, which is why
they are recorded too). Every field is a declared parameter
(:mod:`mogsim.params`): checked on construction, and the source of the command line's options and defaults.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from ..params import check_params, param
from ..progress import MODES
from .losses import PRECONDS

_HUGE = 1e15
#: arithmetic of a run: float32 (no TF32), float32 with TF32 matrix units, or bf16 autocast (float32 weights)
PRECISIONS = ("fp32", "tf32", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of a run. ``net`` is a :func:`mogsim.nets.network_config` record (for M members, an MLP
    config with ``members=M``).

    Defaults: the authors' recipe (Adam, lr 1e-3, batch 128, EMA half-life 0.5 Mimg with EDM's 5% ramp-up),
    except the learning-rate warm-up (0.2 Mimg instead of EDM's 10 Mimg, which exceeds our budgets), dropout and
    augmentation (off; the authors used 0.13 and p = 0.12) and gradient clipping (off, as EDM).
    """

    net: dict[str, Any]
    precond: str = param("vp", "Preconditioning and its loss: vp (the paper), edm, or identity (nets that are "
                         "denoisers by construction).", choices=PRECONDS)
    sigma_data: tuple[float, ...] = param((0.5,), "EDM's data standard deviation: one value, or one per member.",
                                          positive=True, max=_HUGE)
    batch: int = param(128, "Global batch size (split over processes).", min=1, max=2**20)
    lr: float = param(1e-3, "Adam learning rate (the authors': 1e-3).", positive=True, max=10.0)
    lr_warmup_images: float = param(200_000, "Linear learning-rate warm-up length in images (EDM: 10M, too long for "
                                    "small budgets; 0 = none).", min=0.0, max=_HUGE)
    adam_betas: tuple[float, ...] = param((0.9, 0.999), "Adam's beta1, beta2.", min=0.0, below=1.0, cli=False)
    adam_eps: float = param(1e-8, "Adam's epsilon.", positive=True, max=1.0, cli=False)
    ema_halflife_images: float = param(500_000, "EMA half-life in images.", positive=True, max=_HUGE)
    ema_rampup_ratio: float | None = param(0.05, "The EMA half-life is at most this fraction of the images seen (EDM); "
                                    "0 or None = off.", min=0.0, max=_HUGE)
    grad_clip: float = param(0.0, "Clip each member's gradient norm to this (0 = off).", min=0.0, max=_HUGE)
    xflip: bool = param(False, "Random horizontal flips (augmentation).")
    seed: int = param(0, "Seed of initialisation, data order, noise and dropout.", min=0, max=2**63 - 1)
    precision: str = param("fp32", "Arithmetic: fp32 (float32, TF32 off), tf32 (float32 with TF32 matrix units) or "
                           "bf16 (bfloat16 autocast, float32 weights and optimizer).", choices=PRECISIONS,
                           shown="bf16 on CUDA, fp32 on CPU")
    p_mean: float = param(-1.2, "EDM and identity losses: mean of ln sigma.", min=-20.0, max=20.0, cli=False)
    p_std: float = param(1.2, "EDM and identity losses: standard deviation of ln sigma.", positive=True, max=20.0,
                         cli=False)
    sigma_range: tuple[float, ...] | None = param(None, "Identity loss: draw ln sigma uniformly between these two "
                                                  "noise levels instead of EDM's log-normal.", positive=True,
                                                  max=_HUGE, cli=False)
    lr_decay_images: float = param(0.0, "Cosine decay of the learning rate to 0 over this many images (0 = none).",
                                   min=0.0, max=_HUGE, cli=False)

    def __post_init__(self) -> None:
        for name in ("sigma_data", "adam_betas", "sigma_range"):  # one number, or a list from JSON, as a tuple
            value = getattr(self, name)
            if isinstance(value, (int, float, list)):
                object.__setattr__(self, name, tuple(value) if isinstance(value, list) else (float(value),))
        check_params(self)

    @property
    def members(self) -> int:
        """M, the number of independent models trained at once (the net config's ``members``)."""
        return int(self.net.get("kwargs", {}).get("members", 1))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["adam_betas"], d["sigma_data"] = list(self.adam_betas), list(self.sigma_data)
        if self.sigma_range is not None:
            d["sigma_range"] = list(self.sigma_range)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; also reads records of mogsim versions that had ``bf16``/``tf32`` flags."""
        d = dict(d)
        if "bf16" in d or "tf32" in d:
            bf16, tf32 = bool(d.pop("bf16", False)), bool(d.pop("tf32", False))
            d.setdefault("precision", "bf16" if bf16 else "tf32" if tf32 else "fp32")
        return cls(**d)

    def lr_at(self, step: int) -> float:
        """Learning rate of 0-based step ``step``: linear warm-up over ``lr_warmup_images``, then constant, times
        ``(1 + cos(pi t)) / 2`` with t = images seen / ``lr_decay_images`` (capped at 1) when that is set."""
        lr = self.lr
        if self.lr_warmup_images > 0:
            lr *= min(1.0, (step + 1) * self.batch / self.lr_warmup_images)
        if self.lr_decay_images > 0:
            lr *= 0.5 * (1.0 + math.cos(math.pi * min(1.0, step * self.batch / self.lr_decay_images)))
        return lr


@dataclass(frozen=True)
class RuntimeOptions:
    """Execution choices: compilation, CUDA graph capture, memory layout, checkpoint and log cadence, progress.

    ``compile`` and ``cuda_graph`` left at None mean "the fastest for this run" (:mod:`mogsim.training.execution`
    states the rule and the trainer records what it chose).
    """

    compile: bool | None = param(None, "torch.compile the network.",
                                 shown="auto: on CUDA when the run is long enough to repay the warm-up, see README")
    cuda_graph: bool | None = param(None, "Capture the whole training step in one CUDA graph (CUDA only).",
                                    shown="on for CUDA in a single process")
    channels_last: bool = param(False, "channels_last memory format (it slowed unet-64 by 6-11% on an H100 and 20% "
                                "captured on an H200, see BENCHMARKS.md).")
    checkpoint_every: int = param(2000, "Checkpoint every this many steps (and at the end; 0 = only at the end).",
                                  min=0, max=10**12)
    keep_checkpoints: int = param(2, "Keep the newest K checkpoints (0 = all).", min=0, max=10**6)
    log_every: int = param(100, "Log row (log.csv, progress) every this many steps.", min=1, max=10**12)
    progress: str = param("auto", "Progress display of train_run: auto (bars on a terminal, lines otherwise), "
                          "rich, plain or none.", choices=MODES, cli=False)

    def __post_init__(self) -> None:
        check_params(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

"""What defines a training run (:class:`TrainConfig`) and how it is executed (:class:`RuntimeOptions`).

Two runs with equal ``TrainConfig``, data and seed follow the same trajectory (bitwise on CPU; on a GPU up to the
nondeterminism of its kernels), whatever their budget: the budget only says where to stop, so a finished run
can be extended. ``RuntimeOptions`` change speed, not the mathematics (``torch.compile`` and ``channels_last``
may change rounding, which is why they are recorded too).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..errors import InputError
from ..nets.precond import PRECONDS


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of a run. ``net`` is a :func:`mogsim.nets.network_config` record.

    Defaults: the authors' recipe (Adam, lr 1e-3, batch 128, EMA half-life 0.5 Mimg with EDM's 5% ramp-up),
    except the learning-rate warm-up (0.2 Mimg instead of EDM's 10 Mimg, which exceeds our budgets), dropout and
    augmentation (off; the authors used 0.13 and p = 0.12) and gradient clipping (off, as EDM).
    """

    net: dict[str, Any]
    precond: str = "vp"
    sigma_data: float = 0.5
    batch: int = 128
    lr: float = 1e-3
    lr_warmup_images: int = 200_000
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    ema_halflife_images: float = 500_000
    ema_rampup_ratio: float | None = 0.05
    grad_clip: float = 0.0
    xflip: bool = False
    seed: int = 0
    bf16: bool = False
    tf32: bool = False

    def __post_init__(self) -> None:
        if self.precond not in PRECONDS:
            raise InputError(f"--precond {self.precond!r} is not one of {', '.join(PRECONDS)}")
        if self.batch < 1:
            raise InputError(f"--batch {self.batch} must be >= 1")
        if not self.lr > 0:
            raise InputError(f"--lr {self.lr} must be > 0")
        if self.lr_warmup_images < 0:
            raise InputError(f"--lr-warmup-images {self.lr_warmup_images} must be >= 0 (0 = no warm-up)")
        if not self.ema_halflife_images > 0:
            raise InputError(f"--ema-halflife-images {self.ema_halflife_images} must be > 0")
        if self.grad_clip < 0:
            raise InputError(f"--grad-clip {self.grad_clip} must be >= 0 (0 = off)")
        if self.seed < 0:
            raise InputError(f"--seed {self.seed} must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["adam_betas"] = list(self.adam_betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        d = dict(d)
        d["adam_betas"] = tuple(d.get("adam_betas", (0.9, 0.999)))
        return cls(**d)

    def lr_at(self, step: int) -> float:
        """Learning rate of 0-based step ``step``: linear warm-up over ``lr_warmup_images``, then constant."""
        if self.lr_warmup_images <= 0:
            return self.lr
        return self.lr * min(1.0, (step + 1) * self.batch / self.lr_warmup_images)


@dataclass(frozen=True)
class RuntimeOptions:
    """Execution choices: compilation, memory layout, checkpoint and log cadence, progress display."""

    compile: bool = False
    channels_last: bool = False
    checkpoint_every: int = 2000
    keep_checkpoints: int = 2
    log_every: int = 100
    progress: str = "auto"  # auto | rich | plain | none

    def __post_init__(self) -> None:
        if self.checkpoint_every < 0:
            raise InputError(f"--checkpoint-every {self.checkpoint_every} must be >= 0 (0 = only at the end)")
        if self.log_every < 1:
            raise InputError(f"--log-every {self.log_every} must be >= 1")
        if self.progress not in ("auto", "rich", "plain", "none"):
            raise InputError(f"progress {self.progress!r} is not one of auto, rich, plain, none")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


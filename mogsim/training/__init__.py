"""Training engine: one :class:`Trainer` for M independent models at once (M = 1: any network), with losses and
their preconditionings, element-wise Adam, EMA, exact-resume checkpoints, data order, budgets and DDP.

The usual entry point is :func:`train_run` (a run folder with config, log and checkpoints) or, for experiments,
tests and benchmarks, :class:`Trainer` directly. :func:`load_trained_denoiser` turns a checkpoint back into a
denoiser.
"""

from .budget import BUDGET_KINDS, Budget, resolve_budget
from .checkpoint import load_trained_denoiser
from .config import RuntimeOptions, TrainConfig
from .data_order import DataOrder
from .distributed import DistContext, cleanup_distributed, setup_distributed
from .ema import EMA
from .losses import (PARAMETRISATIONS, PRECONDS, EDMLoss, IdentityLoss, VPLoss, make_loss, make_precond,
                     per_sample_loss)
from .loop import Trainer, TrainingDiverged, TrainStep
from .optim import Adam
from .run import train_run

__all__ = [
    "Adam", "BUDGET_KINDS", "Budget", "DataOrder", "DistContext", "EDMLoss", "EMA", "IdentityLoss",
    "PARAMETRISATIONS", "PRECONDS", "RuntimeOptions", "TrainConfig", "TrainStep", "Trainer", "TrainingDiverged",
    "VPLoss", "cleanup_distributed", "load_trained_denoiser", "make_loss", "make_precond", "per_sample_loss",
    "resolve_budget", "setup_distributed", "train_run",
]

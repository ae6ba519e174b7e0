"""Training engine: losses, EMA, exact-resume checkpoints, data order, budgets, DDP, and the loop.

The usual entry point is :func:`train_run` (a run folder with config, log and checkpoints) or, for tests and
benchmarks, :class:`Trainer` directly. :func:`load_trained_denoiser` turns a checkpoint back into a denoiser.
"""

from .budget import BUDGET_KINDS, Budget, resolve_budget
from .checkpoint import (latest_checkpoint, list_checkpoints, load_checkpoint, load_trained_denoiser,
                         save_checkpoint)
from .config import RuntimeOptions, TrainConfig
from .data_order import DataOrder
from .distributed import DistContext, cleanup_distributed, setup_distributed
from .ema import EMA
from .losses import EDMLoss, VPLoss, make_loss, per_sample_loss
from .loop import Trainer, TrainingDiverged, TrainStep
from .run import config_differences, prepare_run_dir, train_run

__all__ = [
    "BUDGET_KINDS", "Budget", "DataOrder", "DistContext", "EDMLoss", "EMA", "RuntimeOptions", "TrainConfig",
    "TrainStep", "Trainer", "TrainingDiverged", "VPLoss", "cleanup_distributed", "config_differences",
    "latest_checkpoint", "list_checkpoints", "load_checkpoint", "load_trained_denoiser", "make_loss",
    "per_sample_loss", "prepare_run_dir", "resolve_budget", "save_checkpoint", "setup_distributed", "train_run",
]

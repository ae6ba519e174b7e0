"""The one checkpoint format: everything the next training step depends on, and nothing else.

A checkpoint (written by :meth:`mogsim.training.Trainer.save` into a run folder's ``checkpoints/``, atomically, by
:func:`mogsim.runs.save_checkpoint`) holds the network, EMA and optimizer states, the step, the data orders'
positions, the loss history and the running sums of the current log interval, and the state of torch's global
generators (the only random state a step reads besides the (seed, step) streams: dropout). Contents are plain
tensors, numbers and strings, so ``torch.load(weights_only=True)`` reads them; :func:`load_trained_denoiser` turns
one back into a denoiser.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError
from ..nets import PreconditionedDenoiser, build_from_config
from ..runs import CHECKPOINT_DIR, RunFolder, load_checkpoint
from .losses import make_precond

FORMAT = "mogsim-checkpoint"
VERSION = 2


def capture_rng_state(device: torch.device) -> dict[str, Any]:
    """torch's global CPU generator state (and that of ``device`` when it is a GPU)."""
    state: dict[str, Any] = {"torch_cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["torch_cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch_cpu"].cpu())
    if device.type == "cuda" and "torch_cuda" in state:
        torch.cuda.set_rng_state(state["torch_cuda"].cpu(), device)


def check_format(ckpt: dict[str, Any], path: str | os.PathLike | None = None) -> None:
    """Refuse anything but this format's current version, with the fix."""
    where = f"checkpoint {path}" if path is not None else "checkpoint"
    if ckpt.get("format") != FORMAT:
        raise InputError(f"{where}: not a mogsim training checkpoint", parameter="checkpoint")
    if ckpt.get("version") != VERSION:
        raise InputError(f"{where}: written by another mogsim version (format {ckpt.get('version')}, this one reads "
                         f"{VERSION}); train it again, or use force to start over", parameter="checkpoint")


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file, or the newest checkpoint of a run folder."""
    p = Path(path)
    if not p.is_dir():
        return p
    found = RunFolder(p).latest_checkpoint()
    if found is None:
        raise InputError(f"run folder {p}: has no checkpoints ({CHECKPOINT_DIR}/ckpt-*.pt); train it first",
                         parameter="path")
    return found


def load_trained_denoiser(path: str | os.PathLike, *, ema: bool = True, device: str | torch.device = "cpu",
                          autocast_dtype: torch.dtype | None = None) -> PreconditionedDenoiser:
    """A :class:`~mogsim.nets.PreconditionedDenoiser` (eval mode, no gradients) from a checkpoint file or a run
    folder's newest one; for a batched run, ``.member(m)`` gives member m.

    ``ema=True`` loads the EMA weights (what samplers should use), else the raw training weights.
    """
    p = resolve_checkpoint(path)
    ckpt = load_checkpoint(p)
    check_format(ckpt, p)
    net = build_from_config(ckpt["net_config"])
    net.load_state_dict(ckpt["ema" if ema else "net"])
    precond = ckpt["precond"]
    den = PreconditionedDenoiser(net, make_precond(precond["name"]), sigma_data=precond["sigma_data"],
                                 autocast_dtype=autocast_dtype)
    return den.to(device).eval().requires_grad_(False)

"""Checkpoints for exact resume, written atomically, and loading a trained denoiser back.

A checkpoint holds everything the next step depends on: network, optimizer and EMA states, the step, the data
order's position, and the random states (Python, NumPy, torch CPU and CUDA) of every rank. Files are written to a
temporary name and moved into place in one step, so a killed run leaves either the old or the new checkpoint,
never half of one. Contents are plain tensors, numbers and strings, so ``torch.load(weights_only=True)`` reads them.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..io import atomic_path

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^ckpt-(\d+)\.pt$")


def checkpoint_path(run_dir: str | os.PathLike, step: int) -> Path:
    """``run_dir/checkpoints/ckpt-<step, 9 digits>.pt`` (step = optimizer steps completed)."""
    return Path(run_dir) / CHECKPOINT_DIR / f"ckpt-{step:09d}.pt"


def list_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, path) of the run's checkpoints, oldest first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The checkpoint with the most steps, or None."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def prune_checkpoints(run_dir: str | os.PathLike, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (``keep <= 0`` keeps all)."""
    if keep <= 0:
        return
    for _, path in list_checkpoints(run_dir)[:-keep]:
        path.unlink(missing_ok=True)


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename into place."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (plain data only: ``weights_only=True``)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"checkpoint {p}: does not exist; pass a ckpt-*.pt file or a run folder")
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file, reported as one line
        raise InputError(f"checkpoint {p}: cannot be read ({type(exc).__name__}: {exc}); "
                         "delete it to resume from the previous one") from None


# --- random states ----------------------------------------------------------------------------------------------

def capture_rng_state(device: torch.device) -> dict[str, Any]:
    """Python, NumPy (global) and torch CPU (and CUDA of ``device``) generator states, as plain data."""
    py = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": {"bit_generator": np_state["bit_generator"],
                  "key": torch.from_numpy(np.asarray(np_state["state"]["key"], dtype=np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
        "torch_cpu": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["torch_cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Inverse of :func:`capture_rng_state`."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = state["numpy"]
    np.random.set_state({"bit_generator": npst["bit_generator"],
                         "state": {"key": npst["key"].cpu().numpy().astype(np.uint32), "pos": npst["pos"]},
                         "has_gauss": npst["has_gauss"], "gauss": npst["gauss"]})
    torch.set_rng_state(state["torch_cpu"].cpu())
    if device.type == "cuda" and "torch_cuda" in state:
        torch.cuda.set_rng_state(state["torch_cuda"].cpu(), device)


# --- loading a trained network ------------------------------------------------------------------------------------

def load_trained_denoiser(path: str | os.PathLike, *, ema: bool = True, device: str | torch.device = "cpu",
                          autocast_dtype: torch.dtype | None = None):
    """A :class:`~mogsim.nets.PreconditionedDenoiser` (eval mode) from a checkpoint file or a run folder's latest.

    ``ema=True`` loads the EMA weights (what samplers should use), else the raw training weights.
    """
    from ..nets import PreconditionedDenoiser, build_from_config, make_precond

    p = Path(path)
    if p.is_dir():
        found = latest_checkpoint(p)
        if found is None:
            raise InputError(f"run folder {p}: has no checkpoints ({CHECKPOINT_DIR}/ckpt-*.pt); train it first")
        p = found
    ckpt = load_checkpoint(p)
    net = build_from_config(ckpt["net_config"])
    net.load_state_dict(ckpt["ema" if ema else "net"])
    precond = make_precond(ckpt["precond"]["name"], sigma_data=ckpt["precond"].get("sigma_data", 0.5))
    den = PreconditionedDenoiser(net, precond, autocast_dtype=autocast_dtype)
    return den.to(device).eval().requires_grad_(False)

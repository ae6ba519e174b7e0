"""``train_run``: train one network into a run folder end to end (the ``mogsim train`` run).

The run folder (:class:`mogsim.runs.RunFolder`, kind ``mogsim-train-run``) holds ``config.json`` (what was trained,
on what data, with which budget, runtime and provenance, plus one entry per launch), ``log.csv``,
``checkpoints/ckpt-<step>.pt`` and ``summary.json`` (plus the subset file the CLI writes). Pointing a new launch at
the same folder resumes from its newest checkpoint if the ``train`` and ``data`` sections match; otherwise it is
refused unless ``force``, which starts the run over. The budget may differ: the trajectory does not depend on it,
so a finished run can be extended. A folder holding anything else is refused, and so is a run of a mogsim version
that recorded ``bf16``/``tf32`` flags instead of ``precision`` (it cannot be resumed exactly). ``summary.json``
records how the last launch executed its steps (``execution``: precision, compiled or not, CUDA graph, and why).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any, Callable

import torch

from ..denoiser import ProgressFactory
from ..errors import InputError
from ..progress import progress_display, silent
from ..provenance import provenance
from ..runs import RunFolder, jsonable
from .budget import Budget
from .config import RuntimeOptions, TrainConfig
from .distributed import DistContext
from .loop import Trainer

RUN_KIND = "mogsim-train-run"
SUMMARY_FILE = "summary.json"
LOG_FILE = "log.csv"
#: sections of config.json that must match for a resume; ``data.source`` (a path) may change
COMPARED = ("train", "data")
IGNORED = (("data", "source"),)


def data_fingerprint(data: torch.Tensor) -> str:
    """SHA-256 of the training tensor's dtype, shape and bytes: a resume must see the very same data."""
    h = hashlib.sha256(f"{data.dtype}{tuple(data.shape)}".encode())
    h.update(data.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def run_record(config: TrainConfig, budget: Budget, runtime: RuntimeOptions, data: dict[str, Any],
               ctx: DistContext, num_items: int, num_parameters: int | None = None) -> dict[str, Any]:
    """The ``config.json`` content of a launch (JSON-ready)."""
    return jsonable({
        "version": 1,
        "train": config.to_dict(),
        "data": data,
        "budget": budget.record(config.batch, num_items),
        "runtime": {**runtime.to_dict(), "device": str(ctx.device), "world_size": ctx.world_size,
                    "cudnn_benchmark": ctx.device.type == "cuda"},
        "parameters": num_parameters,
        "provenance": provenance(ctx.device),
    })


def _refuse_legacy_run(folder: RunFolder, force: bool) -> None:
    """One line for a folder written before ``precision`` replaced the ``bf16``/``tf32`` flags."""
    stored = folder.read_config() if folder.config_path.exists() else None
    train = (stored or {}).get("train")
    if not force and isinstance(train, dict) and ("bf16" in train or "tf32" in train):
        raise InputError(f"out={str(folder.path)!r}: holds a run of an earlier mogsim (bf16/tf32 options, now "
                         "precision), which cannot be resumed exactly; use another folder, or force to start that "
                         "run over", parameter=("out", "force"))


def train_run(config: TrainConfig, data: torch.Tensor, budget: Budget, out: str | os.PathLike, *,
              data_record: dict[str, Any] | None = None, runtime: RuntimeOptions | None = None,
              ctx: DistContext | None = None, force: bool = False, extra_files: tuple[str, ...] = (),
              on_prepared: Callable[[Path], None] | None = None,
              progress: ProgressFactory | None = None) -> dict[str, Any]:
    """Train ``config`` on ``data`` into run folder ``out`` (resuming if it holds the same run); every rank calls
    it. ``on_prepared(run_dir)`` runs on rank 0 once the folder passed its checks (e.g. to write the subset
    record). Progress goes to ``progress``, else to the display ``runtime.progress`` names (rank 0 only). Returns
    the summary that is also written to ``summary.json``."""
    runtime = runtime or RuntimeOptions()
    ctx = ctx or DistContext()
    num_items = int(data.shape[0])
    data_record = dict(data_record or {})
    data_record.setdefault("num_items", num_items)
    data_record.setdefault("sample_shape", list(data.shape[1:]))
    data_record.setdefault("dtype", str(data.dtype).replace("torch.", ""))
    data_record["sha256"] = data_fingerprint(data)
    total = budget.total_steps(config.batch, num_items)
    trainer = Trainer(config, data, runtime=runtime, ctx=ctx)  # checks data and config before any file is written
    record = run_record(config, budget, runtime, data_record, ctx, num_items, trainer.num_parameters)
    folder = RunFolder(out, kind=RUN_KIND)
    _refuse_legacy_run(folder, force)
    launch = {"started_utc": record["provenance"]["created_utc"], "command": record["provenance"]["command"],
              "git_commit": record["provenance"]["git_commit"], "budget_steps": record["budget"]["steps"],
              "device": str(ctx.device), "world_size": ctx.world_size}
    with contextlib.ExitStack() as stack:
        message: tuple[str, str | None, Any] = ("ok", None, None)
        if ctx.is_main:
            try:
                found = stack.enter_context(folder.session(
                    record, compared=COMPARED, ignored=IGNORED, force=force, launch=launch,
                    extra_files=(LOG_FILE, SUMMARY_FILE, *extra_files)))
                if on_prepared is not None:
                    on_prepared(folder.path)
                message = ("ok", str(found) if found is not None else None, None)
            except InputError as exc:
                message = ("error", str(exc), exc.parameter)
        status, value, parameter = ctx.broadcast_object(message)  # all ranks stop on rank 0's error, none hangs
        if status == "error":
            raise InputError(value or "", parameter=parameter)
        if value is not None:
            trainer.resume(value)
        resumed_at = trainer.step if value is not None else None
        if not ctx.is_main:
            display: Any = contextlib.nullcontext(silent)
        elif progress is not None:
            display = contextlib.nullcontext(progress)
        else:
            display = progress_display(runtime.progress)
        with display as factory:
            summary = trainer.fit(total, folder.path, progress=factory)
        summary.update(resumed_from=value, resumed_at_step=resumed_at,
                       total_steps=total, parameters=trainer.num_parameters, budget=record["budget"])
        if ctx.is_main and (summary["steps_this_launch"] > 0 or not folder.has(SUMMARY_FILE)):
            folder.write_json(SUMMARY_FILE, summary)  # a launch with nothing left to do keeps the old summary
        ctx.barrier()
    return summary

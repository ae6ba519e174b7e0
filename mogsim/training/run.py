"""Run folders: resolved config, resume-or-refuse logic, and the one function that trains a run end to end.

A run folder holds ``config.json`` (what was trained, on what data, with which budget, runtime and provenance,
plus one entry per launch), ``log.csv``, ``checkpoints/ckpt-<step>.pt`` and ``summary.json`` (plus the subset file
the CLI writes). Pointing a new launch at the same folder resumes from its newest checkpoint if the ``train`` and
``data`` sections match; otherwise it is refused unless ``force``, which starts the run over (the folder's run files
are deleted). The budget may differ: the trajectory does not depend on it, so a finished run can be extended.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import InputError
from ..io import ensure_writable_dir, write_json
from ..provenance import provenance
from .budget import Budget
from .checkpoint import latest_checkpoint, list_checkpoints
from .config import RuntimeOptions, TrainConfig
from .distributed import DistContext
from .loop import Trainer

CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
LOG_FILE = "log.csv"
RUN_FORMAT = "mogsim-train-run"
#: sections of config.json that must match for a resume; ``data.source`` (a path) may change
_COMPARED = ("train", "data")
_IGNORED = {("data", "source")}


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``["train.lr: 0.001 -> 0.0002", ...]`` over the compared sections."""
    diffs: list[str] = []

    def walk(a: Any, b: Any, path: tuple[str, ...]) -> None:
        if path in _IGNORED:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                walk(a.get(key, "<absent>"), b.get(key, "<absent>"), path + (key,))
        elif a != b:
            diffs.append(f"{'.'.join(path)}: {a!r} -> {b!r}")

    for section in _COMPARED:
        walk(old.get(section, {}), new.get(section, {}), (section,))
    return diffs


def data_fingerprint(data: torch.Tensor) -> str:
    """SHA-256 of the training tensor's dtype, shape and bytes: a resume must see the very same data."""
    h = hashlib.sha256(f"{data.dtype}{tuple(data.shape)}".encode())
    h.update(data.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    """Round-trip through JSON so that tuples and lists compare equal to what is on disk."""
    return json.loads(json.dumps(d))


def prepare_run_dir(out: str | os.PathLike, record: dict[str, Any], *, force: bool = False,
                    extra_files: tuple[str, ...] = ()) -> Path | None:
    """Check ``out`` against ``record`` (rank 0 only). Returns the checkpoint to resume from, or None.

    ``extra_files`` are further run files (e.g. the subset record) that ``force`` deletes with the rest.
    """
    run = ensure_writable_dir(out, option="--out")
    cfg_path = run / CONFIG_FILE
    if not cfg_path.exists():
        if list_checkpoints(run):
            raise InputError(f"--out {run}: has checkpoints but no {CONFIG_FILE}; choose another folder")
        return None
    try:
        old = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"--out {run}: {CONFIG_FILE} is unreadable ({exc}); fix it, or use --force to start "
                         "over") from None
    diffs = config_differences(old, _jsonable(record))
    if diffs and not force:
        more = f" (and {len(diffs) - 1} more)" if len(diffs) > 1 else ""
        raise InputError(f"--out {run}: holds a run with a different config: {diffs[0]}{more}; use another "
                         "--out, the same options, or --force to start that run over")
    if force:
        for _, path in list_checkpoints(run):
            path.unlink()
        for name in (CONFIG_FILE, LOG_FILE, SUMMARY_FILE, *extra_files):
            (run / name).unlink(missing_ok=True)
        return None
    return latest_checkpoint(run)


def run_record(config: TrainConfig, budget: Budget, runtime: RuntimeOptions, data: dict[str, Any],
               ctx: DistContext, num_items: int, num_parameters: int | None = None) -> dict[str, Any]:
    """The ``config.json`` content of a launch (JSON-ready)."""
    return _jsonable({
        "format": RUN_FORMAT, "version": 1,
        "train": config.to_dict(),
        "data": data,
        "budget": budget.record(config.batch, num_items),
        "runtime": {**runtime.to_dict(), "device": str(ctx.device), "world_size": ctx.world_size,
                    "bf16_autocast": config.bf16, "tf32": config.tf32,
                    "cudnn_benchmark": ctx.device.type == "cuda"},
        "parameters": num_parameters,
        "provenance": provenance(ctx.device),
    })


def train_run(config: TrainConfig, data: torch.Tensor, budget: Budget, out: str | os.PathLike, *,
              data_record: dict[str, Any] | None = None, runtime: RuntimeOptions | None = None,
              ctx: DistContext | None = None, force: bool = False, extra_files: tuple[str, ...] = (),
              on_prepared: Callable[[Path], None] | None = None, show_progress: bool = True) -> dict[str, Any]:
    """Train ``config`` on ``data`` into run folder ``out`` (resuming if it holds the same run); every rank calls
    it. ``on_prepared(run_dir)`` runs on rank 0 once the folder passed its checks (e.g. to write the subset
    record). Returns the summary that is also written to ``summary.json``."""
    runtime = runtime or RuntimeOptions()
    ctx = ctx or DistContext()
    num_items = int(data.shape[0])
    data_record = dict(data_record or {})
    data_record.setdefault("num_items", num_items)
    data_record.setdefault("sample_shape", list(data.shape[1:]))
    data_record.setdefault("dtype", str(data.dtype).replace("torch.", ""))
    data_record["sha256"] = data_fingerprint(data)
    total = budget.total_steps(config.batch, num_items)
    trainer = Trainer(config, data, runtime=runtime, ctx=ctx)
    record = run_record(config, budget, runtime, data_record, ctx, num_items, trainer.num_parameters)
    message: tuple[str, str | None] = ("ok", None)
    if ctx.is_main:
        try:
            found = prepare_run_dir(out, record, force=force, extra_files=extra_files)
            cfg_path = Path(out) / CONFIG_FILE
            launches = json.loads(cfg_path.read_text()).get("launches", []) if cfg_path.exists() else []
            record["launches"] = launches + [{
                "started_utc": record["provenance"]["created_utc"], "command": record["provenance"]["command"],
                "git_commit": record["provenance"]["git_commit"], "budget_steps": record["budget"]["steps"],
                "device": str(ctx.device), "world_size": ctx.world_size,
                "resumed_from": found.name if found is not None else None}]
            write_json(cfg_path, record)
            if on_prepared is not None:
                on_prepared(Path(out))
            message = ("ok", str(found) if found is not None else None)
        except InputError as exc:
            message = ("error", str(exc))
    status, value = ctx.broadcast_object(message)  # every rank stops on rank 0's error instead of hanging
    if status == "error":
        raise InputError(value)
    resume = value
    if resume is not None:
        trainer.resume(resume)
    summary = trainer.fit(total, out, show_progress=show_progress)
    summary.update(resumed_from=resume, total_steps=total, parameters=trainer.num_parameters,
                   budget=record["budget"])
    if ctx.is_main and (summary["steps_this_launch"] > 0 or not (Path(out) / SUMMARY_FILE).exists()):
        write_json(Path(out) / SUMMARY_FILE, summary)  # a launch with nothing left to do keeps the old summary
    ctx.barrier()
    return summary

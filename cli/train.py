"""``mogsim train``: train a registered network on a seeded CIFAR-10 subset (or an array file) into a run folder.

Re-running with the same ``--out`` resumes from the newest checkpoint; a different configuration there is refused
unless ``--force`` (which starts that run over), and so is a folder holding anything else. The options of the
network (:class:`mogsim.nets.NetOptions`), the training recipe (:class:`mogsim.training.TrainConfig`) and the
runtime (:class:`mogsim.training.RuntimeOptions`) are generated from those dataclasses. Multi-GPU: ``torchrun --standalone --nproc_per_node=G --
$(which mogsim) train ...`` (the ``--`` keeps torchrun from reading ``--n`` as an abbreviation of its own options;
every rank loads the data, rank 0 writes). ``--report`` writes the run's ``report.pdf`` at the end.

Defaults that depend on the device: ``--precision`` bf16 on CUDA, fp32 on the CPU; ``--compile`` and
``--cuda-graph`` follow the rule of :mod:`mogsim.training.execution` (capture on CUDA; compile when the launch is
long enough to repay the warm-up), and the choice is printed and recorded in ``summary.json``.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
import typer

from mogsim.data import load_training_set
from mogsim.errors import InputError
from mogsim.nets import NetOptions, build_from_config, count_parameters
from mogsim.params import flags, resolve, to_flags
from mogsim.runs import RunFolder
from mogsim.training import (RuntimeOptions, TrainConfig, TrainingDiverged, cleanup_distributed, resolve_budget,
                             setup_distributed, train_run)
from mogsim.training.execution import Execution
from mogsim.training.run import RUN_KIND

from .options import flag_errors, with_options

SUBSET_FILE = "subset.json"


FLAGS = {**flags(NetOptions, TrainConfig, RuntimeOptions), **{name: f"--{name}" for name in (
    "out", "data", "n", "device", "force", "steps", "images", "epochs", "report")}}


def default_precision(device: torch.device) -> str:
    """``--precision`` left unset: bf16 on CUDA (the fastest, within seed-to-seed spread of fp32, BENCHMARKS.md),
    fp32 on the CPU (bf16 autocast is slow there)."""
    return "bf16" if device.type == "cuda" else "fp32"


@with_options(NetOptions, TrainConfig, RuntimeOptions)
def train_command(
    data: Path = typer.Option(..., "--data", help="CIFAR-10 in any format mogsim.data reads (official archive, "
                              "EDM zip/folder with dataset.json, class folders), or a .npy/.npz/.pt array (N, ...)."),
    out: Path = typer.Option(..., "--out", help="Run folder: config.json, subset.json, log.csv, checkpoints/, "
                             "summary.json. The same folder again resumes."),
    n: Optional[int] = typer.Option(None, "--n", help="Train on a seeded nested subset of N items (default: all)."),
    subset_seed: int = typer.Option(0, "--subset-seed", help="Seed of the --n subset."),
    balanced: bool = typer.Option(False, "--balanced/--no-balanced", help="Class-balanced subset (CIFAR-10)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Keep decoded CIFAR-10 arrays here."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Budget in optimizer steps."),
    images: Optional[float] = typer.Option(None, "--images", help="Budget in training images, e.g. 2e6."),
    epochs: Optional[float] = typer.Option(None, "--epochs", help="Budget in passes over the subset."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    force: bool = typer.Option(False, "--force", help="Start over if --out holds a run with another config."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress: bars on a terminal, "
                                  "a line every few seconds otherwise."),
    report: bool = typer.Option(False, "--report/--no-report", help="Write the run's report.pdf (mogsim report) "
                                "into --out when training ends."),
    **options: Any,
) -> None:
    """Train a denoiser network (DDPM++ UNet or MLP) with exact resume; re-run to continue an interrupted run."""
    with flag_errors(FLAGS), _one_line_warnings():
        _train(data=data, out=out, n=n, subset_seed=subset_seed, balanced=balanced, cache_dir=cache_dir,
               budget=resolve_budget(steps=steps, images=images, epochs=epochs), device=device, force=force,
               progress=progress, report=report, options=options)


def _train(*, data: Path, out: Path, n: Optional[int], subset_seed: int, balanced: bool, cache_dir: Optional[Path],
           budget: Any, device: str, force: bool, progress: bool, report: bool, options: dict[str, Any]) -> None:
    """Check every option, load the data, train; nothing is written before all checks passed."""
    if n is not None and not 1 <= n <= 10**9:
        raise InputError(f"n={n}: must be between 1 and 10^9 (or left out to use every item)", parameter="n")
    net_options = resolve(NetOptions, options)
    ctx = setup_distributed(device)
    try:
        options["precision"] = options.get("precision") or default_precision(ctx.device)
        config = resolve(TrainConfig, options, net={})  # checked now; the network follows the data's shape
        runtime = resolve(RuntimeOptions, options, progress="auto" if progress else "none")
        RunFolder(out, kind=RUN_KIND).check_owner()
        loaded = load_training_set(data, n=n, subset_seed=subset_seed, balanced=balanced, cache_dir=cache_dir,
                                   option="--data")
        tensor, idx = loaded.data, loaded.indices
        tensor = tensor.float() if tensor.is_floating_point() else tensor  # arrays train in float32, CIFAR as uint8
        record = {**loaded.record, "subset_file": SUBSET_FILE if idx is not None else None}
        net = net_options.network_config(tuple(tensor.shape[1:]))
        config = TrainConfig.from_dict({**config.to_dict(), "net": net})

        def write_subset(run: Path) -> None:
            if idx is not None:
                from mogsim.data import save_subset

                save_subset(run / SUBSET_FILE, idx, seed=subset_seed, balanced=balanced, source=data,
                            num_items=record["num_items_source"])

        if ctx.is_main:
            total = budget.total_steps(config.batch, int(tensor.shape[0]))
            typer.echo(f"{net['name']} ({config.precond}) on {tensor.shape[0]} items of shape "
                       f"{tuple(tensor.shape[1:])}: {total} steps of {config.batch} on {ctx.device} "
                       f"x{ctx.world_size}; precision {config.precision}, compile "
                       f"{_on_off_auto(runtime.compile)}, CUDA graph {_on_off_auto(runtime.cuda_graph)}, "
                       f"channels_last {_on_off_auto(runtime.channels_last)}")
            with torch.device("meta"):
                typer.echo(f"parameters: {count_parameters(build_from_config(net)):,}")
        summary = train_run(config, tensor, budget, out, data_record=record, runtime=runtime, ctx=ctx, force=force,
                            extra_files=(SUBSET_FILE,), on_prepared=write_subset)
    except TrainingDiverged as exc:
        print(f"mogsim: error: {to_flags(str(exc), FLAGS, ('lr', 'grad_clip', 'precision'))}", file=sys.stderr)
        raise typer.Exit(1)
    finally:
        cleanup_distributed(ctx)
    if ctx.is_main:
        resumed = (f" (resumed from {Path(summary['resumed_from']).name} at step {summary['resumed_at_step']})"
                   if summary["resumed_from"] else "")
        if summary["steps_this_launch"] == 0:
            typer.echo(f"already trained to step {summary['steps']}{resumed}, which meets the budget of "
                       f"{summary['total_steps']} steps; nothing to do. Run folder {out}")
        else:
            typer.echo(f"steps ran as: {Execution(**_fields(summary['execution'])).describe()}")
            typer.echo(f"trained to step {summary['steps']} ({summary['images']:,} images){resumed}; "
                       f"loss {summary['final_loss']:.4g}; {summary['images_per_s']:,.0f} img/s; run folder {out}")
        if report:
            from mogsim.report import write_report  # reportlab and matplotlib: only for reports

            write_report([out], out / "report.pdf")
            typer.echo(f"report: {out / 'report.pdf'}")


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[None]:
    """Library warnings (e.g. a CUDA graph capture that fell back to the eager step) as one ``mogsim: warning:``
    line each on stderr."""
    with warnings.catch_warnings():
        warnings.showwarning = lambda message, *args, **kwargs: print(  # type: ignore[assignment]
            f"mogsim: warning: {' '.join(str(message).split())}", file=sys.stderr)
        yield


def _on_off_auto(flag: Optional[bool]) -> str:
    return "auto" if flag is None else "on" if flag else "off"


def _fields(record: dict[str, Any]) -> dict[str, Any]:
    """An execution record's constructor fields."""
    return {k: v for k, v in record.items() if k in Execution.__dataclass_fields__}


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)

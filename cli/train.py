"""``mogsim train``: train a registered network on a seeded CIFAR-10 subset (or an array file) into a run folder.

Re-running with the same ``--out`` resumes from the newest checkpoint; a different configuration there is refused
unless ``--force`` (which starts that run over). Multi-GPU: ``torchrun --standalone --nproc_per_node=G --
$(which mogsim) train ...`` (the ``--`` keeps torchrun from reading ``--n`` as an abbreviation of its own options;
every rank loads the data, rank 0 writes).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import torch
import typer

from mogsim.data import load_training_set
from mogsim.errors import InputError
from mogsim.nets import NETWORKS, PRECONDS, build_from_config, count_parameters, network_config
from mogsim.training import (RuntimeOptions, TrainConfig, TrainingDiverged, cleanup_distributed, resolve_budget,
                             setup_distributed, train_run)

SUBSET_FILE = "subset.json"


def _auto(flag: Optional[bool], device: torch.device) -> bool:
    """A --x/--no-x option left unset means: on for CUDA, off for CPU."""
    return device.type == "cuda" if flag is None else bool(flag)


def train_command(
    data: Path = typer.Option(..., "--data", help="CIFAR-10 in any format mogsim.data reads (official archive, "
                              "EDM zip/folder with dataset.json, class folders), or a .npy/.npz/.pt array (N, ...)."),
    out: Path = typer.Option(..., "--out", help="Run folder: config.json, subset.json, log.csv, checkpoints/, "
                             "summary.json. The same folder again resumes."),
    n: Optional[int] = typer.Option(None, "--n", help="Train on a seeded nested subset of N items (default: all)."),
    subset_seed: int = typer.Option(0, "--subset-seed", help="Seed of the --n subset."),
    balanced: bool = typer.Option(False, "--balanced/--no-balanced", help="Class-balanced subset (CIFAR-10)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Keep decoded CIFAR-10 arrays here."),
    arch: str = typer.Option("unet-64", "--arch", help=f"Network: {', '.join(NETWORKS)}."),
    width: Optional[int] = typer.Option(None, "--width", help="Width override: model_channels of a UNet, width of "
                                        "the MLP."),
    dropout: Optional[float] = typer.Option(None, "--dropout", help="Dropout of a UNet (default 0; the authors "
                                            "used 0.13)."),
    precond: str = typer.Option("vp", "--precond", help="Preconditioning and loss: vp (the paper) or edm."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Budget in optimizer steps."),
    images: Optional[float] = typer.Option(None, "--images", help="Budget in training images, e.g. 2e6."),
    epochs: Optional[float] = typer.Option(None, "--epochs", help="Budget in passes over the subset."),
    batch: int = typer.Option(128, "--batch", help="Global batch size (split over processes)."),
    lr: float = typer.Option(1e-3, "--lr", help="Adam learning rate (the authors': 1e-3)."),
    lr_warmup_images: int = typer.Option(200_000, "--lr-warmup-images", help="Linear warm-up length in images "
                                         "(EDM: 10M, too long for small budgets; 0 = none)."),
    ema_halflife_images: float = typer.Option(500_000, "--ema-halflife-images", help="EMA half-life in images."),
    ema_rampup_ratio: float = typer.Option(0.05, "--ema-rampup-ratio", help="EMA half-life is at most this "
                                           "fraction of the images seen (EDM); 0 = off."),
    grad_clip: float = typer.Option(0.0, "--grad-clip", help="Clip the gradient norm to this (0 = off)."),
    xflip: bool = typer.Option(False, "--xflip/--no-xflip", help="Random horizontal flips (augmentation)."),
    seed: int = typer.Option(0, "--seed", help="Seed of initialisation, data order, noise and dropout."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    bf16: Optional[bool] = typer.Option(None, "--bf16/--no-bf16", help="bfloat16 autocast [default: on for CUDA]."),
    tf32: bool = typer.Option(False, "--tf32/--no-tf32", help="Allow TF32 in float32 convolutions and matmuls."),
    compile_: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the network "
                                            "[default: on for CUDA]."),
    channels_last: Optional[bool] = typer.Option(None, "--channels-last/--no-channels-last",
                                                 help="channels_last memory format [default: off; it slowed "
                                                 "unet-64 by 6-11% on an H100, see BENCHMARKS.md]."),
    checkpoint_every: int = typer.Option(2000, "--checkpoint-every", help="Checkpoint every this many steps (and at "
                                         "the end; 0 = only at the end)."),
    keep_checkpoints: int = typer.Option(2, "--keep-checkpoints", help="Keep the newest K checkpoints (0 = all)."),
    log_every: int = typer.Option(100, "--log-every", help="Log row (log.csv, progress) every this many steps."),
    force: bool = typer.Option(False, "--force", help="Start over if --out holds a run with another config."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Train a denoiser network (DDPM++ UNet or MLP) with exact resume; re-run to continue an interrupted run."""
    budget = resolve_budget(steps=steps, images=images, epochs=epochs)
    if n is not None and n < 1:
        raise InputError(f"--n {n} must be >= 1")
    if width is not None and width < 1:
        raise InputError(f"--width {width} must be >= 1")
    if arch.strip().lower() not in NETWORKS:
        raise InputError(f"--arch {arch!r} is not one of {', '.join(NETWORKS)}")
    if precond.strip().lower() not in PRECONDS:
        raise InputError(f"--precond {precond!r} is not one of {', '.join(PRECONDS)}")
    ctx = setup_distributed(device)
    try:
        loaded = load_training_set(data, n=n, subset_seed=subset_seed, balanced=balanced, cache_dir=cache_dir,
                                   option="--data")
        tensor, idx = loaded.data, loaded.indices
        tensor = tensor.float() if tensor.is_floating_point() else tensor  # arrays train in float32, CIFAR as uint8
        record = {**loaded.record, "subset_file": SUBSET_FILE if idx is not None else None}
        family = NETWORKS[arch.strip().lower()].family
        overrides: dict[str, Any] = {}
        if width is not None:
            overrides["width" if family == "mlp" else "model_channels"] = width
        if dropout is not None:
            if family == "mlp":
                raise InputError("--dropout applies to UNets; the MLP has none")
            overrides["dropout"] = dropout
        net = network_config(arch, tuple(tensor.shape[1:]), **overrides)
        config = TrainConfig(net=net, precond=precond.strip().lower(), batch=batch, lr=lr,
                             lr_warmup_images=lr_warmup_images, ema_halflife_images=ema_halflife_images,
                             ema_rampup_ratio=ema_rampup_ratio if ema_rampup_ratio > 0 else None,
                             grad_clip=grad_clip, xflip=xflip, seed=seed, bf16=_auto(bf16, ctx.device), tf32=tf32)
        runtime = RuntimeOptions(compile=_auto(compile_, ctx.device), channels_last=bool(channels_last),
                                 checkpoint_every=checkpoint_every, keep_checkpoints=keep_checkpoints,
                                 log_every=log_every, progress="auto" if progress else "none")

        def write_subset(run: Path) -> None:
            if idx is not None:
                from mogsim.data import save_subset

                save_subset(run / SUBSET_FILE, idx, seed=subset_seed, balanced=balanced, source=data,
                            num_items=record["num_items_source"])

        if ctx.is_main:
            total = budget.total_steps(batch, int(tensor.shape[0]))
            typer.echo(f"{net['name']} ({precond}) on {tensor.shape[0]} items of shape {tuple(tensor.shape[1:])}: "
                       f"{total} steps of {batch} on {ctx.device} x{ctx.world_size}; bf16={config.bf16} "
                       f"compile={runtime.compile} channels_last={runtime.channels_last}")
            with torch.device("meta"):
                typer.echo(f"parameters: {count_parameters(build_from_config(net)):,}")
        summary = train_run(config, tensor, budget, out, data_record=record, runtime=runtime, ctx=ctx, force=force,
                            extra_files=(SUBSET_FILE,), on_prepared=write_subset, show_progress=progress)
    except TrainingDiverged as exc:
        print(f"mogsim: error: {exc}", file=sys.stderr)
        raise typer.Exit(1)
    finally:
        cleanup_distributed(ctx)
    if ctx.is_main:
        resumed = f" (resumed from {Path(summary['resumed_from']).name})" if summary["resumed_from"] else ""
        if summary["steps_this_launch"] == 0:
            typer.echo(f"already trained to step {summary['steps']}{resumed}, which meets the budget of "
                       f"{summary['total_steps']} steps; nothing to do. Run folder {out}")
        else:
            typer.echo(f"trained to step {summary['steps']} ({summary['images']:,} images){resumed}; "
                       f"loss {summary['final_loss']:.4g}; {summary['images_per_s']:,.0f} img/s; run folder {out}")


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)

"""``mogsim sample``: samples from a closed-form optimal denoiser (MoLRG or the empirical distribution of a file)."""

from __future__ import annotations

import contextlib
import enum
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
import typer

from mogsim.closed_forms import EmpiricalDenoiser, MoLRG
from mogsim.closed_forms.molrg import MAX_DIM
from mogsim.data import load_training_set
from mogsim.devices import resolve_device, resolve_dtype
from mogsim.errors import InputError
from mogsim.io import is_image_batch, output_dir, write_image_grid, write_json, write_npz
from mogsim.parsing import SEED_LIMIT, finite_number, parse_seeds, seeds_record, whole_number
from mogsim.provenance import provenance
from mogsim.sampling import MAX_STEPS, edm_sigmas, noise_for_seeds, sample

#: A sample "copies" a training point when it ends within this distance of it, relative to the data's RMS norm.
COPY_TOL = 1e-3
#: A sample lies on a MoLRG subspace when its relative residual off the nearest subspace is below this.
SUBSPACE_TOL = 1e-6
#: Most seeds sampled at once (memory grows with it; the samples do not depend on it).
MAX_BATCH = 65536
#: Most numbers in one MoLRG working buffer, batch * components * dim (2^27 float64 = 1 GiB; a few are alive).
MAX_BUFFER = 2**27
#: Seconds between plain progress lines when stderr is not a terminal.
PLAIN_PROGRESS_EVERY = 5.0
#: How many samples the image grid shows.
GRID_LIMIT = 64


class Model(str, enum.Enum):
    molrg = "molrg"
    empirical = "empirical"


class Solver(str, enum.Enum):
    heun = "heun"
    euler = "euler"


def check_options(*, dim: int, components: int, rank: int, mix_seed: int, noise_std: float, n: Optional[int],
                  subset_seed: int, steps: int, sigma_min: float, sigma_max: float, rho: float, batch: int,
                  model: Model) -> None:
    """Every numeric option against its bounds, before any work; each failure names the option and the fix."""
    dim = whole_number(dim, "--dim", lo=1, hi=MAX_DIM, fix="the random subspaces need a dim x dim matrix")
    components = whole_number(components, "--components", lo=1, hi=dim)
    rank = whole_number(rank, "--rank", lo=1, hi=dim)
    if components * rank > dim:
        raise InputError(f"--components * --rank = {components} * {rank} = {components * rank} exceeds --dim "
                         f"{dim}; mutually orthogonal subspaces need components * rank <= dim")
    whole_number(mix_seed, "--mix-seed", lo=0, hi=SEED_LIMIT - 1)
    finite_number(noise_std, "--noise-std", lo=0.0)
    if n is not None:
        whole_number(n, "--n", lo=1, fix="a subset size (leave --n out to use every training point)")
    whole_number(subset_seed, "--subset-seed", lo=0, hi=SEED_LIMIT - 1)
    whole_number(steps, "--steps", lo=1, hi=MAX_STEPS, fix="EDM uses 18")
    sigma_min = finite_number(sigma_min, "--sigma-min", lo=0.0, lo_open=True)
    finite_number(sigma_max, "--sigma-max", lo=sigma_min, fix="need --sigma-min <= --sigma-max")
    finite_number(rho, "--rho", lo=0.0, lo_open=True, fix="EDM uses 7")
    batch = whole_number(batch, "--batch", lo=1, hi=MAX_BATCH)
    if model is Model.molrg and batch * components * dim > MAX_BUFFER:
        fit = max(1, MAX_BUFFER // (components * dim))
        raise InputError(f"--batch {batch} with --components {components} and --dim {dim} needs buffers of "
                         f"batch * components * dim = {batch * components * dim:,} numbers; pass --batch {fit} or "
                         "less (the samples do not change)")


@contextlib.contextmanager
def _progress(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """A rich bar on a terminal; plain lines on stderr every few seconds otherwise (logs, pipes, batch jobs)."""
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=Console(stderr=True)) as bar:
            task = bar.add_task(label, total=total)
            yield lambda k: bar.advance(task, k)
        return
    start = time.monotonic()
    last, done = -math.inf, 0

    def advance(k: int) -> None:  # a line after the first step, then every 5 s, and at the end
        nonlocal done, last
        done += k
        now = time.monotonic()
        if now - last >= PLAIN_PROGRESS_EVERY or done == total:
            print(f"{label}: {done}/{total} steps ({now - start:.0f} s)", file=sys.stderr, flush=True)
            last = now

    yield advance


def run_sample(model: Model, *, data: Optional[Path], n: Optional[int], subset_seed: int, dim: int,
               components: int, rank: int, mix_seed: int, noise_std: float, seeds: str, steps: int,
               sigma_min: float, sigma_max: float, rho: float, solver: Solver, device: str, dtype: str, batch: int,
               out: Path) -> dict[str, Any]:
    """Check everything, build the closed form, sample it on per-seed noise, and write ``samples.npz``,
    ``meta.json`` and (for images) ``samples.png`` into ``out``. A failed run leaves no files behind."""
    seed_list = parse_seeds(seeds)
    check_options(dim=dim, components=components, rank=rank, mix_seed=mix_seed, noise_std=noise_std, n=n,
                  subset_seed=subset_seed, steps=steps, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho,
                  batch=batch, model=model)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype)
    if model is Model.empirical and data is None:
        raise InputError("--model empirical needs --data: a .npy/.npz/.pt array of shape (N, ...), CIFAR-10, or "
                         "the samples.npz of an earlier mogsim sample run")
    if model is Model.molrg and (data is not None or n is not None):
        raise InputError(f"--{'data' if data is not None else 'n'} applies to --model empirical only; add --model "
                         "empirical, or leave it out to sample the random MoLRG")
    sigmas = edm_sigmas(steps, sigma_min, sigma_max, rho)
    config: dict[str, Any] = {"model": model.value, "seeds": seeds_record(seeds, seed_list), "steps": steps,
                              "sigma_min": sigma_min, "sigma_max": sigma_max, "rho": rho, "solver": solver.value,
                              "dtype": str(dt).replace("torch.", ""), "batch": batch}
    with output_dir(out) as folder:  # created now (a bad --out fails before any work), removed on failure
        arrays: dict[str, np.ndarray] = {}
        if model is Model.molrg:
            denoiser: Any = MoLRG.random(dim, components, rank, seed=mix_seed, noise_std=noise_std)
            config.update(denoiser.config(), mix_seed=mix_seed)
        else:
            loaded = load_training_set(data, n=n, subset_seed=subset_seed, option="--data")
            denoiser = EmpiricalDenoiser(loaded.as_float(torch.float64).to(dev))
            config.update(data=loaded.record, num_points=denoiser.num_points)
            if loaded.indices is not None:
                arrays["subset_indices"] = loaded.indices
        with _progress(math.ceil(len(seed_list) / batch) * steps, f"sampling {model.value}") as advance:
            samples = torch.cat([
                sample(denoiser, noise_for_seeds(seed_list[b0:b0 + batch], denoiser.sample_shape, dtype=dt,
                                                 device=dev), sigmas, solver.value, progress=advance).cpu()
                for b0 in range(0, len(seed_list), batch)])
        summary = summarize(denoiser, samples)
        arrays.update(samples=samples.numpy(), seeds=np.asarray(seed_list, dtype=np.int64), sigmas=sigmas.numpy())
        write_npz(folder / "samples.npz", **arrays)
        summary["files"] = ["samples.npz", "meta.json"]
        if is_image_batch(tuple(samples.shape)):
            write_image_grid(folder / "samples.png", samples, limit=GRID_LIMIT)
            summary["files"].append("samples.png")
        meta = {"config": config, "summary": summary, "provenance": provenance(dev)}
        write_json(folder / "meta.json", meta)
    return meta


def summarize(denoiser: Any, samples: torch.Tensor) -> dict[str, Any]:
    """What theory predicts, checked: empirical samples copy a training point; MoLRG samples lie on a subspace."""
    if isinstance(denoiser, EmpiricalDenoiser):
        train = denoiser.data.to(torch.float64)
        nearest = denoiser.nearest(samples.to(train.device))
        dist = (samples.to(train) - train[nearest]).flatten(1).norm(dim=1)
        scale = float(train.flatten(1).norm(dim=1).pow(2).mean().sqrt().clamp_min(1e-300))
        return {"copy_tolerance": COPY_TOL, "fraction_copies": float((dist <= COPY_TOL * scale).double().mean()),
                "nearest_index": nearest.cpu().tolist()}
    resid = denoiser.subspace_residual(samples)
    return {"subspace_tolerance": SUBSPACE_TOL, "fraction_on_subspace": float((resid < SUBSPACE_TOL).double().mean())}


def sample_command(
    model: Model = typer.Option(Model.molrg, help="Closed form to sample: a random MoLRG or the empirical "
                                "distribution of --data."),
    data: Optional[Path] = typer.Option(None, help="Training set for --model empirical: a .npy/.npz/.pt array of "
                                        "shape (N, ...) (e.g. the samples.npz of an MoLRG run), or CIFAR-10 "
                                        "(official archive, EDM zip/folder, class folders), scaled to [-1, 1]."),
    n: Optional[int] = typer.Option(None, "--n", help="Keep a seeded nested subset of N training points "
                                    "(class-balanced for CIFAR-10)."),
    subset_seed: int = typer.Option(0, help="Seed of the --n subset."),
    dim: int = typer.Option(48, help=f"MoLRG ambient dimension n (1..{MAX_DIM})."),
    components: int = typer.Option(2, help="MoLRG number of components K."),
    rank: int = typer.Option(4, help="MoLRG rank r of every component (components * rank <= dim)."),
    mix_seed: int = typer.Option(0, help="Seed of the MoLRG's random subspaces."),
    noise_std: float = typer.Option(0.0, help="MoLRG isotropic data noise eta."),
    seeds: str = typer.Option("0-63", help="Noise seeds, e.g. 0-63 or 1,5,9; sample i depends on seed i only "
                              "(at most 10^7 seeds, each below 2^63)."),
    steps: int = typer.Option(18, help=f"EDM noise levels above 0 (1..{MAX_STEPS})."),
    sigma_min: float = typer.Option(0.002, help="Smallest noise level."),
    sigma_max: float = typer.Option(80.0, help="Largest noise level."),
    rho: float = typer.Option(7.0, help="EDM grid exponent."),
    solver: Solver = typer.Option(Solver.heun, help="heun (2 S - 1 calls) or euler (S calls)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    dtype: str = typer.Option("float64", help="float64 (exact) or float32."),
    batch: int = typer.Option(256, help=f"Seeds per batch, 1..{MAX_BATCH} (does not change the samples)."),
    out: Path = typer.Option(Path("runs/sample"), help="Folder for samples.npz, meta.json and, for images, "
                             "samples.png."),
) -> None:
    """Draw samples from a closed-form optimal denoiser with the deterministic EDM sampler."""
    meta = run_sample(model, data=data, n=n, subset_seed=subset_seed, dim=dim, components=components, rank=rank,
                      mix_seed=mix_seed, noise_std=noise_std, seeds=seeds, steps=steps, sigma_min=sigma_min,
                      sigma_max=sigma_max, rho=rho, solver=solver, device=device, dtype=dtype, batch=batch,
                      out=out)
    summary = meta["summary"]
    if "fraction_copies" in summary:
        line = f"{summary['fraction_copies']:.1%} of samples copy a training point (within {COPY_TOL:g} x RMS norm)"
    else:
        line = f"{summary['fraction_on_subspace']:.1%} of samples lie on a subspace (residual < {SUBSPACE_TOL:g})"
    grid = f" and {out / 'samples.png'}" if "samples.png" in summary["files"] else ""
    typer.echo(f"{meta['config']['seeds']['count']} samples -> {out / 'samples.npz'}{grid}; {line}")


def register(app: typer.Typer) -> None:
    app.command("sample")(sample_command)

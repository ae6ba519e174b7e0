"""``mogsim sample``: samples from a closed-form optimal denoiser (MoLRG or the empirical distribution of a file)."""

from __future__ import annotations

import enum
import math
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mogsim.closed_forms import EmpiricalDenoiser, MoLRG
from mogsim.devices import resolve_device, resolve_dtype
from mogsim.errors import InputError
from mogsim.io import ensure_writable_dir, write_json, write_npz
from mogsim.provenance import provenance
from mogsim.sampling import edm_sigmas, noise_for_seeds, sample

from mogsim.parsing import parse_seeds

#: A sample "copies" a training point when it ends within this distance of it, relative to the data's RMS norm.
COPY_TOL = 1e-3
#: A sample lies on a MoLRG subspace when its relative residual off the nearest subspace is below this.
SUBSPACE_TOL = 1e-6


class Model(str, enum.Enum):
    molrg = "molrg"
    empirical = "empirical"


class Solver(str, enum.Enum):
    heun = "heun"
    euler = "euler"


ARRAY_SUFFIXES = (".npy", ".npz", ".pt")


def load_training_set(path: Path, n: Optional[int], subset_seed: int) -> tuple[torch.Tensor, Optional[np.ndarray]]:
    """Training points (float64) and, for CIFAR-10, the subset indices used.

    ``.npy``/``.npz``/``.pt`` files are arrays of shape (N, ...); anything else is read as CIFAR-10 by
    :func:`mogsim.data.load_cifar10` (official archive, EDM zip or folder, class folders) and scaled to [-1, 1].
    ``n`` keeps a seeded nested subset of that size (class-balanced for CIFAR-10).
    """
    if n is not None and n < 1:
        raise InputError(f"--n {n}: pass a subset size >= 1 (or leave it out to use every training point)")
    if not path.exists():
        raise InputError(f"--data {path}: no such file or folder; pass an array file or a CIFAR-10 location")
    if path.suffix.lower() in ARRAY_SUFFIXES:
        data, labels = load_array(path), None
    else:
        from mogsim.data import images_to_tensor, load_cifar10

        images, labels = load_cifar10(path, split="train")
        data = images_to_tensor(images, dtype=torch.float64)
    if n is None:
        return data, None
    from mogsim.data import subset_indices

    idx = subset_indices(data.shape[0], n, subset_seed, labels=labels, balanced=labels is not None)
    return data[torch.from_numpy(idx)], idx


def load_array(path: Path) -> torch.Tensor:
    """Training points from ``.npy``, ``.npz`` (key ``data``, ``x`` or the only array) or ``.pt`` (a tensor)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            arr: Any = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                keys = list(z.keys())
                key = next((k for k in ("data", "x", "samples") if k in keys), keys[0] if len(keys) == 1 else None)
                if key is None:
                    raise InputError(f"--data {path}: holds arrays {keys}; name the training set 'data'")
                arr = z[key]
        else:
            arr = torch.load(path, map_location="cpu", weights_only=True)
    except InputError:
        raise
    except Exception as exc:  # corrupt files: numpy/torch raise many types
        raise InputError(f"--data {path}: cannot read it ({type(exc).__name__}); is it a valid {suffix} file?") from None
    tensor = torch.as_tensor(np.asarray(arr)) if not isinstance(arr, torch.Tensor) else arr
    if tensor.ndim < 2 or tensor.shape[0] < 1 or tensor.is_complex() or tensor.dtype == torch.bool:
        raise InputError(f"--data {path}: has shape {tuple(tensor.shape)} and dtype {tensor.dtype}; "
                         "need real numbers of shape (N, ...) with N >= 1")
    return tensor.to(torch.float64)


def run_sample(model: Model, *, data: Optional[Path], n: Optional[int], subset_seed: int, dim: int,
               components: int, rank: int, mix_seed: int, noise_std: float, seeds: list[int], steps: int,
               sigma_min: float, sigma_max: float, rho: float, solver: Solver, device: str, dtype: str, batch: int, out: Path) -> dict[str, Any]:
    """Build the closed form, sample it on per-seed noise and write ``samples.npz`` and ``meta.json``."""
    dev = resolve_device(device)
    dt = resolve_dtype(dtype)
    if batch < 1:
        raise InputError(f"--batch {batch}; pass a positive batch size")
    sigmas = edm_sigmas(steps, sigma_min, sigma_max, rho)
    config: dict[str, Any] = {"model": model.value, "seeds": [seeds[0], seeds[-1], len(seeds)], "steps": steps,
                              "sigma_min": sigma_min, "sigma_max": sigma_max, "rho": rho, "solver": solver.value,
                              "dtype": str(dt).replace("torch.", ""), "batch": batch}
    subset = None
    if model is Model.molrg:
        denoiser: Any = MoLRG.random(dim, components, rank, seed=mix_seed, noise_std=noise_std)
        config.update(denoiser.config(), mix_seed=mix_seed)
        train = None
    else:
        if data is None:
            raise InputError("--model empirical needs --data (a .npy/.npz/.pt array of shape (N, ...) or CIFAR-10)")
        train, subset = load_training_set(data, n, subset_seed)
        denoiser = EmpiricalDenoiser(train.to(dev))
        config.update(data=str(data), num_points=denoiser.num_points, subset_seed=subset_seed if n else None)
    out = ensure_writable_dir(out)

    shape = denoiser.sample_shape
    results = []
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    n_batches = math.ceil(len(seeds) / batch)
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(f"sampling {model.value}", total=n_batches * steps)
        for b0 in range(0, len(seeds), batch):
            noise = noise_for_seeds(seeds[b0:b0 + batch], shape, dtype=dt, device=dev)
            results.append(sample(denoiser, noise, sigmas, solver.value,
                                  progress=lambda k: bar.advance(task, k)).cpu())
    samples = torch.cat(results)

    summary: dict[str, Any] = {}
    if train is not None:
        nearest = denoiser.nearest(samples.to(dev)).cpu()
        dist = (samples.to(torch.float64) - train[nearest].to(torch.float64)).flatten(1).norm(dim=1)
        scale = float(train.flatten(1).norm(dim=1).pow(2).mean().sqrt().clamp_min(1e-300))
        summary.update(copy_tolerance=COPY_TOL, fraction_copies=float((dist <= COPY_TOL * scale).double().mean()),
                       nearest_index=nearest.tolist())
    else:
        resid = denoiser.subspace_residual(samples)
        summary.update(subspace_tolerance=SUBSPACE_TOL,
                       fraction_on_subspace=float((resid < SUBSPACE_TOL).double().mean()))
    arrays = {"samples": samples.numpy(), "seeds": np.asarray(seeds, dtype=np.int64), "sigmas": sigmas.numpy()}
    if train is not None and subset is not None:
        arrays["subset_indices"] = subset
    write_npz(out / "samples.npz", **arrays)
    meta = {"config": config, "summary": summary, "provenance": provenance(dev)}
    write_json(out / "meta.json", meta)
    return meta


def sample_command(
    model: Model = typer.Option(Model.molrg, help="Closed form to sample: a random MoLRG or the empirical "
                                "distribution of --data."),
    data: Optional[Path] = typer.Option(None, help="Training set for --model empirical: a .npy/.npz/.pt array of "
                                        "shape (N, ...), or CIFAR-10 (official archive, EDM zip/folder, class "
                                        "folders), scaled to [-1, 1]."),
    n: Optional[int] = typer.Option(None, "--n", help="Keep a seeded nested subset of N training points "
                                    "(class-balanced for CIFAR-10)."),
    subset_seed: int = typer.Option(0, help="Seed of the --n subset."),
    dim: int = typer.Option(48, help="MoLRG ambient dimension n."),
    components: int = typer.Option(2, help="MoLRG number of components K."),
    rank: int = typer.Option(4, help="MoLRG rank r of every component."),
    mix_seed: int = typer.Option(0, help="Seed of the MoLRG's random subspaces."),
    noise_std: float = typer.Option(0.0, help="MoLRG isotropic data noise eta."),
    seeds: str = typer.Option("0-63", help="Noise seeds, e.g. 0-63 or 1,5,9; sample i depends on seed i only."),
    steps: int = typer.Option(18, help="EDM noise levels above 0."),
    sigma_min: float = typer.Option(0.002, help="Smallest noise level."),
    sigma_max: float = typer.Option(80.0, help="Largest noise level."),
    rho: float = typer.Option(7.0, help="EDM grid exponent."),
    solver: Solver = typer.Option(Solver.heun, help="heun (2 S - 1 calls) or euler (S calls)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    dtype: str = typer.Option("float64", help="float64 (exact) or float32."),
    batch: int = typer.Option(256, help="Seeds per batch (does not change the samples)."),
    out: Path = typer.Option(Path("runs/sample"), help="Folder for samples.npz and meta.json."),
) -> None:
    """Draw samples from a closed-form optimal denoiser with the deterministic EDM sampler."""
    seed_list = parse_seeds(seeds)
    meta = run_sample(model, data=data, n=n, subset_seed=subset_seed, dim=dim, components=components, rank=rank, mix_seed=mix_seed,
                      noise_std=noise_std, seeds=seed_list, steps=steps, sigma_min=sigma_min,
                      sigma_max=sigma_max, rho=rho, solver=solver, device=device, dtype=dtype, batch=batch,
                      out=out)
    summary = meta["summary"]
    if "fraction_copies" in summary:
        line = f"{summary['fraction_copies']:.1%} of samples copy a training point (within {COPY_TOL:g} x RMS norm)"
    else:
        line = f"{summary['fraction_on_subspace']:.1%} of samples lie on a subspace (residual < {SUBSPACE_TOL:g})"
    typer.echo(f"{len(seed_list)} samples -> {out / 'samples.npz'}; {line}")


def register(app: typer.Typer) -> None:
    app.command("sample")(sample_command)

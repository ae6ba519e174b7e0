"""``mogsim sample``: samples from a closed-form optimal denoiser (MoLRG or the empirical distribution of a file).

The options are generated from :class:`SampleConfig` (help, bounds and shown defaults declared once, as for
``train`` and ``score-match``); its checks name parameters and :func:`~mogsim.cli.options.flag_errors` shows them
as flags. Progress goes through :func:`mogsim.progress.progress_display`, like every command's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import typer

from mogsim.closed_forms import EmpiricalDenoiser, MoLRG
from mogsim.closed_forms.molrg import MAX_DIM
from mogsim.data import load_training_set
from mogsim.denoiser import ProgressFactory
from mogsim.devices import resolve_device, resolve_dtype
from mogsim.errors import InputError
from mogsim.io import is_image_batch, output_dir, write_image_grid, write_json, write_npz
from mogsim.params import check_params, flags, param, resolve
from mogsim.parsing import SEED_LIMIT, parse_seeds, seeds_record
from mogsim.progress import progress_display, silent
from mogsim.provenance import provenance
from mogsim.sampling import MAX_STEPS, SOLVERS, edm_sigmas, noise_for_seeds, sample

from .options import flag_errors, with_options

#: A sample "copies" a training point when it ends within this distance of it, relative to the data's RMS norm.
COPY_TOL = 1e-3
#: A sample lies on a MoLRG subspace when its relative residual off the nearest subspace is below this.
SUBSPACE_TOL = 1e-6
#: Most seeds sampled at once (memory grows with it; the samples do not depend on it).
MAX_BATCH = 65536
#: Most numbers in one MoLRG working buffer, batch * components * dim (2^27 float64 = 1 GiB; a few are alive).
MAX_BUFFER = 2**27
#: How many samples the image grid shows.
GRID_LIMIT = 64
MODELS = ("molrg", "empirical")


@dataclass(frozen=True)
class SampleConfig:
    """What ``mogsim sample`` draws: the closed form (a random MoLRG, or the empirical distribution of ``data``,
    optionally a seeded subset of ``n`` points), the seeds, the EDM grid and solver, and where results go.

    Construction checks every value before any work (:meth:`check`); errors name the parameter.
    """

    model: str = param("molrg", "Closed form to sample: molrg (a random MoLRG) or empirical (the empirical "
                       "distribution of --data).", choices=MODELS)
    data: str | None = param(None, "Training set for --model empirical: a .npy/.npz/.pt array of shape (N, ...) "
                             "(e.g. the samples.npz of an MoLRG run), or CIFAR-10 (official archive, EDM "
                             "zip/folder, class folders), scaled to [-1, 1].")
    n: int | None = param(None, "Keep a seeded nested subset of N training points (class-balanced for CIFAR-10).",
                          min=1, shown="all")
    subset_seed: int = param(0, "Seed of the --n subset.", min=0, max=SEED_LIMIT - 1)
    dim: int = param(48, f"MoLRG ambient dimension n (1..{MAX_DIM}).", min=1, max=MAX_DIM)
    components: int = param(2, "MoLRG number of components K.", min=1, max=MAX_DIM)
    rank: int = param(4, "MoLRG rank r of every component (components * rank <= dim).", min=1, max=MAX_DIM)
    mix_seed: int = param(0, "Seed of the MoLRG's random subspaces.", min=0, max=SEED_LIMIT - 1)
    noise_std: float = param(0.0, "MoLRG isotropic data noise eta.", min=0.0)
    seeds: str = param("0-63", "Noise seeds, e.g. 0-63 or 1,5,9; sample i depends on seed i only (at most 10^7 "
                       "seeds, each below 2^63).")
    steps: int = param(18, f"EDM noise levels above 0 (1..{MAX_STEPS}).", min=1, max=MAX_STEPS)
    sigma_min: float = param(0.002, "Smallest noise level.", positive=True)
    sigma_max: float = param(80.0, "Largest noise level.", positive=True)
    rho: float = param(7.0, "EDM grid exponent.", positive=True)
    solver: str = param("heun", "heun (2 S - 1 calls) or euler (S calls).", choices=SOLVERS)
    device: str = param("auto", "auto, cpu or cuda.")
    dtype: str = param("float64", "float64 (exact) or float32.")
    batch: int = param(256, f"Seeds per batch, 1..{MAX_BATCH} (does not change the samples).", min=1,
                       max=MAX_BATCH)
    out: str = param("runs/sample", "Folder for samples.npz, meta.json and, for images, samples.png.")

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise :class:`InputError` naming the parameter and the fix for any value no run can use."""
        check_params(self)
        self.seed_list()
        k, r, dim = self.components, self.rank, self.dim
        if k * r > dim:
            raise InputError(f"components={k} * rank={r} = {k * r} exceeds dim={dim}; mutually orthogonal subspaces "
                             "need components * rank <= dim", parameter=("components", "rank", "dim"))
        if self.model == "molrg" and self.batch * k * dim > MAX_BUFFER:
            raise InputError(f"batch={self.batch} with components={k} and dim={dim} needs buffers of batch * "
                             f"components * dim = {self.batch * k * dim:,} numbers; pass batch="
                             f"{max(1, MAX_BUFFER // (k * dim))} or less (the samples do not change)",
                             parameter=("batch", "components", "dim"))
        if self.model == "empirical" and self.data is None:
            raise InputError("model='empirical' needs data: a .npy/.npz/.pt array of shape (N, ...), CIFAR-10, or "
                             "the samples.npz of an earlier mogsim sample run", parameter=("model", "data"))
        if self.model == "molrg" and (self.data is not None or self.n is not None):
            given = "data" if self.data is not None else "n"
            raise InputError(f"{given} applies to model empirical only; pass model='empirical', or leave {given} "
                             "out to sample the random MoLRG", parameter=("model", given))
        resolve_device(self.device)
        resolve_dtype(self.dtype)
        self.sigmas()

    def seed_list(self) -> list[int]:
        """The seeds in sample order: sample i uses the i-th."""
        return parse_seeds(self.seeds)

    def sigmas(self) -> torch.Tensor:
        """The EDM noise levels (float64), followed by 0."""
        return edm_sigmas(self.steps, self.sigma_min, self.sigma_max, self.rho)


#: parameter -> flag, for errors (the checks name parameters)
FLAGS = flags(SampleConfig)


def run_sample(config: SampleConfig, *, progress: ProgressFactory = silent) -> dict[str, Any]:
    """Build the closed form, sample it on per-seed noise, and write ``samples.npz``, ``meta.json`` and (for
    images) ``samples.png`` into ``config.out``; return the meta record. A failed run leaves no files behind."""
    seed_list, sigmas = config.seed_list(), config.sigmas()
    dev, dt = resolve_device(config.device), resolve_dtype(config.dtype)
    record: dict[str, Any] = {"model": config.model, "seeds": seeds_record(config.seeds, seed_list),
                              "steps": config.steps, "sigma_min": config.sigma_min, "sigma_max": config.sigma_max,
                              "rho": config.rho, "solver": config.solver, "dtype": str(dt).replace("torch.", ""),
                              "batch": config.batch}
    # created now (a bad --out fails before any work), removed on failure
    with output_dir(config.out, option="--out") as folder:
        arrays: dict[str, np.ndarray] = {}
        if config.model == "molrg":
            denoiser: Any = MoLRG.random(config.dim, config.components, config.rank, seed=config.mix_seed,
                                         noise_std=config.noise_std)
            record.update(denoiser.config(), mix_seed=config.mix_seed)
        else:
            loaded = load_training_set(config.data, n=config.n, subset_seed=config.subset_seed, option="--data")
            denoiser = EmpiricalDenoiser(loaded.as_float(torch.float64).to(dev))
            record.update(data=loaded.record, num_points=denoiser.num_points)
            if loaded.indices is not None:
                arrays["subset_indices"] = loaded.indices
        batches = range(0, len(seed_list), config.batch)
        advance = progress(f"sampling {config.model}", len(batches) * config.steps)
        samples = torch.cat([
            sample(denoiser, noise_for_seeds(seed_list[b0:b0 + config.batch], denoiser.sample_shape, dtype=dt,
                                             device=dev), sigmas, config.solver, progress=advance).cpu()
            for b0 in batches])
        summary = summarize(denoiser, samples)
        arrays.update(samples=samples.numpy(), seeds=np.asarray(seed_list, dtype=np.int64), sigmas=sigmas.numpy())
        write_npz(folder / "samples.npz", **arrays)
        summary["files"] = ["samples.npz", "meta.json"]
        if is_image_batch(tuple(samples.shape)):
            write_image_grid(folder / "samples.png", samples, limit=GRID_LIMIT)
            summary["files"].append("samples.png")
        meta = {"config": record, "summary": summary, "provenance": provenance(dev)}
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


@with_options(SampleConfig)
def sample_command(**options: Any) -> None:
    """Draw samples from a closed-form optimal denoiser with the deterministic EDM sampler."""
    with flag_errors(FLAGS):
        config = resolve(SampleConfig, options)
        with progress_display("auto") as progress:
            meta = run_sample(config, progress=progress)
    summary, out = meta["summary"], Path(config.out)
    if "fraction_copies" in summary:
        line = f"{summary['fraction_copies']:.1%} of samples copy a training point (within {COPY_TOL:g} x RMS norm)"
    else:
        line = f"{summary['fraction_on_subspace']:.1%} of samples lie on a subspace (residual < {SUBSPACE_TOL:g})"
    grid = f" and {out / 'samples.png'}" if "samples.png" in summary["files"] else ""
    typer.echo(f"{meta['config']['seeds']['count']} samples -> {out / 'samples.npz'}{grid}; {line}")


def register(app: typer.Typer) -> None:
    app.command("sample")(sample_command)

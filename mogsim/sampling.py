"""Deterministic EDM probability-flow sampling over any denoiser, from per-seed noise.

* :func:`edm_sigmas`: the EDM noise grid ``sigma_i = (smax^(1/rho) + i/(S-1) (smin^(1/rho) - smax^(1/rho)))^rho``,
  i = 0..S-1, followed by 0.
* :func:`noise_for_seeds`: standard normal noise where sample i depends on seed i only (numpy PCG64, generated on
  the CPU in float64 and then cast and moved), so the same seed gives the same noise in any batch, on any device.
* :func:`sample`: Euler or Heun (2nd order, no correction on the last step to sigma = 0) integration of
  ``dx/dsigma = (x - D(x; sigma)) / sigma`` from ``x = sigma_0 * noise``.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import torch

from .denoiser import Advance, Denoiser
from .devices import resolve_device
from .errors import InputError
from .parsing import SEED_LIMIT, finite_number, whole_number

SOLVERS = ("heun", "euler")
#: Most noise levels one grid may have: EDM samples with 18 to 256; more than this is a typo, not a sampler.
MAX_STEPS = 10_000


class NonFiniteDenoiserError(InputError):
    """The denoiser returned NaN or inf during :func:`sample`; ``step`` and ``sigma`` say where it first did.

    An :class:`InputError` (the denoiser is an argument), so the command line shows it as one line with exit 2.
    """

    def __init__(self, step: int, steps: int, sigma: float, stage: str, bad: int, batch: int, first: int,
                 input_finite: bool) -> None:
        self.step, self.sigma, self.stage = step, sigma, stage
        cause = ("Check the denoiser at that noise level (e.g. use float64, or a network that did not diverge)"
                 if input_finite else "Its input had already overflowed: lower sigma_max or use float64")
        super().__init__(
            f"the denoiser returned NaN or inf at step {step + 1} of {steps} (index {step}; {stage} at sigma = "
            f"{sigma:g}) for {bad} of {batch} samples (first: row {first}); sampling stopped there. {cause}"
        )


def edm_sigmas(steps: int = 18, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
               *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The EDM noise levels: ``steps`` values from ``sigma_max`` down to ``sigma_min``, then 0 (length steps + 1)."""
    steps = whole_number(steps, "steps", lo=1, hi=MAX_STEPS, fix="EDM uses 18")
    sigma_min = finite_number(sigma_min, "sigma_min", lo=0.0, lo_open=True)
    sigma_max = finite_number(sigma_max, "sigma_max", lo=sigma_min, fix="need 0 < sigma_min <= sigma_max")
    rho = finite_number(rho, "rho", lo=0.0, lo_open=True, fix="EDM uses 7")
    _check_float_dtype(dtype)
    if steps > 1 and sigma_min == sigma_max:
        raise InputError(f"sigma_min = sigma_max = {sigma_min:g} gives {steps} equal levels; pass sigma_min < "
                         "sigma_max, or steps=1", parameter=("sigma_min", "sigma_max"))
    t = np.arange(steps, dtype=np.float64) / max(steps - 1, 1)
    hi, lo = sigma_max ** (1.0 / rho), sigma_min ** (1.0 / rho)
    # (1 - t) hi + t lo, not EDM's hi + t (lo - hi): the same levels, but sigma_min survives when hi >> lo
    sig = ((1.0 - t) * hi + t * lo) ** rho
    sig[0], sig[-1] = sigma_max, (sigma_min if steps > 1 else sigma_max)
    if np.any(np.diff(sig) >= 0):
        raise InputError(f"sigma_min={sigma_min:g} and sigma_max={sigma_max:g} are too close for {steps} distinct "
                         "levels in float64; pass fewer steps or a wider range", parameter=("sigma_min", "sigma_max"))
    return torch.from_numpy(np.append(sig, 0.0)).to(dtype)


def _check_float_dtype(dtype: Any) -> None:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise InputError(f"dtype={dtype!r}; pass a floating torch dtype such as torch.float64", parameter="dtype")


def _check_seeds(seeds: Iterable[int]) -> list[int]:
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
        raise InputError(f"seeds={seeds!r}; pass a sequence of whole numbers, e.g. range(64)")
    return [whole_number(s, f"seeds[{i}]", lo=0, hi=SEED_LIMIT - 1) for i, s in enumerate(seeds)]


def noise_for_seeds(seeds: Iterable[int], shape: Sequence[int], *, dtype: torch.dtype = torch.float32,
                    device: str | torch.device = "cpu") -> torch.Tensor:
    """Standard normal noise of shape (len(seeds), *shape); row i comes from seed ``seeds[i]`` alone.

    Drawn with numpy's PCG64 generator seeded with the seed, in float64 on the CPU, then cast to ``dtype`` and moved
    to ``device``; so it does not depend on the batch composition, the device, or torch's RNG.
    """
    seeds = _check_seeds(seeds)
    if not seeds:
        raise InputError("seeds is empty; pass at least one seed")
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Iterable):
        raise InputError(f"shape={shape!r}; pass the shape of one sample as a tuple, e.g. (48,)")
    shape = tuple(whole_number(k, f"shape[{i}]", lo=1) for i, k in enumerate(shape))
    _check_float_dtype(dtype)
    dev = resolve_device(device)
    out = np.empty((len(seeds), *shape), dtype=np.float64)
    for row, seed in enumerate(seeds):
        out[row] = np.random.Generator(np.random.PCG64(seed)).standard_normal(shape)
    return torch.from_numpy(out).to(dtype=dtype).to(dev)


def _levels(sigmas: Any) -> list[float]:
    """The noise levels as Python floats, checked: finite, strictly decreasing, at least two, the last >= 0."""
    if sigmas is None:
        return edm_sigmas().tolist()
    try:
        levels = torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1).tolist()
    except (TypeError, ValueError, RuntimeError):
        raise InputError("sigmas must be a sequence or tensor of numbers, e.g. mogsim.edm_sigmas()") from None
    if len(levels) < 2:
        raise InputError("sigmas needs at least two levels (a start and an end)")
    if not all(np.isfinite(levels)):
        raise InputError("sigmas contains NaN or inf; pass finite noise levels, e.g. mogsim.edm_sigmas()")
    if any(b >= a for a, b in zip(levels, levels[1:])) or levels[-1] < 0:
        raise InputError("sigmas must be strictly decreasing and end >= 0, e.g. mogsim.edm_sigmas()")
    return levels


def sample(denoiser: Denoiser, noise: torch.Tensor, sigmas: torch.Tensor | Sequence[float] | None = None,
           solver: str = "heun", *, progress: Advance | None = None,
           return_trajectory: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Integrate the probability-flow ODE from ``x = sigmas[0] * noise`` down to ``sigmas[-1]`` (usually 0).

    Args:
        denoiser: any ``D(x, sigma)``, closed form or trained network.
        noise: standard normal noise (B, *sample_shape); its dtype and device are the sampler's.
        sigmas: decreasing noise levels, e.g. :func:`edm_sigmas` (the default).
        solver: ``"heun"`` (2 S - 1 denoiser calls for S levels above 0) or ``"euler"`` (S calls).
        progress: an :class:`~mogsim.denoiser.Advance`, called with 1 after each step (e.g. from
            :func:`mogsim.progress.progress_display`).
        return_trajectory: also return the states at every level, shape (len(sigmas), B, *sample_shape).

    Every denoiser output is checked (one reduction per call): NaN or inf raises :class:`NonFiniteDenoiserError`
    naming the step and sigma where it first appeared, instead of returning NaN samples.
    """
    if not callable(denoiser):
        raise InputError(f"denoiser is a {type(denoiser).__name__}; pass a callable D(x, sigma), e.g. a MoLRG")
    if solver not in SOLVERS:
        raise InputError(f"solver={solver!r}; choose one of {', '.join(SOLVERS)}")
    if not isinstance(noise, torch.Tensor) or not noise.is_floating_point() or noise.ndim < 1:
        raise InputError("noise must be a floating-point torch.Tensor of shape (B, *sample_shape)")
    if not bool(torch.isfinite(noise).all()):
        raise InputError("noise contains NaN or inf; pass standard normal noise, e.g. mogsim.noise_for_seeds")
    if progress is not None and not callable(progress):
        raise InputError(f"progress is a {type(progress).__name__}; pass a callable such as a bar's advance")
    if not isinstance(return_trajectory, bool):
        raise InputError(f"return_trajectory={return_trajectory!r}; pass True or False")
    levels = _levels(sigmas)
    steps = len(levels) - 1

    def denoise(x: torch.Tensor, sigma: float, step: int, stage: str) -> torch.Tensor:
        out = denoiser(x, sigma)
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise InputError(f"the denoiser returned {shape} for input of shape {tuple(x.shape)}; D(x, sigma) "
                             "must return a tensor of x's shape")
        finite = torch.isfinite(out).reshape(out.shape[0], -1).all(dim=1)
        if not bool(finite.all()):
            bad = (~finite).nonzero()[:, 0]
            raise NonFiniteDenoiserError(step, steps, sigma, stage, int(bad.numel()), int(out.shape[0]),
                                         int(bad[0]), bool(torch.isfinite(x[bad]).all()))
        return out

    x = noise * levels[0]
    trajectory = [x] if return_trajectory else None
    with torch.no_grad():
        for step, (cur, nxt) in enumerate(zip(levels, levels[1:])):
            slope = (x - denoise(x, cur, step, "Euler step")) / cur
            x_next = x + (nxt - cur) * slope
            if solver == "heun" and nxt > 0:
                slope_next = (x_next - denoise(x_next, nxt, step, "Heun correction")) / nxt
                x_next = x + (nxt - cur) * 0.5 * (slope + slope_next)
            x = x_next
            if trajectory is not None:
                trajectory.append(x)
            if progress is not None:
                progress(1)
    if trajectory is not None:
        return x, torch.stack(trajectory)
    return x

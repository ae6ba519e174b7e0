"""Deterministic EDM probability-flow sampling over any denoiser, from per-seed noise.

* :func:`edm_sigmas`: the EDM noise grid ``sigma_i = (smax^(1/rho) + i/(S-1) (smin^(1/rho) - smax^(1/rho)))^rho``,
  i = 0..S-1, followed by 0.
* :func:`noise_for_seeds`: standard normal noise where sample i depends on seed i only (numpy PCG64, generated on
  the CPU in float64 and then cast and moved), so the same seed gives the same noise in any batch, on any device.
* :func:`sample`: Euler or Heun (2nd order, no correction on the last step to sigma = 0) integration of
  ``dx/dsigma = (x - D(x; sigma)) / sigma`` from ``x = sigma_0 * noise``.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from .errors import InputError

SOLVERS = ("heun", "euler")


def edm_sigmas(steps: int = 18, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
               *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The EDM noise levels: ``steps`` values from ``sigma_max`` down to ``sigma_min``, then 0 (length steps + 1)."""
    if int(steps) != steps or steps < 1:
        raise InputError(f"steps={steps}; pass an integer >= 1")
    if not (0 < sigma_min <= sigma_max) or not np.isfinite(sigma_max):
        raise InputError(f"sigma_min={sigma_min}, sigma_max={sigma_max}; need 0 < sigma_min <= sigma_max < inf")
    if not rho > 0:
        raise InputError(f"rho={rho}; pass a positive number (EDM uses 7)")
    steps = int(steps)
    i = np.arange(steps, dtype=np.float64)
    denom = max(steps - 1, 1)
    hi, lo = sigma_max ** (1.0 / rho), sigma_min ** (1.0 / rho)
    sig = (hi + i / denom * (lo - hi)) ** rho
    return torch.from_numpy(np.append(sig, 0.0)).to(dtype)


def _check_seeds(seeds: Iterable[int]) -> list[int]:
    out = []
    for s in seeds:
        if isinstance(s, (bool, np.bool_)) or int(s) != s or int(s) < 0:
            raise InputError(f"seed {s!r} is not a non-negative integer")
        out.append(int(s))
    return out


def noise_for_seeds(seeds: Iterable[int], shape: Sequence[int], *, dtype: torch.dtype = torch.float32,
                    device: str | torch.device = "cpu") -> torch.Tensor:
    """Standard normal noise of shape (len(seeds), *shape); row i comes from seed ``seeds[i]`` alone.

    Drawn with numpy's PCG64 generator seeded with the seed, in float64 on the CPU, then cast to ``dtype`` and moved
    to ``device``; so it does not depend on the batch composition, the device, or torch's RNG.
    """
    seeds = _check_seeds(seeds)
    shape = tuple(int(k) for k in shape)
    if not seeds:
        raise InputError("seeds is empty; pass at least one seed")
    out = np.empty((len(seeds), *shape), dtype=np.float64)
    for row, seed in enumerate(seeds):
        out[row] = np.random.Generator(np.random.PCG64(seed)).standard_normal(shape)
    return torch.from_numpy(out).to(dtype=dtype).to(device)


Denoise = Callable[[torch.Tensor, float], torch.Tensor]


def sample(denoiser: Denoise, noise: torch.Tensor, sigmas: torch.Tensor | Sequence[float] | None = None,
           solver: str = "heun", *, progress: Callable[[int], None] | None = None,
           return_trajectory: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Integrate the probability-flow ODE from ``x = sigmas[0] * noise`` down to ``sigmas[-1]`` (usually 0).

    Args:
        denoiser: any ``D(x, sigma)``, closed form or trained network.
        noise: standard normal noise (B, *sample_shape); its dtype and device are the sampler's.
        sigmas: decreasing noise levels, e.g. :func:`edm_sigmas` (the default).
        solver: ``"heun"`` (2 S - 1 denoiser calls for S levels above 0) or ``"euler"`` (S calls).
        progress: called with 1 after each step (e.g. a progress bar's ``advance``).
        return_trajectory: also return the states at every level, shape (len(sigmas), B, *sample_shape).
    """
    if solver not in SOLVERS:
        raise InputError(f"solver={solver!r}; choose one of {', '.join(SOLVERS)}")
    if not isinstance(noise, torch.Tensor) or not noise.is_floating_point():
        raise InputError("noise must be a floating-point torch.Tensor of shape (B, *sample_shape)")
    levels = edm_sigmas() if sigmas is None else torch.as_tensor(sigmas, dtype=torch.float64)
    levels_list = [float(s) for s in levels.reshape(-1)]
    if len(levels_list) < 2:
        raise InputError("sigmas needs at least two levels (a start and an end)")
    if any(b >= a for a, b in zip(levels_list, levels_list[1:])) or levels_list[-1] < 0:
        raise InputError("sigmas must be strictly decreasing and end >= 0, e.g. mogsim.edm_sigmas()")

    x = noise * levels_list[0]
    trajectory = [x] if return_trajectory else None
    with torch.no_grad():
        for cur, nxt in zip(levels_list, levels_list[1:]):
            slope = (x - denoiser(x, cur)) / cur
            x_next = x + (nxt - cur) * slope
            if solver == "heun" and nxt > 0:
                slope_next = (x_next - denoiser(x_next, nxt)) / nxt
                x_next = x + (nxt - cur) * 0.5 * (slope + slope_next)
            x = x_next
            if trajectory is not None:
                trajectory.append(x)
            if progress is not None:
                progress(1)
    if trajectory is not None:
        return x, torch.stack(trajectory)
    return x

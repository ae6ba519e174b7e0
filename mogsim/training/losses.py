"""Denoising score-matching losses with the noise-level distributions and weights of Karras et al. 2022.

Per sample: ``lambda(sigma) * mean_i (D(y + sigma n; sigma)_i - y_i)^2`` with ``n ~ N(0, I)``.

* EDM: ``ln sigma ~ N(P_mean, P_std^2)`` (-1.2, 1.2), ``lambda = (sigma^2 + sd^2) / (sigma sd)^2``.
* VP: ``t ~ U(eps_t, 1)`` (eps_t = 1e-5), ``sigma = sigma_VP(t)`` (beta_d 19.9, beta_min 0.1), ``lambda = 1/sigma^2``.

Inputs use mogsim's scale-1 convention ``x = y + sigma n`` for both (the VP preconditioning rescales inside).
The per-sample value here is a mean over coordinates (so it is comparable across sample sizes); the training
objective multiplies it by the number of coordinates, i.e. sums over coordinates as EDM does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Union

import torch

from ..conventions import VPSchedule
from ..errors import InputError


@dataclass(frozen=True)
class EDMLoss:
    """EDM's noise distribution and weight (``sigma_data`` must match the preconditioning's)."""

    P_mean: float = -1.2
    P_std: float = 1.2
    sigma_data: float = 0.5

    name = "edm"

    def sample_sigma(self, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """(n,) noise levels, float32."""
        z = torch.randn(n, generator=generator, device=device, dtype=torch.float32)
        return torch.exp(z * self.P_std + self.P_mean)

    def weight(self, sigma: torch.Tensor) -> torch.Tensor:
        sd = self.sigma_data
        return (sigma * sigma + sd * sd) / (sigma * sd) ** 2

    def record(self) -> dict[str, Any]:
        return {"name": self.name, **asdict(self)}


@dataclass(frozen=True)
class VPLoss:
    """VP's noise distribution (uniform time) and weight ``1 / sigma^2``."""

    beta_d: float = 19.9
    beta_min: float = 0.1
    epsilon_t: float = 1e-5

    name = "vp"

    def sample_sigma(self, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        u = torch.rand(n, generator=generator, device=device, dtype=torch.float32)
        t = u * (1.0 - self.epsilon_t) + self.epsilon_t
        return VPSchedule(self.beta_d, self.beta_min).sigma(t)

    def weight(self, sigma: torch.Tensor) -> torch.Tensor:
        return 1.0 / (sigma * sigma)

    def record(self) -> dict[str, Any]:
        return {"name": self.name, **asdict(self)}


Loss = Union[EDMLoss, VPLoss]


def make_loss(precond: str, *, sigma_data: float = 0.5) -> Loss:
    """The loss that belongs to a preconditioning name (``edm`` or ``vp``)."""
    key = str(precond).strip().lower()
    if key == "edm":
        return EDMLoss(sigma_data=sigma_data)
    if key == "vp":
        return VPLoss()
    raise InputError(f"--precond {precond!r} is not one of edm, vp")


def per_sample_loss(denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], loss: Loss, y: torch.Tensor,
                    sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """(B,) weighted squared error, mean over coordinates, for clean ``y``, noise levels ``sigma`` (B,) and
    standard normal ``noise`` shaped like ``y``. ``denoise(x, sigma)`` takes a (B,) sigma (unchecked path)."""
    s = sigma.reshape((-1,) + (1,) * (y.ndim - 1))
    d = denoise(y + s * noise, sigma)
    err = (d.float() - y.float()) ** 2
    return loss.weight(sigma.float()) * err.reshape(err.shape[0], -1).mean(dim=1)

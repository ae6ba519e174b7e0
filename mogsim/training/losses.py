"""Denoising score-matching losses, and the one registry of preconditionings with the loss each is trained with.

A loss object owns the distribution of training noise levels and the per-sample weight; per sample it is
``lambda(sigma) * mean_i (D(y + sigma n; sigma)_i - y_i)^2`` with ``n ~ N(0, I)``. The weight is the
preconditioning's own (:mod:`mogsim.conventions`, Karras et al. 2022, Table 1), so the formula exists once:

* ``edm``: ``ln sigma ~ N(P_mean, P_std^2)`` (-1.2, 1.2), ``lambda = 1 / c_out^2 = (sigma^2 + sd^2) / (sigma sd)^2``
  with ``sd`` = ``sigma_data`` (a float, or a tensor with one value per member shaped to broadcast against sigma);
* ``vp``: ``t ~ U(eps_t, 1)`` (eps_t = 1e-5), ``sigma = sigma_VP(t)`` (beta_d 19.9, beta_min 0.1), ``lambda = 1/sigma^2``;
* ``identity`` (nets that are denoisers by construction, e.g. paper 2's low-rank denoiser; mogsim's convention):
  EDM's ``ln sigma ~ N(P_mean, P_std^2)`` and weight 1, the plain denoising error ``E||D - y||^2``; with
  ``sigma_range = (lo, hi)``, ``ln sigma ~ U(ln lo, ln hi)`` instead (the low-rank denoiser trains reliably with
  (0.002, 0.1): EDM's log-normal puts much weight on large sigma, where the gradient is mostly noise).

Inputs use mogsim's scale-1 convention ``x = y + sigma n`` for all (the VP preconditioning rescales inside). The
per-sample value here is a mean over coordinates (comparable across sample sizes); the training objective multiplies
it by the number of coordinates, i.e. sums over coordinates as EDM does.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence, Union

import torch

from ..conventions import EDMPrecond, VPPrecond, VPSchedule
from ..errors import InputError
from ..nets.precond import IdentityPrecond, Precond

Shape = Union[int, Sequence[int]]


def _log_normal(shape: Shape, generator: torch.Generator, device: torch.device, mean: float, std: float
                ) -> torch.Tensor:
    z = torch.randn(shape, generator=generator, device=device, dtype=torch.float32)
    return torch.exp(z * std + mean)


@dataclass(frozen=True)
class EDMLoss:
    """EDM's noise distribution and weight (``sigma_data`` must match the preconditioning's)."""

    P_mean: float = -1.2
    P_std: float = 1.2
    sigma_data: Any = 0.5

    name = "edm"

    def sample_sigma(self, shape: Shape, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """Noise levels of ``shape``, float32."""
        return _log_normal(shape, generator, device, self.P_mean, self.P_std)

    def weight(self, sigma: torch.Tensor) -> torch.Tensor:
        return EDMPrecond(sigma_data=self.sigma_data).loss_weight(sigma)


@dataclass(frozen=True)
class VPLoss:
    """VP's noise distribution (uniform time) and weight ``1 / sigma^2``."""

    beta_d: float = 19.9
    beta_min: float = 0.1
    epsilon_t: float = 1e-5

    name = "vp"

    def sample_sigma(self, shape: Shape, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        u = torch.rand(shape, generator=generator, device=device, dtype=torch.float32)
        t = u * (1.0 - self.epsilon_t) + self.epsilon_t
        return VPSchedule(self.beta_d, self.beta_min).sigma(t)

    def weight(self, sigma: torch.Tensor) -> torch.Tensor:
        return VPPrecond(self.beta_d, self.beta_min).loss_weight(sigma)


@dataclass(frozen=True)
class IdentityLoss:
    """Weight 1, for denoisers by construction: EDM's noise distribution, or log-uniform on ``sigma_range``."""

    P_mean: float = -1.2
    P_std: float = 1.2
    sigma_range: tuple[float, ...] | None = None

    name = "identity"

    def __post_init__(self) -> None:
        if self.sigma_range is not None:
            lo, hi = (tuple(self.sigma_range) + (0.0, 0.0))[:2]
            if len(self.sigma_range) != 2 or not 0 < lo < hi:
                raise InputError(f"sigma_range={list(self.sigma_range)}: pass two noise levels 0 < lo < hi",
                                 parameter="sigma_range")

    def sample_sigma(self, shape: Shape, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        if self.sigma_range is None:
            return _log_normal(shape, generator, device, self.P_mean, self.P_std)
        lo, hi = (math.log(v) for v in self.sigma_range)
        return torch.exp(torch.rand(shape, generator=generator, device=device, dtype=torch.float32) * (hi - lo) + lo)

    def weight(self, sigma: torch.Tensor) -> torch.Tensor:
        return IdentityPrecond().loss_weight(sigma)


Loss = Union[EDMLoss, VPLoss, IdentityLoss]


@dataclass(frozen=True)
class Parametrisation:
    """A preconditioning and the loss trained with it."""

    precond: Callable[..., Precond]
    loss: Callable[..., Loss]
    description: str

    @property
    def has_sigma_data(self) -> bool:
        return "sigma_data" in {f.name for f in dataclasses.fields(self.precond)}  # type: ignore[arg-type]


PARAMETRISATIONS: dict[str, Parametrisation] = {
    "edm": Parametrisation(EDMPrecond, EDMLoss, "EDM (Karras et al. 2022): c_skip, c_out, c_in from sigma_data"),
    "vp": Parametrisation(VPPrecond, VPLoss, "VP (DDPM): the paper's CIFAR-10 runs"),
    "identity": Parametrisation(IdentityPrecond, IdentityLoss, "none: the net is a denoiser by construction"),
}
PRECONDS = tuple(PARAMETRISATIONS)


def parametrisation(name: str) -> Parametrisation:
    try:
        return PARAMETRISATIONS[name]
    except KeyError:
        raise InputError(f"precond={name!r}: choose one of {', '.join(PRECONDS)}", parameter="precond") from None


def make_precond(name: str, *, sigma_data: float = 0.5) -> Precond:
    """The preconditioning called ``name`` (``sigma_data`` is used by those that have one: EDM)."""
    entry = parametrisation(name)
    return entry.precond(sigma_data=sigma_data) if entry.has_sigma_data else entry.precond()


def make_loss(name: str, *, sigma_data: Any = 0.5, p_mean: float = -1.2, p_std: float = 1.2,
              sigma_range: Sequence[float] | None = None) -> Loss:
    """The loss trained with preconditioning ``name``; each takes the options it has (``p_mean``/``p_std``: EDM and
    identity; ``sigma_data``: EDM, a float or a per-member tensor; ``sigma_range``: identity only)."""
    entry = parametrisation(name)
    given = {"P_mean": p_mean, "P_std": p_std, "sigma_data": sigma_data}
    names = {f.name for f in dataclasses.fields(entry.loss)}  # type: ignore[arg-type]
    if sigma_range is not None:
        if "sigma_range" not in names:
            raise InputError(f"sigma_range: only the identity loss draws sigma log-uniformly, not {name}",
                             parameter="sigma_range")
        given["sigma_range"] = tuple(float(v) for v in sigma_range)
    return entry.loss(**{k: v for k, v in given.items() if k in names})


def loss_record(loss: Loss) -> dict[str, Any]:
    """A JSON-ready description of a loss: its name and fields (a per-member ``sigma_data`` tensor as a list)."""
    fields = {f.name: getattr(loss, f.name) for f in dataclasses.fields(loss)}  # type: ignore[arg-type]
    return {"name": loss.name, **{k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in fields.items()}}


def per_sample_loss(denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], loss: Loss, y: torch.Tensor,
                    sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Weighted squared error, mean over coordinates, for clean ``y`` (B, *shape) or (M, B, *shape), noise levels
    ``sigma`` (B,) or (M, B) and standard normal ``noise`` shaped like ``y``; returns sigma's shape.
    ``denoise(x, sigma)`` is the unchecked training path of a denoiser."""
    s = sigma.reshape(tuple(sigma.shape) + (1,) * (y.ndim - sigma.ndim))
    d = denoise(y + s * noise, sigma)
    err = (d.float() - y.float()) ** 2
    return loss.weight(sigma.float()) * err.flatten(sigma.ndim).mean(dim=-1)

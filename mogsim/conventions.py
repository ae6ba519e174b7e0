"""Noise parametrisations and the conversions between denoiser, score and noise prediction.

mogsim uses the EDM form (Karras et al. 2022) throughout: a noisy sample is ``x_t = s_t (x0 + sigma_t eps)``, so
``p(x_t | x0) = N(s_t x0, s_t^2 sigma_t^2 I)``. With ``s = 1`` (VE / EDM) this is ``x = x0 + sigma eps``; VP is the
same process rescaled by ``s = 1 / sqrt(1 + sigma^2)``. Every denoiser in mogsim is written for ``s = 1`` and
returns ``D(x; sigma) = E[x0 | x]``; for other scales evaluate it at ``x_t / s_t`` (:func:`scaled_denoiser`).

Tweedie ("Lemma 1"): ``grad log p(x_t) = (s D(x_t / s; sigma) - x_t) / (s^2 sigma^2)``, which for ``s = 1`` is
``(D - x) / sigma^2``. The noise prediction is ``eps = (x_t - s D) / (s sigma)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

import numpy as np
import torch

from .errors import InputError

Sigma = Union[float, torch.Tensor]


def _sigma_tensor(sigma: Sigma, name: str) -> torch.Tensor:
    """``sigma`` as a tensor: tensors as they are, Python and numpy numbers as float64 (never rounded to float32)."""
    if isinstance(sigma, np.ndarray):
        sigma = torch.from_numpy(sigma)
    if isinstance(sigma, torch.Tensor):
        if sigma.dtype == torch.bool or sigma.is_complex():
            raise InputError(f"{name} has dtype {sigma.dtype}; pass real noise levels")
        return sigma
    if isinstance(sigma, (bool, np.bool_)) or not isinstance(sigma, (int, float, np.integer, np.floating)):
        raise InputError(f"{name}={sigma!r} is a {type(sigma).__name__}; pass a float or a (B,) tensor of noise "
                         "levels")
    return torch.tensor(float(sigma), dtype=torch.float64)


def sigma_like(sigma: Sigma, x: torch.Tensor, *, name: str = "sigma", dtype: torch.dtype | None = None
               ) -> torch.Tensor:
    """Return ``sigma`` as a tensor on x's device that broadcasts against ``x`` (B, *sample_shape).

    ``sigma`` may be a Python or numpy number, a 0-d tensor, or a (B,) tensor with one noise level per sample;
    anything else is an :class:`InputError` naming ``name``. The result has ``dtype`` (default: x's dtype).
    """
    s = _sigma_tensor(sigma, name).to(device=x.device, dtype=dtype or x.dtype)
    if s.ndim == 0:
        return s
    if s.ndim == 1 and s.shape[0] == x.shape[0]:
        return s.reshape((-1,) + (1,) * (x.ndim - 1))
    raise InputError(
        f"{name} has shape {tuple(s.shape)}; pass a float or a ({x.shape[0]},) tensor, one value per sample"
    )


def check_positive_sigma(sigma: Sigma, *, name: str = "sigma") -> torch.Tensor:
    """Raise :class:`InputError` unless every noise level is a finite number > 0; return them as float64.

    The check runs in float64 whatever the caller's dtype, so 1e-300 and 1e300 are valid noise levels.
    """
    s = _sigma_tensor(sigma, name).detach().to(torch.float64)
    bad = ~(torch.isfinite(s) & (s > 0))
    if bool(bad.any()):
        first = float(s.reshape(-1)[bad.reshape(-1)][0])
        raise InputError(f"{name} must be finite and > 0 (got {first:g}); the sigma -> 0 limit is the nearest "
                         "point of the support, pass a small positive value instead")
    return s


# --- conversions (general scale s; s = 1 is VE / EDM) -------------------------------------------------------------

def score_from_denoiser(denoised: torch.Tensor, x: torch.Tensor, sigma: Sigma, scale: Sigma = 1.0) -> torch.Tensor:
    """Tweedie: ``grad log p(x) = (s D - x) / (s^2 sigma^2)``."""
    s = sigma_like(scale, x, name="scale")
    sig = sigma_like(sigma, x)
    return (s * denoised - x) / (s * s * sig * sig)


def denoiser_from_score(score: torch.Tensor, x: torch.Tensor, sigma: Sigma, scale: Sigma = 1.0) -> torch.Tensor:
    """Inverse of :func:`score_from_denoiser`: ``D = (x + s^2 sigma^2 score) / s``."""
    s = sigma_like(scale, x, name="scale")
    sig = sigma_like(sigma, x)
    return (x + s * s * sig * sig * score) / s


def eps_from_denoiser(denoised: torch.Tensor, x: torch.Tensor, sigma: Sigma, scale: Sigma = 1.0) -> torch.Tensor:
    """Noise prediction ``eps = (x - s D) / (s sigma)``, so that ``x = s (D + sigma eps)``."""
    s = sigma_like(scale, x, name="scale")
    sig = sigma_like(sigma, x)
    return (x - s * denoised) / (s * sig)


def denoiser_from_eps(eps: torch.Tensor, x: torch.Tensor, sigma: Sigma, scale: Sigma = 1.0) -> torch.Tensor:
    """Inverse of :func:`eps_from_denoiser`: ``D = x / s - sigma eps``."""
    s = sigma_like(scale, x, name="scale")
    sig = sigma_like(sigma, x)
    return x / s - sig * eps


def scaled_denoiser(denoiser: Callable[[torch.Tensor, Sigma], torch.Tensor], scale: Sigma
                    ) -> Callable[[torch.Tensor, Sigma], torch.Tensor]:
    """Turn an ``s = 1`` denoiser into one for inputs ``x_t = s (x0 + sigma eps)``: ``D_s(x_t) = D(x_t / s)``."""

    def d(x: torch.Tensor, sigma: Sigma) -> torch.Tensor:
        return denoiser(x / sigma_like(scale, x, name="scale"), sigma)

    return d


# --- schedules: (s(t), sigma(t)) --------------------------------------------------------------------------------

@dataclass(frozen=True)
class EDMSchedule:
    """EDM / Karras: ``sigma(t) = t``, ``s(t) = 1``."""

    name: str = "edm"

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(t)

    def scale(self, t: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(torch.as_tensor(t))

    def t_of_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(sigma)


@dataclass(frozen=True)
class VESchedule:
    """Variance exploding (Song et al. 2021): ``sigma(t) = sqrt(t)``, ``s(t) = 1``."""

    name: str = "ve"

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(t).sqrt()

    def scale(self, t: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(torch.as_tensor(t))

    def t_of_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(sigma) ** 2


@dataclass(frozen=True)
class VPSchedule:
    """Variance preserving (DDPM / Song et al. 2021) in EDM form.

    ``sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1)`` and ``s(t) = 1 / sqrt(1 + sigma(t)^2)``, so that
    ``x_t = s x0 + s sigma eps`` has unit variance for unit-variance data.
    """

    beta_d: float = 19.9
    beta_min: float = 0.1
    name: str = "vp"

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t)
        return torch.expm1(0.5 * self.beta_d * t * t + self.beta_min * t).sqrt()

    def scale(self, t: torch.Tensor) -> torch.Tensor:
        return 1.0 / torch.sqrt(1.0 + self.sigma(t) ** 2)

    def t_of_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        sigma = torch.as_tensor(sigma)
        b, bd = self.beta_min, self.beta_d
        return (torch.sqrt(b * b + 2 * bd * torch.log1p(sigma * sigma)) - b) / bd


def vp_scale(sigma: Sigma) -> torch.Tensor:
    """The VP scale ``s = 1 / sqrt(1 + sigma^2)`` belonging to noise level ``sigma``."""
    sigma = torch.as_tensor(sigma)
    return torch.rsqrt(1.0 + sigma * sigma)


# --- preconditioning (EDM, Karras et al. 2022, Table 1) ------------------------------------------------------------

class Preconditioning:
    """What every preconditioning shares: ``D(x; sigma) = c_skip x + c_out F(c_in x; c_noise)``, trained with the
    loss weight ``lambda = 1 / c_out^2`` (EDM's rule, which gives the network a unit-weight target at every noise
    level; VP's and VE's ``1 / sigma^2`` are this rule too).

    Subclasses override the coefficients that differ from the neutral ones here: ``c_skip = c_out = c_in = 1`` and
    ``c_noise = sigma``.
    """

    def c_skip(self, sigma: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(sigma)

    def c_out(self, sigma: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(sigma)

    def c_in(self, sigma: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(sigma)

    def c_noise(self, sigma: torch.Tensor) -> torch.Tensor:
        return sigma

    def loss_weight(self, sigma: torch.Tensor) -> torch.Tensor:
        return 1.0 / self.c_out(sigma) ** 2


@dataclass(frozen=True)
class EDMPrecond(Preconditioning):
    """EDM preconditioning: ``D(x; sigma) = c_skip x + c_out F(c_in x; c_noise)`` and the loss weight.

    ``sigma_data`` is the data's standard deviation (0.5 for images in [-1, 1]). The training loss
    ``lambda(sigma) ||D - x0||^2`` with ``lambda = 1 / c_out^2`` gives the network a unit-variance target at every
    noise level.
    """

    sigma_data: float = 0.5

    def c_skip(self, sigma: torch.Tensor) -> torch.Tensor:
        sd2 = self.sigma_data**2
        return sd2 / (sigma * sigma + sd2)

    def c_out(self, sigma: torch.Tensor) -> torch.Tensor:
        sd = self.sigma_data
        return sigma * sd / torch.sqrt(sigma * sigma + sd * sd)

    def c_in(self, sigma: torch.Tensor) -> torch.Tensor:
        return 1.0 / torch.sqrt(sigma * sigma + self.sigma_data**2)

    def c_noise(self, sigma: torch.Tensor) -> torch.Tensor:
        return torch.log(sigma) / 4.0


@dataclass(frozen=True)
class VPPrecond(Preconditioning):
    """VP preconditioning (Karras et al. 2022, Table 1): ``c_skip = 1``, ``c_out = -sigma``,
    ``c_in = 1 / sqrt(sigma^2 + 1)``, ``c_noise = (M - 1) t(sigma)``, loss weight ``1 / sigma^2``."""

    beta_d: float = 19.9
    beta_min: float = 0.1
    M: int = 1000

    def c_out(self, sigma: torch.Tensor) -> torch.Tensor:
        return -sigma

    def c_in(self, sigma: torch.Tensor) -> torch.Tensor:
        return torch.rsqrt(sigma * sigma + 1.0)

    def c_noise(self, sigma: torch.Tensor) -> torch.Tensor:
        return (self.M - 1) * VPSchedule(self.beta_d, self.beta_min).t_of_sigma(sigma)


@dataclass(frozen=True)
class VEPrecond(Preconditioning):
    """VE preconditioning (Karras et al. 2022, Table 1): ``c_skip = 1``, ``c_out = sigma``, ``c_in = 1``,
    ``c_noise = log(sigma / 2)``, loss weight ``1 / sigma^2``."""

    def c_out(self, sigma: torch.Tensor) -> torch.Tensor:
        return sigma

    def c_noise(self, sigma: torch.Tensor) -> torch.Tensor:
        return torch.log(0.5 * sigma)

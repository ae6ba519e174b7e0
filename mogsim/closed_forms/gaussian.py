"""The optimal denoiser of a Gaussian ``N(mu, S)``: ``D(x; sigma) = mu + S (S + sigma^2 I)^-1 (x - mu)``.

Computed in the eigenbasis of ``S = Q diag(lam) Q^T``: ``D = mu + Q diag(lam / (lam + sigma^2)) Q^T (x - mu)``,
which is exact at every sigma, including singular (low-rank) covariances and sigma -> 0. A low-rank covariance
``F F^T`` keeps only the thin basis of F (d x r), so memory is O(d r).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import torch

from ..conventions import Sigma, check_positive_sigma
from ..denoiser import ClosedFormDenoiser
from ..errors import InputError
from ..parsing import whole_number


def _tensor64(value: Any, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        try:  # through numpy: torch.as_tensor would round Python floats to float32 first
            value = torch.from_numpy(np.asarray(value))
        except (TypeError, ValueError):
            raise InputError(f"{name} must be an array or tensor of real numbers") from None
    if value.dtype == torch.bool or value.is_complex():
        raise InputError(f"{name} has dtype {value.dtype}; pass an array or tensor of real numbers")
    value = value.to(torch.float64)
    if not bool(torch.isfinite(value).all()):
        raise InputError(f"{name} contains NaN or infinite values")
    return value


def _zero_round_off(evals: torch.Tensor, d: int) -> torch.Tensor:
    """Set eigenvalues below the round-off level ``d * eps * max`` to exactly 0 (and negatives of that size too).

    A rank-deficient covariance comes out of an eigensolver with "zero" eigenvalues of order 1e-16; left in, they
    would make the sigma -> 0 limit depend on round-off instead of projecting onto the support.
    """
    cutoff = d * torch.finfo(torch.float64).eps * float(evals.abs().max())
    return torch.where(evals > cutoff, evals, torch.zeros_like(evals))


class GaussianDenoiser(ClosedFormDenoiser):
    """Posterior mean under ``N(mean, cov)``.

    Args:
        mean: shape ``sample_shape`` (or (d,)).
        cov: (d, d) symmetric positive semi-definite covariance of the flattened sample.
        sample_shape: shape of one sample; default ``mean.shape``.

    Use :meth:`from_factor` for a low-rank covariance ``F F^T``. All arithmetic is done in float64 internally
    and returned in the query's dtype.
    """

    def __init__(self, mean: Any, cov: Any, *, sample_shape: tuple[int, ...] | None = None) -> None:
        mean64 = _tensor64(mean, "mean")
        cov64 = _tensor64(cov, "cov")
        d = mean64.numel()
        if cov64.shape != (d, d):
            raise InputError(f"cov has shape {tuple(cov64.shape)}; expected ({d}, {d}) to match mean")
        if not torch.allclose(cov64, cov64.T, rtol=1e-10, atol=1e-12 * float(cov64.abs().max().clamp_min(1))):
            raise InputError("cov is not symmetric; pass a symmetric positive semi-definite matrix")
        evals, evecs = torch.linalg.eigh(0.5 * (cov64 + cov64.T))
        scale = float(evals.abs().max().clamp_min(1e-300))
        if float(evals.min()) < -1e-10 * scale:
            raise InputError(f"cov has a negative eigenvalue ({float(evals.min()):.3g}); it must be positive "
                             "semi-definite")
        self._init(mean64, evecs, _zero_round_off(evals, d), d, sample_shape or tuple(mean64.shape))

    @classmethod
    def from_factor(cls, mean: Any, factor: Any, *, sample_shape: tuple[int, ...] | None = None
                    ) -> "GaussianDenoiser":
        """The Gaussian ``N(mean, F F^T)`` for a (d, r) factor ``F``; only the r-dimensional range is stored."""
        mean64 = _tensor64(mean, "mean")
        f64 = _tensor64(factor, "factor")
        d = mean64.numel()
        if f64.ndim != 2 or f64.shape[0] != d:
            raise InputError(f"factor has shape {tuple(f64.shape)}; expected ({d}, r) to match mean")
        u, s, _ = torch.linalg.svd(f64, full_matrices=False)
        self = cls.__new__(cls)
        self._init(mean64, u, _zero_round_off(s * s, d), d, sample_shape or tuple(mean64.shape))
        return self

    def _init(self, mean64: torch.Tensor, basis: torch.Tensor, evals: torch.Tensor, d: int,
              sample_shape: tuple[int, ...]) -> None:
        if isinstance(sample_shape, (str, bytes)) or not isinstance(sample_shape, Iterable):
            raise InputError(f"sample_shape={sample_shape!r}; pass a tuple such as (3, 32, 32)")
        shape = tuple(whole_number(k, f"sample_shape[{i}]", lo=1) for i, k in enumerate(sample_shape))
        if math.prod(shape) != d:
            raise InputError(f"sample_shape {shape} has {math.prod(shape)} entries, but mean has {d}")
        self.sample_shape = shape
        self._mean = mean64.reshape(d)
        self._basis = basis  # (d, k) orthonormal columns
        self._evals = evals  # (k,)
        #: True when the basis spans all d dimensions (full covariance given to the constructor).
        self._full = basis.shape[1] == d
        self._cache: dict[torch.device, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    @property
    def mean(self) -> torch.Tensor:
        """The mean, float64, shape sample_shape."""
        return self._mean.reshape(self.sample_shape)

    @property
    def cov(self) -> torch.Tensor:
        """The covariance of the flattened sample, float64, (d, d)."""
        return (self._basis * self._evals) @ self._basis.T

    def _on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if device not in self._cache:
            self._cache[device] = (self._mean.to(device), self._basis.to(device), self._evals.to(device))
        return self._cache[device]

    def _parts(self, flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Float64 pieces: the mean, x's eigen-coefficients, its residual off the basis, the basis, the eigenvalues.

        Where an eigenvalue is 0, the formulas that use these pieces use sigma alone (``/ sigma / sigma``, ``2 log sigma``), so
        no ``0 / 0`` appears when ``sigma^2`` underflows (sigma = 1e-300) and nothing overflows at sigma = 1e300.
        """
        mean, basis, evals = self._on(flat.device)
        centred = flat.to(torch.float64) - mean
        coef = centred @ basis  # (B, k)
        residual = centred - coef @ basis.T
        return mean, coef, residual, basis, evals

    def _denoise_flat(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        mean, coef, _, basis, evals = self._parts(x)
        shrink = torch.where(evals > 0, evals / (evals + sigma * sigma), torch.zeros_like(evals))  # (B, k)
        return (mean + (coef * shrink) @ basis.T).to(x.dtype)

    @property
    def eigenvalues(self) -> torch.Tensor:
        """The covariance's eigenvalues ``lam``, descending, float64, (d,) (round-off zeros set to 0)."""
        return torch.cat([self._evals, self._evals.new_zeros(self.dim - self._evals.numel())]).sort(
            descending=True).values

    def jacobian_singular_values(self, sigma: float) -> torch.Tensor:
        """The singular values of ``dD/dx = Q diag(lam / (lam + sigma^2)) Q^T``, descending, float64, (d,).

        The Jacobian is the same at every x, so its numerical rank at any level needs no JVPs
        (:func:`mogsim.metrics.jacobian.numerical_rank` of these): the reference for a net trained on the same data.
        """
        sig = float(check_positive_sigma(sigma))
        lam = self.eigenvalues
        return torch.where(lam > 0, lam / (lam + sig * sig), torch.zeros_like(lam))

    def score(self, x: torch.Tensor, sigma: Sigma) -> torch.Tensor:
        """``-(S + sigma^2 I)^-1 (x - mu)``, computed without dividing a small difference by sigma^2."""
        flat, sig = self._prepare(x, sigma)
        _, coef, residual, basis, evals = self._parts(flat)
        inside = torch.where(evals > 0, coef / (evals + sig * sig), coef / sig / sig) @ basis.T
        return (-(inside + residual / sig / sig)).reshape(x.shape).to(x.dtype)

    def log_density(self, x: torch.Tensor, sigma: Sigma) -> torch.Tensor:
        """``log N(x; mu, S + sigma^2 I)``, shape (B,)."""
        flat, sig = self._prepare(x, sigma)
        _, coef, residual, _, evals = self._parts(flat)
        log_sig2 = 2 * torch.log(sig)  # (B, 1)
        quad_in = torch.where(evals > 0, coef * coef / (evals + sig * sig), (coef / sig) ** 2)
        quad = quad_in.sum(dim=1) + ((residual / sig) ** 2).sum(dim=1)
        logdet = torch.logaddexp(torch.log(evals), log_sig2).sum(dim=1) + (self.dim - evals.numel()) * log_sig2[:, 0]
        return (-0.5 * (quad + logdet + self.dim * math.log(2 * math.pi))).to(x.dtype)

"""Mixture of low-rank Gaussians (MoLRG), the data model of Wang et al. (arXiv 2409.02426).

``p(x0) = sum_k pi_k N(0, U_k U_k^T + eta^2 I)`` with ``U_k`` an n x r matrix of orthonormal columns and optional
isotropic data noise ``eta``. For ``x = x0 + sigma eps`` and ``tau^2 = eta^2 + sigma^2``, component k gives
``x ~ N(0, U_k U_k^T + tau^2 I)``, whose covariance has eigenvalue ``1 + tau^2`` on span(U_k) and ``tau^2`` off it.
Hence, with ``P_k = U_k U_k^T``:

* ``E[x0 | x, k] = (1 + eta^2)/(1 + tau^2) P_k x + eta^2/tau^2 (I - P_k) x``  (``P_k x / (1 + sigma^2)`` if eta = 0)
* ``log N_k(x) = -n/2 log 2pi - r/2 log(1 + tau^2) - (n - r)/2 log tau^2
  - ||U_k^T x||^2 / (2 (1 + tau^2)) - ||x - P_k x||^2 / (2 tau^2)``
* posterior component weights ``w_k = softmax_k(log pi_k + log N_k(x))``, ``D = sum_k w_k E[x0 | x, k]``
* score ``= -sum_k w_k [P_k x / (1 + tau^2) + (I - P_k) x / tau^2]``, never formed as ``(D - x) / sigma^2``.

The residual ``x - P_k x`` is formed explicitly (not as ``|x|^2 - |U^T x|^2``), so small and large sigma are both
stable.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..conventions import Sigma
from ..denoiser import ClosedFormDenoiser
from ..errors import InputError
from ..parsing import SEED_LIMIT, finite_number, whole_number

#: Largest ambient dimension of :meth:`MoLRG.random` (its n x n orthogonal matrix takes 8 n^2 bytes: 2 GiB).
MAX_DIM = 16384
#: Most numbers one :meth:`MoLRG.sample` call may draw (num * n; 8 GiB in float64).
MAX_ENTRIES = 2**30


class MoLRG(ClosedFormDenoiser):
    """A mixture of K zero-mean low-rank Gaussians in dimension n, each of rank r.

    Args:
        bases: (K, n, r) tensor; ``bases[k]`` has orthonormal columns spanning component k's subspace.
        weights: (K,) mixing weights (normalised here); default equal.
        noise_std: isotropic data noise ``eta`` added to every sample (default 0: exactly low rank).

    The object is itself a denoiser: ``mix(x, sigma)`` is the posterior mean. All arithmetic is float64 internally;
    outputs take the query's dtype.
    """

    def __init__(self, bases: Any, weights: Any = None, noise_std: float = 0.0) -> None:
        if isinstance(bases, np.ndarray):
            bases = torch.from_numpy(bases)
        if not isinstance(bases, torch.Tensor) or bases.ndim != 3:
            raise InputError("bases must be a (K, n, r) tensor of orthonormal column blocks")
        b64 = bases.detach().to(torch.float64).cpu()
        k, n, r = b64.shape
        if k < 1 or r < 1 or r > n:
            raise InputError(f"bases has shape {tuple(b64.shape)}; need K >= 1 and 1 <= r <= n")
        gram = b64.transpose(1, 2) @ b64
        eye = torch.eye(r, dtype=torch.float64)
        if not bool(torch.allclose(gram, eye.expand(k, r, r), atol=1e-8)):
            raise InputError("bases[k] must have orthonormal columns (U_k^T U_k = I); orthonormalise them first, "
                             "e.g. with torch.linalg.qr")
        if weights is None:
            w = torch.full((k,), 1.0 / k, dtype=torch.float64)
        else:
            try:
                w = torch.as_tensor(np.asarray(weights, dtype=np.float64)).reshape(-1)
            except (TypeError, ValueError):
                w = torch.full((1,), math.nan, dtype=torch.float64)
            if w.numel() != k or not bool(torch.isfinite(w).all()) or bool((w <= 0).any()):
                raise InputError(f"weights must be {k} positive finite numbers (one per component)")
            w = w / w.sum()
        eta = finite_number(noise_std, "noise_std", lo=0.0)
        self.sample_shape = (n,)
        self.num_components, self.ambient_dim, self.rank = k, n, r
        self.noise_std = eta
        self._bases = b64
        self._weights = w
        self._cache: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    # -- construction -------------------------------------------------------------------------------------------
    @classmethod
    def random(cls, n: int, K: int, r: int, *, seed: int = 0, weights: Any = None,
               noise_std: float = 0.0) -> "MoLRG":
        """K mutually orthogonal rank-r subspaces of R^n, as the authors draw them.

        One Haar-random n x n orthogonal matrix (QR of a Gaussian matrix with the signs of R's diagonal folded in,
        float64, from a numpy PCG64 generator seeded with ``seed``); component k takes columns ``k r .. (k+1) r``.
        Needs ``K * r <= n``.
        """
        n = whole_number(n, "n", lo=1, hi=MAX_DIM, fix="the subspaces come from an n x n orthogonal matrix")
        K = whole_number(K, "K", lo=1)
        r = whole_number(r, "r", lo=1)
        seed = whole_number(seed, "seed", lo=0, hi=SEED_LIMIT - 1)
        if K * r > n:
            raise InputError(f"K * r = {K} * {r} = {K * r} exceeds n = {n}; mutually orthogonal subspaces need "
                             "K * r <= n")
        gauss = np.random.Generator(np.random.PCG64(seed)).standard_normal((n, n))
        q, rr = np.linalg.qr(gauss)
        q = q * np.sign(np.diag(rr))[None, :]
        bases = np.stack([q[:, k * r:(k + 1) * r] for k in range(K)])
        return cls(torch.from_numpy(bases), weights=weights, noise_std=noise_std)

    # -- properties -----------------------------------------------------------------------------------------------
    @property
    def bases(self) -> torch.Tensor:
        """(K, n, r) float64 orthonormal bases."""
        return self._bases.clone()

    @property
    def weights(self) -> torch.Tensor:
        """(K,) float64 mixing weights, summing to 1."""
        return self._weights.clone()

    def __repr__(self) -> str:
        return (f"MoLRG(n={self.ambient_dim}, K={self.num_components}, r={self.rank}, "
                f"noise_std={self.noise_std:g})")

    def config(self) -> dict[str, Any]:
        """A JSON-ready description (bases are not included; record the seed that made them)."""
        return {"dim": self.ambient_dim, "components": self.num_components, "rank": self.rank,
                "noise_std": self.noise_std, "weights": self._weights.tolist()}

    # -- sampling -------------------------------------------------------------------------------------------------
    def sample(self, num: int, *, seed: int = 0, balanced: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``num`` samples ``x = U_k a + eta e`` (float64, (num, n)) and their component labels (int64).

        ``balanced=True`` (the authors' protocol) gives each component ``round(num * pi_k)`` samples (largest
        remainder; exactly num / K for equal weights), in random order; ``balanced=False`` draws labels i.i.d.
        """
        num = whole_number(num, "num", lo=1, hi=MAX_ENTRIES // self.ambient_dim,
                           fix=f"num * n may be at most {MAX_ENTRIES:.0e} numbers")
        seed = whole_number(seed, "seed", lo=0, hi=SEED_LIMIT - 1)
        if not isinstance(balanced, (bool, np.bool_)):
            raise InputError(f"balanced={balanced!r}; pass True or False")
        rng = np.random.Generator(np.random.PCG64(seed))
        k_count = self.num_components
        pis = self._weights.numpy()
        if balanced:
            raw = num * pis
            counts = np.floor(raw).astype(np.int64)
            order = np.argsort(-(raw - counts), kind="stable")
            counts[order[: num - int(counts.sum())]] += 1
            labels = rng.permutation(np.repeat(np.arange(k_count), counts))
        else:
            labels = rng.choice(k_count, size=num, p=pis)
        coeffs = rng.standard_normal((num, self.rank))
        noise = rng.standard_normal((num, self.ambient_dim)) if self.noise_std > 0 else None
        bases = self._bases.numpy()
        x = np.einsum("bnr,br->bn", bases[labels], coeffs)
        if noise is not None:
            x = x + self.noise_std * noise
        return torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))

    # -- closed forms -----------------------------------------------------------------------------------------------
    def _on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._cache:
            self._cache[device] = (self._bases.to(device), self._weights.to(device))
        return self._cache[device]

    def _parts(self, flat: torch.Tensor, sig: torch.Tensor) -> dict[str, torch.Tensor]:
        """Shared pieces in float64: projections, residuals, posterior weights and ``log p``.

        Stable at any float64 sigma, including where ``sigma^2`` under- or overflows (sigma = 1e-300 or 1e300):
        ``tau = hypot(sigma, eta)`` is divided twice instead of forming ``tau^2``, and the residual term is shifted
        by its per-query minimum, so the best component's log-likelihood stays finite and the weights become the
        one-hot (or prior) limits instead of NaN.
        """
        bases, pis = self._on(flat.device)
        x = flat.to(torch.float64)  # (B, n)
        sig = sig.to(torch.float64)
        tau = torch.hypot(sig, torch.full_like(sig, self.noise_std))  # (B, 1)
        tau2 = tau * tau
        log_tau2 = 2 * torch.log(tau)
        log1p_tau2 = torch.where(torch.isfinite(tau2), torch.log1p(tau2), log_tau2)
        coef = torch.einsum("bn,knr->bkr", x, bases)  # (B, K, r)
        proj = torch.einsum("bkr,knr->bkn", coef, bases)  # (B, K, n): P_k x
        resid = x[:, None, :] - proj  # (B, K, n): (I - P_k) x
        n, r = self.ambient_dim, self.rank
        in_sq = (coef * coef).sum(dim=2)  # (B, K)
        out_sq = (resid * resid).sum(dim=2)
        min_out = out_sq.amin(dim=1, keepdim=True)
        # log N_k(x) = common - (out_sq_k - min_out) / (2 tau^2) - in_sq_k / (2 (1 + tau^2)), equal ranks
        joint = torch.log(pis)[None, :] - 0.5 * in_sq / (1 + tau2) - 0.5 * (out_sq - min_out) / tau / tau
        log_joint = torch.logsumexp(joint, dim=1)
        post = torch.exp(joint - log_joint[:, None])
        common = (-0.5 * n * math.log(2 * math.pi) - 0.5 * r * log1p_tau2 - 0.5 * (n - r) * log_tau2
                  - 0.5 * min_out / tau / tau)
        return {"proj": proj, "resid": resid, "tau": tau, "tau2": tau2, "post": post,
                "log_p": common[:, 0] + log_joint}

    def _denoise_flat(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        p = self._parts(x, sigma)
        eta2 = self.noise_std**2
        tau2 = p["tau2"][:, :, None]
        per_comp = (1 + eta2) / (1 + tau2) * p["proj"]
        if eta2 > 0:
            per_comp = per_comp + eta2 / tau2 * p["resid"]
        return torch.einsum("bk,bkn->bn", p["post"], per_comp).to(x.dtype)

    def score(self, x: torch.Tensor, sigma: Sigma) -> torch.Tensor:
        """``grad_x log p_sigma(x)``, shape of x."""
        flat, sig = self._prepare(x, sigma)
        p = self._parts(flat, sig)
        tau = p["tau"][:, :, None]
        per_comp = p["proj"] / (1 + p["tau2"][:, :, None]) + p["resid"] / tau / tau
        return (-torch.einsum("bk,bkn->bn", p["post"], per_comp)).reshape(x.shape).to(x.dtype)

    def log_density(self, x: torch.Tensor, sigma: Sigma) -> torch.Tensor:
        """``log p_sigma(x)``, the normalised log-density of the noise-smoothed mixture, shape (B,)."""
        flat, sig = self._prepare(x, sigma)
        return self._parts(flat, sig)["log_p"].to(x.dtype)

    def posterior_weights(self, x: torch.Tensor, sigma: Sigma) -> torch.Tensor:
        """``P(k | x)``, shape (B, K), float64."""
        flat, sig = self._prepare(x, sigma)
        return self._parts(flat, sig)["post"]

    def subspace_residual(self, x: torch.Tensor) -> torch.Tensor:
        """``min_k ||x - P_k x|| / ||x||`` per sample (B,): 0 for a point on one of the subspaces."""
        flat, _ = self._prepare(x, 1.0)
        bases, _ = self._on(flat.device)
        xx = flat.to(torch.float64)
        coef = torch.einsum("bn,knr->bkr", xx, bases)
        resid = xx[:, None, :] - torch.einsum("bkr,knr->bkn", coef, bases)
        return resid.norm(dim=2).min(dim=1).values / xx.norm(dim=1).clamp_min(1e-300)

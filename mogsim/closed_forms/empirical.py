"""The optimal denoiser of the empirical distribution of a training set (Proposition 1 of Zhang et al. 2024).

For ``p(x0) = (1/N) sum_i delta(x0 - y_i)`` and ``x = x0 + sigma eps``::

    D*(x; sigma) = sum_i w_i y_i,   w = softmax_i( -||x - y_i||^2 / (2 sigma^2) )

How it is computed, exactly and fast:

* **Streaming online softmax.** The training set is visited in chunks; each query keeps its own running maximum
  logit, running normaliser and running weighted sum, so memory is bounded by the chunk size whatever N is, and
  far queries (whose logits are all hugely negative) never underflow.
* **Centred matrix-product distances.** ``||x - y||^2 = |x|^2 - 2 x.y + |y|^2`` computed with one matrix product per
  chunk, after subtracting the training mean from data and queries (an exact shift that keeps the norms small).
  TF32 is switched off for these products.
* **Exact refinement where it matters.** The expansion loses accuracy when ``||x - y||^2`` is much smaller than
  ``|x|^2 + |y|^2`` (cancellation), which happens at small sigma for the training points nearest a query. Every
  pair whose weight can matter (logit within ``TAIL`` nats of the query's best, counting the error bound) and whose
  expansion error bound exceeds a few ulps and shows cancellation is recomputed from explicit differences, as a
  brute-force implementation would. In float64 the result matches a brute-force float64 posterior mean to about
  1e-12 relative error at any sigma; in float32 to about 1e-6 (see the README's accuracy table).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..conventions import Sigma
from ..denoiser import ClosedFormDenoiser
from ..devices import exact_float32_matmul
from ..errors import InputError
from ..parsing import whole_number

#: Pairs whose logit is more than this many nats below the query's best have relative weight < e^-40 ~ 4e-18.
TAIL = 40.0
#: Refine a pair only when its expansion distance shows cancellation by more than this factor.
CANCELLATION = 4.0


def _as_tensor(data: Any) -> torch.Tensor:
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(np.ascontiguousarray(data))
    if not isinstance(data, torch.Tensor):
        raise InputError(f"data is a {type(data).__name__}; pass a torch.Tensor or numpy array of shape "
                         "(N, *sample_shape)")
    return data


class EmpiricalDenoiser(ClosedFormDenoiser):
    """Posterior mean under the empirical distribution of ``data`` (N, *sample_shape).

    Args:
        data: training points, any real dtype, on any device (kept there; copies for other devices and dtypes are
            made on first use and cached).
        chunk_size: training points per streamed chunk; default sized so one chunk's logits hold about 8M numbers.
        compute_dtype: dtype of the arithmetic (``torch.float64`` or ``torch.float32``); default: the query's dtype
            (float16/bfloat16 queries are computed in float32). The output always has the query's dtype.

    ``D(x, sigma)`` accepts ``x`` of shape (B, *sample_shape) and ``sigma`` > 0 as a float or a (B,) tensor.
    """

    def __init__(self, data: Any, *, chunk_size: int | None = None,
                 compute_dtype: torch.dtype | None = None) -> None:
        data = _as_tensor(data)
        if data.ndim < 2 or data.shape[0] < 1:
            raise InputError(f"data has shape {tuple(data.shape)}; expected (N, *sample_shape) with N >= 1")
        if data.dtype == torch.bool or data.is_complex():
            raise InputError(f"data has dtype {data.dtype}; pass real numbers")
        if not bool(torch.isfinite(data.to(torch.float64)).all()):
            raise InputError("data contains NaN or infinite values; clean the training set first")
        if chunk_size is not None:
            chunk_size = whole_number(chunk_size, "chunk_size", lo=1, fix="training points per streamed chunk")
        if compute_dtype not in (None, torch.float32, torch.float64):
            raise InputError(f"compute_dtype={compute_dtype}; use torch.float32 or torch.float64")
        self.sample_shape = tuple(int(k) for k in data.shape[1:])
        self.num_points = int(data.shape[0])
        self.chunk_size = chunk_size
        self.compute_dtype = compute_dtype
        self._data = data.reshape(self.num_points, -1)
        self._mean64 = self._data.to(torch.float64).mean(dim=0)
        self._prepared: dict[tuple[torch.dtype, torch.device], tuple[torch.Tensor, ...]] = {}
        #: Number of (query, training point) pairs recomputed from explicit differences in the last call.
        self.last_refined_pairs = 0

    @property
    def data(self) -> torch.Tensor:
        """The training points, shape (N, *sample_shape), as given."""
        return self._data.reshape((self.num_points, *self.sample_shape))

    @property
    def mean(self) -> torch.Tensor:
        """The training mean (the sigma -> infinity limit), float64, shape sample_shape."""
        return self._mean64.reshape(self.sample_shape)

    def __repr__(self) -> str:
        return f"EmpiricalDenoiser(N={self.num_points}, sample_shape={self.sample_shape})"

    # -- public API -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def log_density(self, x: torch.Tensor, sigma: Sigma) -> torch.Tensor:
        """``log p_sigma(x)`` of the noise-smoothed empirical distribution, shape (B,).

        A value, not a graph: it is computed without autograd; its gradient is :meth:`score`.
        """
        flat, sig = self._prepare(x, sigma)
        _, log_z = self._posterior(flat, sig)
        d = self.dim
        log_norm = math.log(self.num_points) + 0.5 * d * (math.log(2 * math.pi) + 2 * torch.log(sig[:, 0]))
        return (log_z.to(torch.float64) - log_norm).to(x.dtype)

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """Index of the training point nearest each query (the sigma -> 0 limit of ``D``), shape (B,)."""
        flat, _ = self._prepare(x, 1.0)
        cd = self._compute_dtype(flat)
        yc, _, mean = self._data_for(cd, flat.device)
        xc = flat.to(cd) - mean
        best_d = torch.full((flat.shape[0],), math.inf, dtype=cd, device=flat.device)
        best_i = torch.zeros(flat.shape[0], dtype=torch.long, device=flat.device)
        step = max(1, (1 << 22) // max(1, flat.shape[0] * 8))
        for j0 in range(0, self.num_points, step):
            dist = torch.cdist(xc, yc[j0:j0 + step], compute_mode="donot_use_mm_for_euclid_dist")
            val, idx = dist.min(dim=1)
            better = val < best_d
            best_d = torch.where(better, val, best_d)
            best_i = torch.where(better, idx + j0, best_i)
        return best_i

    # -- implementation ---------------------------------------------------------------------------------------------
    def _compute_dtype(self, x: torch.Tensor) -> torch.dtype:
        if self.compute_dtype is not None:
            return self.compute_dtype
        return torch.float64 if x.dtype == torch.float64 else torch.float32

    def _data_for(self, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Centred data, their squared norms, and the mean, in ``dtype`` on ``device`` (cached)."""
        key = (dtype, device)
        if key not in self._prepared:
            mean64 = self._mean64.to(device)
            centred64 = self._data.to(device=device, dtype=torch.float64) - mean64
            centred = centred64.to(dtype)
            sq_norms = (centred64 * centred64).sum(dim=1).to(dtype)
            del centred64
            self._prepared[key] = (centred, sq_norms, mean64.to(dtype))
        return self._prepared[key]  # type: ignore[return-value]

    @torch.no_grad()
    def _denoise_flat(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        denoised, _ = self._posterior(x, sigma)
        return denoised.to(x.dtype)

    def _chunk(self, batch: int) -> int:
        if self.chunk_size is not None:
            return self.chunk_size
        return max(256, (1 << 24) // max(1, batch))

    def _posterior(self, x: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean (B, d) and log-normaliser ``logsumexp_i(-||x - y_i||^2 / (2 sigma^2))`` (B,)."""
        cd = self._compute_dtype(x)
        yc, ysq, mean = self._data_for(cd, x.device)
        bound = _ErrorBound(cd, yc.shape[1])
        refined = 0
        with exact_float32_matmul():
            xc = x.to(cd) - mean
            xsq = (xc * xc).sum(dim=1, keepdim=True)
            inv_exact = 0.5 / sigma / sigma  # 1 / (2 sigma^2) in float64; inf once sigma^2 underflows
            inv = _capped(inv_exact, xsq, ysq.max(), cd)
            # per-query bound on any pair's logit error: it widens the band of pairs whose weight can matter
            widest = bound.per_norm * (xsq + ysq.max()) * inv
            batch = xc.shape[0]
            run_max = torch.full((batch, 1), -math.inf, dtype=cd, device=x.device)
            norm = torch.zeros((batch, 1), dtype=cd, device=x.device)
            acc = torch.zeros((batch, yc.shape[1]), dtype=cd, device=x.device)
            step = self._chunk(batch)
            for j0 in range(0, self.num_points, step):
                yj, ysqj = yc[j0:j0 + step], ysq[j0:j0 + step]
                dist = torch.addmm(ysqj, xc, yj.T, alpha=-2.0).add_(xsq)  # ~ ||x - y||^2 by expansion
                nearest = dist.amin(dim=1, keepdim=True).clamp_min_(0.0)
                # a row can only lose accuracy to cancellation if some pair has dist << |x|^2 + |y|^2
                rows = (CANCELLATION * nearest < xsq + ysqj.max()).nonzero()[:, 0]
                logit = dist.clamp_min_(0.0).mul_(-inv)
                new_max = torch.maximum(run_max, -nearest * inv)
                if rows.numel():
                    refined += _refine(logit, rows, xc, xsq, yj, ysqj, inv, new_max - widest - TAIL, bound)
                    new_max = torch.maximum(run_max, logit.amax(dim=1, keepdim=True))
                rescale = torch.exp(run_max - new_max)
                weights = logit.sub_(new_max).exp_()
                norm.mul_(rescale).add_(weights.sum(dim=1, keepdim=True))
                acc.mul_(rescale).addmm_(weights, yj)
                run_max = new_max
            denoised = acc / norm + mean
            # below the cap the weights are exactly one-hot, so the true top logit is run_max scaled back up
            ratio = (inv_exact / inv.to(torch.float64)).to(cd)
            top = torch.where(run_max == 0, run_max, run_max * ratio)
            log_z = top[:, 0] + torch.log(norm[:, 0])
        self.last_refined_pairs = refined
        return denoised, log_z


def _capped(inv: torch.Tensor, xsq: torch.Tensor, ysq_max: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``inv = 1 / (2 sigma^2)`` in ``dtype``, capped so that no logit ``-||x - y||^2 inv`` overflows.

    Any distance is at most ``2 (|x|^2 + max |y|^2)``. Where the cap binds (sigma below about 1e-154 in float64,
    1e-19 in float32) the weights are already one-hot at the dtype's resolution of distances: capping returns the
    sigma -> 0 limit, the nearest training point, instead of NaN from ``-inf - (-inf)``.
    """
    scale = 4.0 * (xsq.to(torch.float64) + ysq_max.to(torch.float64)) + 1.0
    cap = torch.where(torch.isfinite(scale), torch.finfo(dtype).max / scale, torch.inf)
    return torch.minimum(inv, cap).to(dtype)


class _ErrorBound:
    """Rounding-error model of the expansion distance ``|x|^2 - 2 x.y + |y|^2`` in a given dtype.

    ``per_norm``: error per unit of ``|x|^2 + |y|^2`` (a probabilistic bound, ``(2 sqrt(d) + 8) u``);
    ``tol``: logit errors below this (64 ulps of 1) are left alone.
    """

    def __init__(self, dtype: torch.dtype, d: int) -> None:
        unit = torch.finfo(dtype).eps / 2
        self.per_norm = (2.0 * math.sqrt(d) + 8.0) * unit
        self.tol = 64.0 * unit


def _refine(logit: torch.Tensor, rows: torch.Tensor, xc: torch.Tensor, xsq: torch.Tensor, yj: torch.Tensor,
            ysqj: torch.Tensor, inv: torch.Tensor, threshold: torch.Tensor, bound: _ErrorBound) -> int:
    """Recompute from explicit differences the logits (in place) of the pairs in ``rows`` that need it.

    A pair needs it when its expansion shows cancellation (``|x|^2 + |y|^2 > CANCELLATION * dist``), its error
    bound exceeds the tolerance, and its weight can matter (logit plus error bound above ``threshold``, the
    query's best logit less the error band and ``TAIL``). Returns the number of pairs recomputed.
    """
    sub = logit[rows]
    inv_r = inv[rows]
    norms = xsq[rows] + ysqj
    err = bound.per_norm * norms * inv_r
    need = (norms * inv_r > -CANCELLATION * sub) & (err > bound.tol) & (sub + err >= threshold[rows])
    pairs = need.nonzero()
    count = int(pairs.shape[0])
    per_block = max(1, (1 << 24) // max(1, xc.shape[1]))
    for p0 in range(0, count, per_block):
        qi, pj = rows[pairs[p0:p0 + per_block, 0]], pairs[p0:p0 + per_block, 1]
        diff = xc[qi] - yj[pj]
        logit[qi, pj] = -(diff * diff).sum(dim=1) * inv[qi, 0]
    return count

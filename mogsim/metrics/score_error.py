"""Per-noise-level errors of a denoiser against two closed-form references, and mogsim's L_score.

For each noise level sigma and queries ``x = x0 + sigma eps`` (x0 from a query set), in float64:

* ``e_ref(sigma) = E ||D_theta(x) - D_ref(x)||^2`` for ref = true (MoLRG) and empirical;
* ``gap(sigma) = E ||D_true(x) - D_emp(x)||^2``, how far apart the references are;
* ``norm_ref(sigma) = E ||D_ref(x) - x||^2 = E ||sigma s_ref||^2 sigma^2``.

Because ``sigma s = (D - x) / sigma`` (Tweedie), ``E ||sigma (s_theta - s_ref)||^2 = e_ref / sigma^2`` and the
per-level score-matching error of paper-notes section 4 is ``L_score(ref; sigma) = e_ref / norm_ref`` (the sigma^2
cancels); the total over the grid is ``sum_sigma e_ref / sigma^2 / sum_sigma norm_ref / sigma^2`` (mogsim's
definition; the paper's exact formula is unknown). The total is dominated by the smallest sigma.

Where the net sits between the references: in the Hilbert space of functions with the query-averaged inner product,
the projection of ``D_theta`` onto the segment from ``D_emp`` to ``D_true`` has coordinate
``t = (e_emp - e_true + gap) / (2 gap)`` (0 at the empirical optimum, 1 at the truth) and the net's distance from
the line through the references is ``offset = sqrt(max(e_emp - t^2 gap, 0))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..denoiser import Denoiser


@dataclass
class SigmaErrors:
    """Per-level arrays (length = number of sigmas), all float64 numpy."""

    sigmas: np.ndarray
    e_true: np.ndarray
    e_emp: np.ndarray
    gap: np.ndarray
    norm_true: np.ndarray
    norm_emp: np.ndarray

    @property
    def l_score_true(self) -> np.ndarray:
        """``L_score(true; sigma)`` per level."""
        return self.e_true / self.norm_true

    @property
    def l_score_emp(self) -> np.ndarray:
        """``L_score(empirical; sigma)`` per level."""
        return self.e_emp / self.norm_emp

    @property
    def position(self) -> np.ndarray:
        """t per level: 0 = the net equals the empirical optimum, 1 = it equals the true denoiser."""
        return (self.e_emp - self.e_true + self.gap) / (2.0 * self.gap)

    @property
    def offset(self) -> np.ndarray:
        """The net's RMS distance from the line through both references, per level."""
        t = self.position
        return np.sqrt(np.maximum(self.e_emp - t * t * self.gap, 0.0))

    def total(self, ref: str, mask: np.ndarray | None = None) -> float:
        """``sum e_ref / sigma^2 / sum norm_ref / sigma^2`` over all levels (or those in ``mask``)."""
        e, norm = (self.e_true, self.norm_true) if ref == "true" else (self.e_emp, self.norm_emp)
        w = 1.0 / self.sigmas**2
        if mask is not None:
            w = w * mask
        den = float((w * norm).sum())
        return float((w * e).sum()) / den if den > 0 else float("nan")


def noisy_queries(x0: torch.Tensor, sigmas: Sequence[float], count: int, seed: int) -> list[torch.Tensor]:
    """For each sigma, ``count`` queries ``x0[i] + sigma eps`` (float64, CPU), rows of x0 drawn with replacement.

    The rows and the noise come from a numpy PCG64 generator seeded with ``seed`` (one stream per level), so every
    model evaluated with the same seed sees the same queries.
    """
    data = x0.detach().to(torch.float64).cpu().numpy()
    out = []
    for level, sigma in enumerate(sigmas):
        rng = np.random.Generator(np.random.PCG64([int(seed), level]))
        idx = rng.integers(0, data.shape[0], size=count) if count != data.shape[0] else np.arange(count)
        eps = rng.standard_normal((count, data.shape[1]))
        out.append(torch.from_numpy(data[idx] + float(sigma) * eps))
    return out


def _sqnorm_mean(a: torch.Tensor, b: torch.Tensor) -> float:
    d = (a - b).reshape(a.shape[0], -1)
    return float((d * d).sum(dim=1).mean())


@torch.no_grad()
def sigma_errors(net: Denoiser, truth: Denoiser, empirical: Denoiser, queries: Sequence[torch.Tensor],
                 sigmas: Sequence[float], *, device: torch.device | str = "cpu", chunk: int = 4096) -> SigmaErrors:
    """Evaluate the three denoisers on the same queries (one float64 (Q, n) tensor per sigma) and compare them."""
    rows = []
    for q, sigma in zip(queries, sigmas):
        acc = np.zeros(5)
        for i0 in range(0, q.shape[0], chunk):
            x = q[i0:i0 + chunk].to(device=device, dtype=torch.float64)
            d_net = net(x, float(sigma)).to(torch.float64)
            d_true = truth(x, float(sigma)).to(torch.float64)
            d_emp = empirical(x, float(sigma)).to(torch.float64)
            w = x.shape[0]
            acc += w * np.array([_sqnorm_mean(d_net, d_true), _sqnorm_mean(d_net, d_emp), _sqnorm_mean(d_true, d_emp),
                                 _sqnorm_mean(d_true, x), _sqnorm_mean(d_emp, x)])
        rows.append(acc / q.shape[0])
    arr = np.array(rows)
    return SigmaErrors(np.asarray(sigmas, dtype=np.float64), arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 4])

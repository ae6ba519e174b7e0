"""The Jacobian of a denoiser and its numerical rank, along sampler trajectories (paper 2, Fig. 3).

Paper 2 (Wang et al., arXiv 2409.02426) observes that the Jacobian ``J = dD(x; sigma)/dx`` of a trained denoiser is
low-rank over most noise levels. For an MoLRG the closed form shows why: at high SNR (small sigma) ``D`` is the
projection onto the subspace x lies near, rank d; at low SNR the K components weigh equally and the rank is K d.

Definitions (the authors' ``jacobian.py`` in their code release, checked there):

* **numerical rank**: the smallest k whose top-k singular values hold a fraction ``energy`` (0.99) of the
  *Frobenius norm*, ``sqrt(s_1^2 + ... + s_k^2) >= energy * ||J||_F`` -- a fraction of the norm, not of its square
  (so 0.99 keeps 98.01% of ``sum s_i^2``); 0 for ``J = 0``. The authors test ``>``; we use ``>=``, which differs
  only on exact ties and makes ``energy = 1`` mean "all nonzero singular values".
* **trajectory**: the deterministic EDM sampler's states ``x_i`` at the levels ``sigma_i`` where it evaluates the
  denoiser, i = 0..S-1 (18 levels from 80 to 0.002 by default; the final state at sigma = 0 is not evaluated),
  from per-seed noise; plotted against the SNR ``1 / sigma``.

Computation: forward-mode AD. The n columns ``J e_j`` of every sample's Jacobian are Jacobian-vector products, and
all (sample, direction) pairs are evaluated as one batch of inputs ``x_b`` with tangents ``e_j`` (dual tensors of
``torch.autograd.forward_ad``, which ``torch.no_grad`` does not switch off), ``max_batch`` pairs per call, so the
Python loop runs over chunks of pairs, never over n. This needs a denoiser that acts on each sample independently
(every closed form and network in mogsim does). The JVPs run in the denoiser's own dtype (float64 for the closed
forms with float64 inputs, float32 for networks); attention runs on torch's math backend, the only one with
forward-mode derivatives (the flash and memory-efficient kernels raise). The rank needs only the squared singular values, the eigenvalues
of ``J J^T`` (symmetric, float64; a symmetric eigensolver is several times faster than an SVD at n = 3072, and its
absolute error ~1e-16 ||J||^2 cannot move a 99% cut); :func:`jacobian_rank` forms the Jacobians of at most
``max(1, max_batch // n)`` samples at a time, so memory stays at that many n x n matrices.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Collection, Iterator, Sequence

import torch
from torch.autograd import forward_ad
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..conventions import Sigma, check_positive_sigma
from ..errors import InputError
from ..parsing import whole_number
from ..sampling import edm_sigmas, sample

Denoise = Callable[[torch.Tensor, Any], torch.Tensor]

#: The paper's numerical-rank level: 99% of the Frobenius norm.
RANK_ENERGY = 0.99
#: (sample, direction) pairs per forward-mode call by default; lower it for large networks on small GPUs.
MAX_BATCH = 1024


def _per_sample_sigma(sigma: Sigma, x: torch.Tensor) -> torch.Tensor:
    check_positive_sigma(sigma)
    sig = sigma.to(device=x.device) if isinstance(sigma, torch.Tensor) else torch.tensor(
        float(sigma), dtype=torch.float64, device=x.device)
    if sig.ndim == 0:
        return sig.expand(x.shape[0])
    if sig.ndim == 1 and sig.shape[0] == x.shape[0]:
        return sig
    raise InputError(f"sigma has shape {tuple(sig.shape)}; pass a float or a ({x.shape[0]},) tensor")


def denoiser_jacobian(denoiser: Denoise, x: torch.Tensor, sigma: Sigma, *, max_batch: int = MAX_BATCH
                      ) -> torch.Tensor:
    """``J[b] = dD(x_b; sigma_b)/dx`` as a (B, n, n) tensor in the denoiser's output dtype (n = numel of a sample).

    ``J[b, i, j] = dD_i / dx_j`` (row i: output coordinate). x: (B, *sample_shape); sigma: a float or (B,).
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim < 2 or x.shape[0] == 0:
        raise InputError("x must be a floating-point tensor of shape (B, *sample_shape) with B >= 1")
    max_batch = whole_number(max_batch, "max_batch", lo=1, fix="JVPs per call")
    sig = _per_sample_sigma(sigma, x)
    batch, shape = x.shape[0], tuple(x.shape[1:])
    n = math.prod(shape)
    flat = x.detach().reshape(batch, n)
    jac: torch.Tensor | None = None
    pairs = batch * n
    for start in range(0, pairs, int(max_batch)):
        idx = torch.arange(start, min(pairs, start + int(max_batch)), device=x.device)
        b_idx, j_idx = idx // n, idx % n
        primal = flat[b_idx].reshape(-1, *shape)
        tangent = torch.nn.functional.one_hot(j_idx, n).to(flat.dtype).reshape(-1, *shape)
        sig_rep = sig[b_idx]
        # only the math attention backend has forward-mode derivatives (flash/efficient kernels raise)
        with warnings.catch_warnings(), forward_ad.dual_level(), sdpa_kernel(SDPBackend.MATH):
            # torch loads its forward-AD decompositions on first use through the deprecated torch.jit.script
            warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=DeprecationWarning)
            out = denoiser(forward_ad.make_dual(primal, tangent), sig_rep)
            jv = forward_ad.unpack_dual(out).tangent
            if jv is None:  # the output does not depend on x
                jv = torch.zeros_like(forward_ad.unpack_dual(out).primal)
        if jac is None:
            jac = torch.empty(batch, n, n, dtype=jv.dtype, device=jv.device)
        jac[b_idx, :, j_idx] = jv.reshape(-1, n).detach()
    assert jac is not None
    return jac


def singular_values(jacobian: torch.Tensor) -> torch.Tensor:
    """Singular values (B, n) of Jacobians (B, n, n), descending, in float64: square roots of the eigenvalues of
    ``J J^T`` (negative rounding clipped to 0)."""
    j = jacobian.to(torch.float64)
    squares = torch.linalg.eigvalsh(j @ j.transpose(-1, -2)).flip(-1)
    return squares.clamp_min(0).sqrt()


def _check_energy(energy: float) -> float:
    if isinstance(energy, bool) or not (isinstance(energy, (int, float)) and 0 < float(energy) <= 1):
        raise InputError(f"energy={energy!r}; pass the fraction of the Frobenius norm to keep, 0 < energy <= 1 "
                         "(the paper uses 0.99)")
    return float(energy)


def numerical_rank(values: torch.Tensor, energy: float = RANK_ENERGY) -> torch.Tensor:
    """The smallest k with ``sqrt(sum_{i<=k} s_i^2) >= energy * sqrt(sum_i s_i^2)`` for descending singular values
    (..., n); 0 where all are 0. Returns int64 (...)."""
    energy = _check_energy(energy)
    s = values.to(torch.float64)
    norm = torch.sqrt(torch.cumsum(s * s, dim=-1))  # running Frobenius norm; norm[..., -1] = ||J||_F
    short = norm < energy * norm[..., -1:]  # True for k too small
    rank = short.sum(dim=-1) + 1
    return torch.where(norm[..., -1] > 0, rank, torch.zeros_like(rank))


def jacobian_rank(denoiser: Denoise, x: torch.Tensor, sigma: Sigma, energy: float = RANK_ENERGY, *,
                  max_batch: int = MAX_BATCH) -> torch.Tensor:
    """Numerical rank (int64, shape (B,)) of ``dD(x_b; sigma_b)/dx`` for each sample: the smallest k whose top-k
    singular values hold ``energy`` of the Frobenius norm (see the module notes)."""
    energy = _check_energy(energy)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim < 2 or x.shape[0] == 0:
        raise InputError("x must be a floating-point tensor of shape (B, *sample_shape) with B >= 1")
    max_batch = whole_number(max_batch, "max_batch", lo=1, fix="JVPs per call")
    sig = _per_sample_sigma(sigma, x)
    group = max(1, int(max_batch) // math.prod(x.shape[1:]))
    return torch.cat([numerical_rank(singular_values(denoiser_jacobian(denoiser, x[i:i + group], sig[i:i + group],
                                                                       max_batch=max_batch)), energy)
                      for i in range(0, x.shape[0], group)])


@dataclass(frozen=True)
class TrajectoryRanks:
    """Jacobian ranks along sampler trajectories: ``ranks[i, b]`` at level ``sigmas[i]`` for seed ``b``.

    ``dim`` is n (so ``ranks / dim`` is the paper's normalised rank), ``energy`` the rank level, ``dtype`` the
    dtype the Jacobians were computed in, ``solver`` the sampler.
    """

    sigmas: torch.Tensor
    ranks: torch.Tensor
    dim: int
    energy: float
    dtype: str
    solver: str

    @property
    def snr(self) -> torch.Tensor:
        """``1 / sigma`` per level (the paper's x-axis)."""
        return 1.0 / self.sigmas

    @property
    def relative(self) -> torch.Tensor:
        """``rank / n`` (S, B), float64."""
        return self.ranks.to(torch.float64) / self.dim

    def rows(self) -> list[dict[str, Any]]:
        """One record per (level, sample), ready for a CSV file."""
        return [{"level": i, "sigma": float(s), "snr": 1.0 / float(s), "sample": b, "rank": int(self.ranks[i, b]),
                 "rank_over_n": int(self.ranks[i, b]) / self.dim}
                for i, s in enumerate(self.sigmas.tolist()) for b in range(self.ranks.shape[1])]


def iter_trajectory_ranks(denoiser: Denoise, noise: torch.Tensor,
                          sigmas: torch.Tensor | Sequence[float] | None = None, *, solver: str = "heun",
                          energy: float = RANK_ENERGY, max_batch: int = MAX_BATCH, skip: Collection[int] = ()
                          ) -> Iterator[tuple[int, float, torch.Tensor]]:
    """Run the deterministic sampler from ``noise`` (B, *sample_shape), then yield ``(i, sigma_i, ranks)`` (ranks:
    int64 (B,) on the CPU) for every level i where the sampler evaluates the denoiser (all but the last of
    ``sigmas``; default the 18 EDM levels + 0), except the levels in ``skip`` (already computed, e.g. on resume)."""
    energy = _check_energy(energy)
    levels = edm_sigmas() if sigmas is None else torch.as_tensor(sigmas, dtype=torch.float64)
    _, states = sample(denoiser, noise, levels, solver, return_trajectory=True)
    for i, level in enumerate(levels[:-1].tolist()):
        if i not in skip:
            yield i, level, jacobian_rank(denoiser, states[i], level, energy, max_batch=max_batch).cpu()


def trajectory_ranks(denoiser: Denoise, noise: torch.Tensor, sigmas: torch.Tensor | Sequence[float] | None = None,
                     *, solver: str = "heun", energy: float = RANK_ENERGY, max_batch: int = MAX_BATCH,
                     progress: Callable[[int], None] | None = None) -> TrajectoryRanks:
    """The Jacobian ranks at every level of the sampler's trajectories from ``noise`` (see
    :func:`iter_trajectory_ranks`), collected; ``progress`` is called with 1 after each level.

    ``dtype`` records the dtype of the Jacobians: the denoiser's output dtype for the noise's dtype.
    """
    levels = edm_sigmas() if sigmas is None else torch.as_tensor(sigmas, dtype=torch.float64)
    ranks = torch.empty(len(levels) - 1, noise.shape[0], dtype=torch.int64)
    for i, _, found in iter_trajectory_ranks(denoiser, noise, levels, solver=solver, energy=energy,
                                             max_batch=max_batch):
        ranks[i] = found
        if progress is not None:
            progress(1)
    with torch.no_grad():
        dtype = denoiser(noise[:1], float(levels[0])).dtype
    return TrajectoryRanks(sigmas=levels[:-1].clone(), ranks=ranks, dim=math.prod(noise.shape[1:]),
                           energy=_check_energy(energy), dtype=str(dtype).removeprefix("torch."), solver=solver)

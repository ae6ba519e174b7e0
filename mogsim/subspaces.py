"""Closed-form subspace estimators of paper 2 (Wang et al., arXiv 2409.02426) and the distances that judge them.

Paper 2 shows that training its low-rank denoiser (:class:`mogsim.nets.lowrank.LowRankDenoiser`) on noiseless
mixture-of-low-rank-Gaussian (MoLRG) data is PCA for K = 1 (Theorem 1) and K-subspace clustering for K > 1 with
hard-max weights and mutually orthogonal bases (Theorem 3), and that both recover the true subspaces once every
component has ``N_k >= d`` training points (d: the paper's intrinsic dimension, mogsim's rank ``r``). This module
holds those estimators, written once, in float64:

* :func:`pca`: the top-d left singular vectors of the *uncentred* data (the paper's model has zero mean), i.e.
  ``argmax_{U^T U = I} sum_i ||U^T x_i||^2``;
* :func:`ksubspaces`: K-subspace clustering ``max sum_i max_k ||U_k^T x_i||^2`` (equivalently the least total
  squared residual ``sum_i min_k ||x_i - U_k U_k^T x_i||^2``) by the standard alternating algorithm (assign each
  point to the subspace that keeps most of its energy, then refit each subspace by PCA of its points) from seeded
  random starts, keeping the best of ``restarts`` runs. ``orthogonal=True`` (the default) fits under Theorem 3's
  constraint that ``[U_1, ..., U_K]`` has orthonormal columns (block-coordinate PCA: subspace k is the top-d PCA of
  its points projected off the other subspaces); ``orthogonal=False`` is the classic unconstrained algorithm;
* :func:`subspace_distance` ``||U U^T - V V^T||_F`` and :func:`matched_distance`, the per-component distances under
  the best pairing of estimated and true subspaces (Hungarian algorithm on the squared distances).

Where the data determine fewer than d directions of a subspace (``N_k < d``, or an empty cluster), every estimator
completes the basis with seeded *random* orthonormal directions orthogonal to what is determined (our choice, so a
failure is an honest random guess rather than whatever directions the SVD routine happens to return). The
information limit of such a guess: with the ``N_k`` determined directions right, the remaining ``d - N_k`` are
random in an (m - N_k)-dimensional complement (m = n, or n - (K - 1) d under the orthogonality constraint), so
``E ||P_hat - P*||_F^2 = 2 (d - N_k) (1 - (d - N_k) / (m - N_k))`` (:func:`completion_error`).

Why the constraint matters (a fact of the objective, checked in the tests): with K >= 2 and exactly ``N_k = d``
points per component, *any* split of the points into groups of d is a zero-residual solution of the unconstrained
objective, so the classic algorithm cannot tell the true clustering from a wrong one; mutually orthogonal bases
rule the wrong splits out. Noiseless recovery is exact iff ``N_k >= d`` with the constraint, and needs
``N_k >= d + 1`` without it.

Seeds: every random draw of problem b comes from ``torch.Generator().manual_seed(seeds[b])``, and a problem stops
drawing once all its restarts have converged, so a result depends on its own data and seed only, never on which
other problems share the batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from .errors import InputError

#: Singular values below ``RANK_RTOL * max(N, n) * eps * s_max`` count as zero (numpy's ``matrix_rank`` rule).
RANK_RTOL = 1.0


# -- inputs --------------------------------------------------------------------------------------------------------
def as_points(x: Any, *, name: str = "x") -> torch.Tensor:
    """``x`` as a float64 CPU tensor of shape (N, n) or (B, N, n); an :class:`InputError` otherwise."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor) or not (x.is_floating_point() or x.dtype in (torch.int32, torch.int64)):
        raise InputError(f"{name} must be a float tensor or array of points, shape (N, n)")
    if x.ndim not in (2, 3) or x.shape[-1] < 1 or x.shape[-2] < 1:
        raise InputError(f"{name} has shape {tuple(x.shape)}; pass points as (N, n) (or a batch (B, N, n)) with "
                         "N >= 1 and n >= 1")
    x = x.detach().to(device="cpu", dtype=torch.float64)
    if not bool(torch.isfinite(x).all()):
        raise InputError(f"{name} holds NaN or inf; pass finite points")
    return x


#: Bases count as orthonormal when ``|U^T U - I| <= ORTHONORMAL_ATOL`` entrywise (float32 bases, e.g. trained ones,
#: carry ~1e-7 rounding).
ORTHONORMAL_ATOL = 1e-5


def as_bases(u: Any, *, name: str = "bases") -> torch.Tensor:
    """Bases as a float64 CPU tensor (..., n, d) with orthonormal columns (to :data:`ORTHONORMAL_ATOL`); an
    :class:`InputError` otherwise."""
    if isinstance(u, np.ndarray):
        u = torch.from_numpy(u)
    if not isinstance(u, torch.Tensor) or not u.is_floating_point() or u.ndim < 2:
        raise InputError(f"{name} must be a float tensor (..., n, d) of orthonormal columns")
    u = u.detach().to(device="cpu", dtype=torch.float64)
    gram = u.transpose(-1, -2) @ u
    eye = torch.eye(u.shape[-1], dtype=torch.float64)
    if u.shape[-1] > u.shape[-2] or not bool(torch.allclose(gram, eye.expand_as(gram), rtol=0,
                                                              atol=ORTHONORMAL_ATOL)):
        raise InputError(f"{name} must have orthonormal columns (U^T U = I, d <= n); orthonormalise them first, "
                         "e.g. with torch.linalg.qr")
    return u


def _check_rank(d: int, n: int, *, option: str = "d") -> int:
    if isinstance(d, bool) or int(d) != d or not 1 <= int(d) <= n:
        raise InputError(f"{option}={d}: the subspace dimension must be an integer with 1 <= d <= n = {n}")
    return int(d)


def _seeds(seed: int | Sequence[int], batch: int) -> list[int]:
    """One seed per problem: a list is used as given (so each problem's result is independent of its batch); one int
    serves a single problem as is and a batch through ``SeedSequence(seed, b)``."""
    seeds = [int(seed)] * batch if isinstance(seed, (int, np.integer)) else [int(s) for s in seed]
    if len(seeds) != batch or any(s < 0 for s in seeds):
        raise InputError(f"seed must be one non-negative integer or one per problem ({batch})")
    if isinstance(seed, (int, np.integer)) and batch > 1:
        seeds = [int(np.random.SeedSequence([int(seed), b]).generate_state(1)[0]) for b in range(batch)]
    return seeds


# -- distances -----------------------------------------------------------------------------------------------------
def projector(bases: torch.Tensor) -> torch.Tensor:
    """``U U^T`` for bases (..., n, d)."""
    return bases @ bases.transpose(-1, -2)


def subspace_distance(u: Any, v: Any) -> torch.Tensor:
    """``||U U^T - V V^T||_F`` (float64) for orthonormal bases (..., n, d1) and (..., n, d2), broadcast over "...".

    Formed from the explicit difference of the projectors, so an exact recovery reads ~1e-15, not the ~1e-8 that
    ``sqrt(d1 + d2 - 2 ||U^T V||_F^2)`` would leave after cancellation. 0 iff the spans agree; ``sqrt(2 d)`` for
    orthogonal d-dimensional subspaces.
    """
    pu, pv = projector(as_bases(u, name="u")), projector(as_bases(v, name="v"))
    if pu.shape[-1] != pv.shape[-1]:
        raise InputError(f"u and v live in different dimensions ({pu.shape[-1]} and {pv.shape[-1]})")
    return torch.linalg.matrix_norm(pu - pv)


@dataclass(frozen=True)
class MatchedDistance:
    """Distances of estimated subspaces to the true ones under the best pairing.

    ``per_component[k]`` is ``||P_hat_{perm[k]} - P*_k||_F`` for true component k; ``perm`` minimises the sum of the
    squared distances (so it is also the pairing of the smallest RMS distance).
    """

    per_component: np.ndarray
    perm: np.ndarray

    @property
    def max(self) -> float:
        """The worst component's distance (success means every component is recovered)."""
        return float(self.per_component.max())

    @property
    def mean(self) -> float:
        return float(self.per_component.mean())


def matched_distance(estimated: Any, true: Any) -> MatchedDistance:
    """Pair the K estimated subspaces (K, n, d) with the K true ones (K, n, d) and return the distances."""
    est, tru = as_bases(estimated, name="estimated"), as_bases(true, name="true")
    if est.ndim != 3 or tru.ndim != 3 or est.shape[0] != tru.shape[0] or est.shape[1] != tru.shape[1]:
        raise InputError(f"estimated {tuple(est.shape)} and true {tuple(tru.shape)} must both be (K, n, d) with the "
                         "same K and n")
    diff = projector(est)[:, None] - projector(tru)[None, :]
    cost = torch.linalg.matrix_norm(diff).numpy()  # cost[i, k] = ||P_hat_i - P*_k||_F
    from scipy.optimize import linear_sum_assignment  # imported here: scipy.optimize is slow to import

    rows, cols = linear_sum_assignment(cost**2)  # Hungarian algorithm: the pairing of least total squared distance
    perm_arr = np.empty(cost.shape[0], dtype=np.int64)
    perm_arr[cols] = rows
    k = cost.shape[0]
    return MatchedDistance(cost[perm_arr, np.arange(k)], perm_arr)


def completion_error(n: int, d: int, n_k: int, *, others: int = 0) -> float:
    """RMS ``||P_hat - P*||_F`` of an estimate whose ``min(n_k, d)`` data directions are right and whose remaining
    ``d - n_k`` directions are uniformly random in the complement (dimension ``n - n_k - others``; ``others`` =
    ``(K - 1) d`` under the orthogonality constraint): ``sqrt(2 m (1 - m / (n - n_k - others)))``, m = d - n_k.
    0 once ``n_k >= d``: the information limit of noiseless recovery."""
    m = max(int(d) - int(n_k), 0)
    if m == 0:
        return 0.0
    free = int(n) - int(n_k) - int(others)
    return math.sqrt(2.0 * m * (1.0 - m / free)) if free > 0 else math.sqrt(2.0 * m)


# -- the shared building block ----------------------------------------------------------------------------------------
def _top_directions(a: torch.Tensor, d: int, noise: torch.Tensor, keep: torch.Tensor | None = None,
                    scale: torch.Tensor | None = None) -> torch.Tensor:
    """Orthonormal (..., n, d): the top right singular vectors of ``a`` (..., N, n) that the data determine (singular
    value above the rank tolerance), completed by Gram-Schmidt of the random ``noise`` (..., n, d) columns.

    ``keep`` (..., n, n), a projector, confines the completion to its range (the data must already lie there).
    ``scale`` (..., 1) sets the rank tolerance (default: the largest singular value of ``a``); pass the data's own
    largest singular value when ``a`` is a projection of the data, so that round-off left by the projection does not
    count as a direction.
    """
    n = a.shape[-1]
    _, s, vh = torch.linalg.svd(a, full_matrices=False)  # s (..., m), vh (..., m, n), m = min(N, n)
    m = s.shape[-1]
    ref = s[..., :1] if scale is None else scale
    tol = RANK_RTOL * max(a.shape[-2], n) * torch.finfo(torch.float64).eps * ref
    determined = (s > tol) & (s > 0)  # a prefix: s is sorted
    fill = noise if keep is None else keep @ noise
    take = min(d, m)
    cols = vh[..., :take, :].transpose(-1, -2)  # (..., n, take)
    mask = determined[..., :take].unsqueeze(-2)  # (..., 1, take)
    cols = torch.where(mask, cols, fill[..., :take])
    if take < d:
        cols = torch.cat([cols, fill[..., take:]], dim=-1)
    q, r = torch.linalg.qr(cols)
    # Householder QR keeps each determined column's span; fix signs so the determined columns are the singular vectors
    sign = torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))
    return q * torch.where(sign == 0, torch.ones_like(sign), sign).unsqueeze(-2)


# -- PCA -------------------------------------------------------------------------------------------------------------
def pca(x: Any, d: int, *, seed: int | Sequence[int] = 0) -> torch.Tensor:
    """The paper's K = 1 estimator: an orthonormal basis (n, d) of the top-d principal directions of the uncentred
    points x (N, n), float64. A batch (B, N, n) gives (B, n, d).

    Exact for noiseless data on a d-dimensional subspace once the points span it (N >= d); with fewer, the missing
    directions are seeded random ones orthogonal to the data (see the module notes).
    """
    pts = as_points(x)
    single = pts.ndim == 2
    pts = pts[None] if single else pts
    d = _check_rank(d, pts.shape[-1])
    gens = [torch.Generator().manual_seed(s) for s in _seeds(seed, pts.shape[0])]
    noise = torch.stack([torch.randn(pts.shape[-1], d, generator=g, dtype=torch.float64) for g in gens])
    out = _top_directions(pts, d, noise)
    return out[0] if single else out


# -- K-subspace clustering --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KSubspaces:
    """The result of :func:`ksubspaces` for one problem (or a batch, with a leading batch axis everywhere).

    ``bases`` (K, n, d) float64, ``labels`` (N,) the assignment ``argmax_k ||U_k^T x_i||^2`` under those bases,
    ``residual`` ``sum_i min_k ||x_i - U_k U_k^T x_i||^2`` (the objective minimised), ``iterations`` the alternating
    steps of the best restart, ``restart`` its index, ``converged`` whether it stopped before ``max_iter``.
    """

    bases: torch.Tensor
    labels: torch.Tensor
    residual: torch.Tensor
    iterations: torch.Tensor
    restart: torch.Tensor
    converged: torch.Tensor


def residuals(x: Any, bases: Any) -> torch.Tensor:
    """``||x_i - U_k U_k^T x_i||^2`` for points (..., N, n) and bases (..., K, n, d): shape (..., N, K), float64.

    Formed from the explicit residual vectors (not ``||x||^2 - ||U^T x||^2``), so a point on a subspace reads ~1e-30.
    """
    pts, u = as_points(x), as_bases(bases)
    return _residuals(pts, u)


def _residuals(pts: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    coef = torch.einsum("...in,...knd->...ikd", pts, u)
    proj = torch.einsum("...ikd,...knd->...ikn", coef, u)
    res = pts.unsqueeze(-2) - proj
    return (res * res).sum(-1)


def assign(x: Any, bases: Any) -> torch.Tensor:
    """Hard-max assignment ``argmax_k ||U_k^T x_i||^2`` (ties: the lowest k), shape (..., N), int64."""
    pts, u = as_points(x), as_bases(bases)
    return _assign(pts, u)


def _assign(pts: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    coef = torch.einsum("...in,...knd->...ikd", pts, u)
    return (coef * coef).sum(-1).argmax(-1)


def _seed_bases(pts: torch.Tensor, k_sub: int, d: int, n_rs: int, gen: torch.Generator,
                orthogonal: bool, scale: torch.Tensor) -> torch.Tensor:
    """Data-driven starts (R, K, n, d) for one problem's points (N, n), K-subspaces++ style.

    Subspace k is spanned by an anchor point and the d - 1 other points most aligned with it (largest |cos|); the
    first anchor is uniform, later ones are drawn with probability proportional to their squared residual off the
    subspaces chosen so far (uniform if every point is explained). Undetermined directions are random (and, with
    ``orthogonal``, everything is taken in the complement of the earlier subspaces).
    """
    n_pts, n = pts.shape
    norms = pts.norm(dim=1).clamp_min(torch.finfo(torch.float64).tiny)
    cos = (pts @ pts.T).abs() / (norms[:, None] * norms[None, :])
    cos.fill_diagonal_(-1.0)  # the anchor itself is added explicitly
    eye = torch.eye(n, dtype=torch.float64)
    out = torch.empty(n_rs, k_sub, n, d, dtype=torch.float64)
    for rs in range(n_rs):
        chosen: list[torch.Tensor] = []
        for k in range(k_sub):
            if chosen:
                resid = _residuals(pts, torch.stack(chosen)).min(dim=-1).values
                weights = resid if bool((resid > 0).any()) else torch.ones(n_pts, dtype=torch.float64)
            else:
                weights = torch.ones(n_pts, dtype=torch.float64)
            anchor = int(torch.multinomial(weights, 1, generator=gen))
            near = cos[anchor].argsort(descending=True)[: d - 1]
            span = pts[torch.cat([torch.tensor([anchor]), near])]  # (<= d, n)
            keep = eye
            if orthogonal and chosen:
                prev = torch.cat(chosen, dim=1)
                keep = eye - prev @ prev.mT
            noise = torch.randn(n, d, generator=gen, dtype=torch.float64)
            chosen.append(_top_directions(span @ keep, d, noise, keep, scale))
        out[rs] = torch.stack(chosen)
    return out


def ksubspaces(x: Any, K: int, d: int, *, restarts: int = 10, max_iter: int = 100, orthogonal: bool = True,
               seed: int | Sequence[int] = 0) -> KSubspaces:
    """K-subspace clustering of points x (N, n) into K subspaces of dimension d (float64); a batch (B, N, n) of
    problems is solved together (leading axis B in the result).

    Alternates assignment (``argmax_k ||U_k^T x_i||^2``) and refitting (per-cluster PCA; with ``orthogonal=True``,
    Theorem 3's constraint ``U_k^T U_l = 0``: block-coordinate PCA, cluster k's PCA taken in the complement of the
    other subspaces, swept until the subspaces stop moving) from ``restarts`` seeded data-driven starts
    (:func:`_seed_bases`); a restart stops when its assignment no longer changes (or after ``max_iter`` steps).
    Returns the restart with the smallest total residual (ties: the first). Both steps never lower
    ``sum_i ||U_{k_i}^T x_i||^2``, so each restart ends in a local optimum; restarts guard against poor ones.
    """
    pts = as_points(x)
    single = pts.ndim == 2
    pts = pts[None] if single else pts
    n_prob, _, n = pts.shape
    if isinstance(K, bool) or int(K) != K or int(K) < 1:
        raise InputError(f"K={K}: pass the number of subspaces, an integer >= 1")
    k_sub = int(K)
    d = _check_rank(d, n)
    if orthogonal and k_sub * d > n:
        raise InputError(f"K * d = {k_sub} * {d} = {k_sub * d} exceeds n = {n}; mutually orthogonal subspaces need "
                         "K * d <= n (or pass orthogonal=False)")
    for name, value in (("restarts", restarts), ("max_iter", max_iter)):
        if isinstance(value, bool) or int(value) != value or int(value) < 1:
            raise InputError(f"{name}={value}; pass an integer >= 1")
    n_rs = int(restarts)
    gens = [torch.Generator().manual_seed(s) for s in _seeds(seed, n_prob)]
    scale = torch.linalg.matrix_norm(pts, ord=2)[:, None, None, None]  # (B, 1, 1, 1): the rank tolerance's scale
    bases = torch.stack([_seed_bases(pts[b], k_sub, d, n_rs, g, orthogonal, scale[b].reshape(1))
                         for b, g in enumerate(gens)])  # (B, R, K, n, d)

    # one draw per problem completes undetermined directions in every step, so a rank-deficient cluster settles
    noise = torch.stack([torch.randn(n_rs, k_sub, n, d, generator=g, dtype=torch.float64) for g in gens])
    data = pts[:, None]  # (B, 1, N, n)
    labels = _assign(data, bases)  # (B, R, N)
    running = torch.ones(n_prob, n_rs, dtype=torch.bool)
    steps = torch.zeros(n_prob, n_rs, dtype=torch.int64)
    for _ in range(int(max_iter)):
        if not bool(running.any()):
            break
        member = torch.nn.functional.one_hot(labels, k_sub).to(torch.float64)  # (B, R, N, K)
        clusters = member.permute(0, 1, 3, 2).unsqueeze(-1) * data.unsqueeze(2)  # (B, R, K, N, n)
        if orthogonal:
            new = _orthogonal_sweep(clusters, bases, noise, scale)
        else:
            new = _top_directions(clusters, d, noise, scale=scale)
        moved = torch.linalg.matrix_norm(projector(new) - projector(bases)).amax(dim=-1) >= SETTLE_TOL  # (B, R)
        bases = torch.where(running[..., None, None, None], new, bases)
        new_labels = _assign(data, bases)
        steps = steps + running.to(torch.int64)
        running = running & ((new_labels != labels).any(dim=-1) | moved)
        labels = new_labels
    total = _residuals(data, bases).min(dim=-1).values.sum(dim=-1)  # (B, R)
    best = total.argmin(dim=1)  # first minimum
    pick = torch.arange(n_prob)
    result = KSubspaces(bases=bases[pick, best], labels=labels[pick, best], residual=total[pick, best],
                        iterations=steps[pick, best], restart=best, converged=~running[pick, best])
    if single:
        return KSubspaces(*(getattr(result, f)[0] for f in ("bases", "labels", "residual", "iterations", "restart",
                                                              "converged")))
    return result


#: A restart has settled when its assignment is unchanged and no projector moved more than this (Frobenius).
SETTLE_TOL = 1e-12


def _orthogonal_sweep(clusters: torch.Tensor, bases: torch.Tensor, noise: torch.Tensor,
                      scale: torch.Tensor) -> torch.Tensor:
    """One block-coordinate sweep of ``max sum_k ||X_k U_k||_F^2`` over ``[U_1 .. U_K]`` with orthonormal columns,
    for fixed clusters (B, R, K, N, n): block k becomes the exact optimum given the others (the top-d PCA of its
    points in the complement of the other subspaces), so the objective never decreases."""
    k_sub, n, d = bases.shape[2], bases.shape[3], bases.shape[4]
    eye = torch.eye(n, dtype=torch.float64)
    new = bases.clone()
    for k in range(k_sub):
        others = torch.cat([new[:, :, :k], new[:, :, k + 1:]], dim=2)
        keep = eye - torch.einsum("brknd,brkmd->brnm", others, others)
        new[:, :, k] = _top_directions(clusters[:, :, k] @ keep, d, noise[:, :, k], keep, scale[..., 0])
    return new

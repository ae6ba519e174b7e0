"""Paper 2's low-rank denoiser: the MoLRG posterior mean with learnable orthonormal bases (Wang et al., 2409.02426).

The paper writes the forward process as ``x_t = s_t x_0 + gamma_t eps`` and parameterises the denoiser exactly like
the posterior mean of a mixture of K equally weighted rank-d Gaussians ``N(0, U_k U_k^T)``::

    x_theta(x_t, t) = s_t / (s_t^2 + gamma_t^2) * sum_k w_k(x_t) U_k U_k^T x_t,
    w(x_t) = softmax_k( phi_t ||U_k^T x_t||^2 ),   phi_t = s_t^2 / (2 gamma_t^2 (s_t^2 + gamma_t^2)),

with ``U_k`` (n x d) of orthonormal columns (d: the paper's intrinsic dimension, mogsim's rank r). In mogsim's
scale-1 convention ``x = x_t / s_t = x_0 + sigma eps`` with ``sigma = gamma_t / s_t`` the same function reads::

    D(x; sigma) = 1 / (1 + sigma^2) * sum_k w_k U_k U_k^T x,   w = softmax_k( ||U_k^T x||^2 / (2 sigma^2 (1 + sigma^2)) ),

and ``x_theta(x_t, t) = D(x_t / s_t; gamma_t / s_t)`` (:meth:`LowRankDenoiser.paper_form`). With the true bases it
is :class:`mogsim.MoLRG`'s posterior mean (equal weights, no data noise), which the tests check in float64.

Variants (the paper's): ``gate="soft"`` is the softmax above; ``gate="hard"`` puts all weight on
``argmax_k ||U_k^T x||^2`` (ties: the lowest k), the network of Theorems 3-4, whose training loss reduces to K-subspace
clustering. ``mutually_orthogonal=True`` also makes the K bases orthogonal to each other (``[U_1 .. U_K]`` has
orthonormal columns, Theorem 3's constraint set; needs ``K d <= n``).

Parametrisation (our choice): a free parameter ``A`` per basis, ``U = qr(A).Q`` with the signs of ``diag(R)`` folded
in (Gram-Schmidt of A's columns). Every forward pass is exactly orthonormal up to rounding, whatever the optimizer
does to A, so the module trains with plain Adam under an identity preconditioning; the denoiser depends on A only
through span(A), and where A is orthonormal, U = A. QR's backward is well defined for full-rank A (a polar or SVD
map's backward divides by eigenvalue gaps, which vanish at orthonormal A). The loss is invariant to ``A -> A M``, so
Adam lets A's norm grow (from 2 to 8.6 in 4000 steps in our runs), which shrinks the effective step and slows
training: :meth:`retract_` resets A to U without changing the function, and :meth:`after_optimizer_step` (which the
training engine calls after every optimizer step) does so.

Member axis: the module holds M independent models (parameters (M, K, n, d)), evaluated on inputs (M, B, n) with
sigma (M, B) in one batched pass; members share nothing, so the gradient of the summed loss is each member's own.
``forward`` on (B, n) is the :class:`~mogsim.denoiser.Denoiser` protocol when M = 1; :meth:`member` gives one member as
a one-member module sharing the parameters (so ``PreconditionedDenoiser.member`` works as for the MLP). ``seed`` may
be one seed per member, so member m starts where a one-member module with ``seed[m]`` starts, whatever M is.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..conventions import Sigma, check_positive_sigma
from ..errors import InputError
from ..parsing import whole_number

GATES = ("soft", "hard")


def orthonormal_columns(raw: torch.Tensor) -> torch.Tensor:
    """``Q`` of the reduced QR of ``raw`` (..., n, d), signs chosen so that ``diag(R) >= 0``: orthonormal columns
    spanning raw's columns, equal to raw when raw is already orthonormal (up to rounding)."""
    q, r = torch.linalg.qr(raw)
    sign = torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return q * sign.unsqueeze(-2)


def _sigma_tensor(sigma: Sigma, x: torch.Tensor) -> torch.Tensor:
    """``sigma`` as a tensor on x's device; a Python float becomes float64 (not torch's float32 default, which would
    round e.g. 0.1 before a float64 evaluation)."""
    if isinstance(sigma, torch.Tensor):
        return sigma.to(device=x.device)
    return torch.tensor(float(sigma), dtype=torch.float64, device=x.device)


class LowRankDenoiser(nn.Module):
    """M independent copies of paper 2's denoiser ``D(x; sigma) = sum_k w_k U_k U_k^T x / (1 + sigma^2)``.

    Args:
        dim: n, the length of a sample vector.
        components: K, the number of subspaces.
        rank: d, the dimension of each subspace (the paper's d, mogsim's r).
        members: M, independent models held in one module.
        gate: ``"soft"`` (the posterior-mean softmax) or ``"hard"`` (argmax; Theorems 3-4).
        mutually_orthogonal: constrain ``[U_1 .. U_K]`` to orthonormal columns (Theorem 3); needs ``K d <= n``.
        seed: seeds the Haar-random initial bases (a private generator; the global RNG is untouched): one seed for
            all members, or one per member.
        dtype: the parameters' dtype (or its name). Float64 inputs are computed in float64 whatever it is.

    ``forward(x, sigma)``: x (B, n) when M = 1, or (M, B, n); sigma a float, a (B,) tensor, or (M, B) for (M, B, n).
    ``sigma`` is the noise level itself: under an identity preconditioning the engine must pass sigma, not a
    transformed noise label.
    """

    def __init__(self, dim: int, components: int, rank: int, *, members: int = 1, gate: str = "soft",
                 mutually_orthogonal: bool = False, seed: int | Sequence[int] = 0,
                 dtype: torch.dtype | str = torch.float32) -> None:
        super().__init__()
        n, k, d, m = (whole_number(value, name, lo=1) for name, value in
                      (("dim", dim), ("components", components), ("rank", rank), ("members", members)))
        if d > n:
            raise InputError(f"LowRankDenoiser: rank d={d} exceeds dim n={n}; a subspace needs d <= n")
        if mutually_orthogonal and k * d > n:
            raise InputError(f"LowRankDenoiser: components * rank = {k} * {d} = {k * d} exceeds dim n={n}; mutually "
                             "orthogonal subspaces need K d <= n")
        if gate not in GATES:
            raise InputError(f"LowRankDenoiser: gate={gate!r}; choose one of {', '.join(GATES)}")
        if isinstance(dtype, str):  # as stored by config()
            dtype = {"float32": torch.float32, "float64": torch.float64}.get(dtype, dtype)  # type: ignore[arg-type]
        if dtype not in (torch.float32, torch.float64):
            raise InputError(f"LowRankDenoiser: dtype={dtype}; use torch.float32 or torch.float64")
        one_seed = np.ndim(seed) == 0  # one seed; otherwise one per member (list, array, tensor)
        seeds = [whole_number(v, "seed", fix=f"one seed, or one per member ({m})")
                 for v in ([seed] if one_seed else seed)]
        if len(seeds) not in (1, m):
            raise InputError(f"seed={list(seed)}: pass one seed or one per member ({m})", parameter="seed")
        self.dim, self.components, self.rank, self.members = n, k, d, m
        self.gate, self.mutually_orthogonal = gate, bool(mutually_orthogonal)
        self.seed: int | list[int] = seeds[0] if one_seed else seeds
        self.sample_shape = (n,)
        shape = (n, k * d) if self.mutually_orthogonal else (k, n, d)
        if len(seeds) == 1:
            raw = torch.randn((m, *shape), generator=torch.Generator().manual_seed(seeds[0]), dtype=torch.float64)
        else:
            raw = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(v), dtype=torch.float64)
                               for v in seeds])
        self.raw = nn.Parameter(orthonormal_columns(raw).to(dtype))

    def config(self) -> dict[str, Any]:
        """The constructor arguments (JSON-ready), for checkpoints and run folders."""
        return {"dim": self.dim, "components": self.components, "rank": self.rank, "members": self.members,
                "gate": self.gate, "mutually_orthogonal": self.mutually_orthogonal, "seed": self.seed,
                "dtype": str(self.raw.dtype).removeprefix("torch.")}

    # -- bases -------------------------------------------------------------------------------------------------------
    def bases(self, members: slice | None = None) -> torch.Tensor:
        """The orthonormal bases, shape (M, K, n, d) (M' for a ``members`` slice), in the parameters' dtype
        (differentiable)."""
        u = orthonormal_columns(self.raw if members is None else self.raw[members])
        if self.mutually_orthogonal:  # (M, n, K d) -> (M, K, n, d): block k is columns k d .. (k+1) d
            u = u.reshape(u.shape[0], self.dim, self.components, self.rank).permute(0, 2, 1, 3)
        return u

    def _stacked_bases(self, members: slice | None = None) -> torch.Tensor:
        """``[U_1 .. U_K]`` as (M, n, K d) (the layout batched products want)."""
        u = orthonormal_columns(self.raw if members is None else self.raw[members])
        if self.mutually_orthogonal:
            return u
        return u.permute(0, 2, 1, 3).reshape(u.shape[0], self.dim, self.components * self.rank)

    @torch.no_grad()
    def set_bases(self, bases: Any) -> None:
        """Set the bases to ``bases`` ((K, n, d) for every member, or (M, K, n, d)) with orthonormal columns."""
        u = torch.as_tensor(bases, dtype=torch.float64)
        if u.ndim == 3:
            u = u.expand(self.members, *u.shape)
        want = (self.members, self.components, self.dim, self.rank)
        if tuple(u.shape) != want:
            raise InputError(f"bases has shape {tuple(u.shape)}; expected {want[1:]} or {want}")
        gram = u.transpose(-1, -2) @ u  # float32 bases (e.g. trained ones) carry ~1e-7 rounding: tolerate 1e-5
        if not bool(torch.allclose(gram, torch.eye(self.rank, dtype=torch.float64).expand_as(gram), atol=1e-5)):
            raise InputError("bases must have orthonormal columns (U_k^T U_k = I)")
        if self.mutually_orthogonal:
            u = u.permute(0, 2, 1, 3).reshape(self.members, self.dim, self.components * self.rank)
            if not bool(torch.allclose(u.transpose(-1, -2) @ u, torch.eye(u.shape[-1], dtype=torch.float64),
                                       atol=1e-5)):
                raise InputError("mutually_orthogonal: the bases must also be orthogonal to each other")
        self.raw.copy_(u.to(self.raw.dtype))

    @torch.no_grad()
    def retract_(self) -> None:
        """Replace the free parameter by its orthonormal Q factor: the same denoiser, a well-conditioned parameter."""
        self.raw.copy_(orthonormal_columns(self.raw))

    def after_optimizer_step(self) -> None:
        """Called by the training engine after every optimizer step: :meth:`retract_` (keeps A's norm bounded)."""
        self.retract_()

    # -- the denoiser -----------------------------------------------------------------------------------------------
    def weights(self, x: torch.Tensor, sigma: Sigma) -> torch.Tensor:
        """The gate ``w`` (M, B, K) (or (B, K) for x (B, n)): softmax or one-hot of ``||U_k^T x||^2``."""
        xs, sig, flat = self._inputs(x, sigma)
        w = self._parts(xs, sig)[0]
        return w[0] if flat else w

    def forward(self, x: torch.Tensor, sigma: Sigma) -> torch.Tensor:
        """``D(x; sigma)``, validated (see the class docs for shapes); x's shape, dtype and device."""
        xs, sig, flat = self._inputs(x, sigma)
        out = self.denoise(xs, sig)
        return out[0] if flat else out

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, members: slice | None = None) -> torch.Tensor:
        """``D(x; sigma)`` for x (M, B, n) and sigma (M, B) without input checks (the training path); ``members``
        selects M of the module's members."""
        w, coef, u, scale = self._parts(x, sigma, members)
        # sum_k w_k U_k (U_k^T x) as one product over the K d coefficients (cheaper than forming K projections)
        weighted = (w[..., None] * coef).flatten(-2)
        return (torch.bmm(weighted, u.transpose(1, 2)) * scale).to(x.dtype)

    def paper_form(self, x_t: torch.Tensor, s: Sigma, gamma: Sigma) -> torch.Tensor:
        """The paper's ``x_theta(x_t, t)`` for ``x_t = s x_0 + gamma eps``: ``D(x_t / s; gamma / s)``.

        ``s`` and ``gamma``: floats, or tensors with one value per sample (x_t's shape without its last axis)."""
        s_t = torch.as_tensor(s, dtype=x_t.dtype, device=x_t.device)
        g_t = torch.as_tensor(gamma, dtype=x_t.dtype, device=x_t.device)
        return self(x_t / (s_t[..., None] if s_t.ndim else s_t), g_t / s_t)

    def _parts(self, x: torch.Tensor, sigma: torch.Tensor, members: slice | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gate (M, B, K), coefficients ``U_k^T x`` (M, B, K, d), stacked bases (M, n, K d) and
        ``1 / (1 + sigma^2)`` (M, B, 1)."""
        dtype = torch.float64 if x.dtype == torch.float64 else self.raw.dtype
        u = self._stacked_bases(members).to(dtype)
        xs, sig = x.to(dtype), sigma.to(dtype)[..., None]
        coef = torch.bmm(xs, u).unflatten(-1, (self.components, self.rank))
        energy = (coef * coef).sum(-1)  # (M, B, K)
        if self.gate == "soft":
            w = torch.softmax(energy / (2 * sig * sig * (1 + sig * sig)), dim=-1)
        else:
            w = torch.nn.functional.one_hot(energy.argmax(-1), self.components).to(dtype)
        return w, coef, u, 1 / (1 + sig * sig)

    def _inputs(self, x: torch.Tensor, sigma: Sigma) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """Validate; return x as (M, B, n), sigma as (M, B) on x's device, and whether x came as (B, n)."""
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise InputError("x must be a floating-point tensor of shape (B, n) or (M, B, n)")
        flat = x.ndim == 2
        if flat and self.members != 1:
            raise InputError(f"x has shape {tuple(x.shape)} but the module holds {self.members} members; pass "
                             f"({self.members}, B, {self.dim}) or use .member(i)")
        if x.ndim not in (2, 3) or x.shape[-1] != self.dim or x.shape[-2] == 0 or (not flat and x.shape[0] !=
                                                                                  self.members):
            raise InputError(f"x has shape {tuple(x.shape)}; expected (B, {self.dim})"
                             + (f" or ({self.members}, B, {self.dim})" if self.members > 1 else ""))
        xs = x[None] if flat else x
        check_positive_sigma(sigma)
        sig = _sigma_tensor(sigma, x)
        batch = xs.shape[:2]
        if sig.ndim == 0:
            sig = sig.expand(batch)
        elif flat and sig.ndim == 1 and sig.shape[0] == batch[1]:
            sig = sig[None]
        elif tuple(sig.shape) != tuple(batch):
            raise InputError(f"sigma has shape {tuple(sig.shape)}; pass a float, a ({batch[1]},) tensor for x (B, n) "
                             f"or a {tuple(batch)} tensor for x (M, B, n)")
        return xs, sig, flat

    def member(self, index: int) -> "LowRankDenoiser":
        """Member ``index`` as a one-member module (a :class:`~mogsim.denoiser.Denoiser` on (B, n)) whose parameter
        is a view of this one's (no copy, no gradients)."""
        i = whole_number(index, "member", lo=0, hi=self.members - 1)
        config = {**self.config(), "members": 1, "seed": self.seed if isinstance(self.seed, int) else self.seed[i]}
        one = LowRankDenoiser(**config)
        one.raw = nn.Parameter(self.raw.detach()[i:i + 1], requires_grad=False)
        return one

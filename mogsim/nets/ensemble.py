"""A batched ensemble of M small noise-conditioned MLPs, trained simultaneously with ``baddbmm``.

Every weight has a leading member axis: a layer is a (M, in, out) tensor and one ``baddbmm`` evaluates it for all
members at once, so M small models keep a GPU as busy as one large one. Members share nothing: the training loss is
the sum of the members' own losses and Adam is element-wise, so each member's trajectory is that of a model
trained alone (up to the random numbers it is fed). ``M = 1`` is an ordinary single model.

Architecture of one member, ``F(x, c_noise)`` on vectors of dimension n:

* noise embedding: sinusoidal features of ``c_noise`` (:func:`mogsim.nets.unet.positional_embedding`, ``noise_channels``
  of them) -> Linear -> SiLU, giving ``e`` (width W);
* ``depth`` hidden layers of width W: ``h_1 = Linear(x)`` (n -> W), then ``h_{i+1} = Linear(SiLU(h_i + e))``
  (W -> W) for i = 1..depth-1, the embedding added before every activation;
* output ``Linear(SiLU(h_depth + e))`` (W -> n), initialised near zero so that a fresh model is ``D = c_skip x``.

Cost per sample: about ``n W + C W + (depth - 1) W^2 + W n`` multiply-adds (C = noise_channels); 0.17M at n = 48,
W = 256, depth = 3.

EDM preconditioning (:class:`mogsim.conventions.EDMPrecond`) turns ``F`` into the denoiser
``D(x; sigma) = c_skip x + c_out F(c_in x; c_noise)`` with a per-member ``sigma_data`` (members may be trained on
data of different scales). :meth:`EnsembleMLP.member` wraps one member as a :class:`mogsim.denoiser.Denoiser`.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..conventions import EDMPrecond, Sigma, check_positive_sigma
from ..errors import InputError
from .unet import positional_embedding


def _xavier(members: int, fan_in: int, fan_out: int, gain: float = 1.0) -> torch.Tensor:
    """(M, in, out) Xavier-uniform weights, independent per member."""
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return (torch.rand(members, fan_in, fan_out, dtype=torch.float32) * 2.0 - 1.0) * bound


class EnsembleMLP(nn.Module):
    """M independent noise-conditioned MLPs ``F_m(x, c_noise)`` with EDM preconditioning.

    Args:
        members: M, the number of models.
        dim: n, the length of one sample vector.
        width: W, hidden width.
        depth: number of hidden layers of width W (>= 1): one n -> W layer and ``depth - 1`` W -> W layers.
        sigma_data: the data standard deviation per coordinate, one float for all or M values (EDM's ``sigma_data``).
        noise_channels: sinusoidal features of the noise label (even).
        seed: seeds the initialisation (a private CPU generator; the global RNG is untouched).
    """

    def __init__(self, members: int, dim: int, *, width: int = 256, depth: int = 3,
                 sigma_data: float | Sequence[float] = 0.5, noise_channels: int = 64, seed: int = 0) -> None:
        super().__init__()
        if members < 1 or dim < 1 or width < 1 or depth < 1:
            raise InputError(f"EnsembleMLP needs members, dim, width, depth >= 1 (got {members}, {dim}, {width}, "
                             f"{depth})")
        if noise_channels < 2 or noise_channels % 2:
            raise InputError(f"noise_channels={noise_channels}; pass an even number >= 2")
        sd = torch.as_tensor(sigma_data, dtype=torch.float64).reshape(-1)
        if sd.numel() == 1:
            sd = sd.expand(members).clone()
        if sd.numel() != members or not bool(torch.all(torch.isfinite(sd) & (sd > 0))):
            raise InputError(f"sigma_data needs 1 or {members} positive finite values")
        self.members, self.dim, self.width, self.depth = int(members), int(dim), int(width), int(depth)
        self.noise_channels = int(noise_channels)
        self.register_buffer("sigma_data", sd.to(torch.float32))
        gen_state = torch.random.get_rng_state()
        try:
            torch.manual_seed(int(seed))
            m, w = self.members, self.width
            self.w_emb = nn.Parameter(_xavier(m, self.noise_channels, w))
            self.b_emb = nn.Parameter(torch.zeros(m, 1, w))
            self.w_in = nn.Parameter(_xavier(m, dim, w))
            self.b_in = nn.Parameter(torch.zeros(m, 1, w))
            self.w_hid = nn.ParameterList(nn.Parameter(_xavier(m, w, w)) for _ in range(depth - 1))  # (M, W, W)
            self.b_hid = nn.ParameterList(nn.Parameter(torch.zeros(m, 1, w)) for _ in range(depth - 1))
            self.w_out = nn.Parameter(_xavier(m, w, dim, gain=1e-5))
            self.b_out = nn.Parameter(torch.zeros(m, 1, dim))
        finally:
            torch.random.set_rng_state(gen_state)

    def config(self) -> dict[str, Any]:
        """The constructor arguments (JSON-ready), for checkpoints."""
        return {"members": self.members, "dim": self.dim, "width": self.width, "depth": self.depth,
                "sigma_data": [float(s) for s in self.sigma_data.tolist()], "noise_channels": self.noise_channels}

    def parameters_per_member(self) -> int:
        """Trainable scalars of one member."""
        return sum(p.numel() for p in self.parameters()) // self.members

    # -- raw network ------------------------------------------------------------------------------------------------
    def raw(self, x: torch.Tensor, c_noise: torch.Tensor, members: slice | None = None) -> torch.Tensor:
        """``F(x, c_noise)``: x (M', B, n) float32, c_noise (M', B) -> (M', B, n); ``members`` selects M' of M.

        With ``members=None`` the parameters are used as they are (no slicing views, so no extra gradient copies in
        the backward pass of training)."""

        def p(t: torch.Tensor) -> torch.Tensor:
            return t if members is None else t[members]

        mm, b = x.shape[0], x.shape[1]
        pe = positional_embedding(c_noise.reshape(-1), self.noise_channels).reshape(mm, b, self.noise_channels)
        emb = F.silu(torch.baddbmm(p(self.b_emb), pe, p(self.w_emb)))
        h = torch.baddbmm(p(self.b_in), x, p(self.w_in))
        for w_i, b_i in zip(self.w_hid, self.b_hid):
            h = torch.baddbmm(p(b_i), F.silu(h + emb), p(w_i))
        return torch.baddbmm(p(self.b_out), F.silu(h + emb), p(self.w_out))

    # -- preconditioned denoiser ------------------------------------------------------------------------------------
    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, members: slice | None = None) -> torch.Tensor:
        """``D(x; sigma)`` for x (M', B, n) and sigma (M', B), without input checks (the training path).

        The network runs in float32; the skip combination in float32, or float64 for float64 inputs.
        """
        sd = self.sigma_data if members is None else self.sigma_data[members]
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        xs = x.to(dtype)
        s = sigma.to(dtype)[..., None]
        precond = EDMPrecond(sigma_data=sd.to(dtype)[:, None, None])  # type: ignore[arg-type]
        c_skip, c_out, c_in = precond.c_skip(s), precond.c_out(s), precond.c_in(s)
        c_noise = precond.c_noise(s)[..., 0]
        f = self.raw((c_in * xs).to(torch.float32), c_noise.to(torch.float32), members)
        return (c_skip * xs + c_out * f.to(dtype)).to(x.dtype)

    def loss_weight(self, sigma: torch.Tensor) -> torch.Tensor:
        """EDM's ``lambda(sigma) = 1 / c_out^2`` per member and sample, sigma (M, B)."""
        sd = self.sigma_data[:, None].to(sigma.dtype)
        return EDMPrecond(sigma_data=sd).loss_weight(sigma)  # type: ignore[arg-type]

    def member(self, index: int) -> "EnsembleMember":
        """Member ``index`` as a :class:`mogsim.denoiser.Denoiser`."""
        if not 0 <= int(index) < self.members:
            raise InputError(f"member {index} out of range 0..{self.members - 1}")
        return EnsembleMember(self, int(index))


class EnsembleMember:
    """One member of an :class:`EnsembleMLP` as a denoiser ``D(x, sigma)``: x (B, n), sigma a float or (B,).

    Holds a reference to the ensemble (no copy), evaluates under ``torch.no_grad``.
    """

    def __init__(self, ensemble: EnsembleMLP, index: int) -> None:
        self.ensemble, self.index = ensemble, index
        self.sample_shape = (ensemble.dim,)

    def __call__(self, x: torch.Tensor, sigma: Sigma) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim < 1 or x.shape[0] == 0:
            raise InputError("x must be a floating-point tensor of shape (B, n) with B >= 1")
        if x[0].numel() != self.ensemble.dim:
            raise InputError(f"x has shape {tuple(x.shape)}; expected (B, {self.ensemble.dim})")
        check_positive_sigma(sigma)
        sig = torch.as_tensor(sigma, device=x.device, dtype=torch.float64)
        if sig.ndim == 0:
            sig = sig.expand(x.shape[0])
        elif sig.ndim != 1 or sig.shape[0] != x.shape[0]:
            raise InputError(f"sigma has shape {tuple(sig.shape)}; pass a float or a ({x.shape[0]},) tensor")
        flat = x.reshape(1, x.shape[0], -1)
        sl = slice(self.index, self.index + 1)
        with torch.no_grad():
            out = self.ensemble.denoise(flat, sig.to(flat.dtype if flat.dtype == torch.float64 else torch.float32)
                                        .reshape(1, -1), sl)
        return out.reshape(x.shape)

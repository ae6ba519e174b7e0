"""The noise-conditioned MLP ``F(x, c_noise)`` on vectors, as one model or as M independent members at once.

Every weight has a leading member axis, (M, in, out), and one ``baddbmm`` evaluates a layer for all members, so M
small models keep a GPU as busy as one large one (the score-matching sweep trains its grid this way, 133x faster
than one model at a time on an H100). Members share nothing: a loss summed over members and an element-wise
optimizer keep their trajectories independent. With ``members=1`` it is a plain model on (B, *sample_shape).

Architecture of one member, on vectors of length n (inputs of any shape (B, *shape) are flattened):

* noise embedding ``e = SiLU(Linear(PE(c_noise)))``, PE the ``noise_channels`` sinusoidal features of
  :func:`~mogsim.nets.layers.positional_embedding`, shared by every layer;
* ``depth`` hidden layers of width W: ``h_1 = Linear(x)`` (n -> W), then ``h_{i+1} = Linear(SiLU(h_i + e))``;
* output ``Linear(SiLU(h_depth + e))`` (W -> n), initialised near zero, so that a fresh preconditioned model is
  ``D = c_skip x``.

Cost per sample: about ``n W + C W + (depth - 1) W^2 + W n`` multiply-adds (C = noise_channels); 0.17M at n = 48,
W = 256, depth 3 (the defaults; 173,104 parameters).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .layers import batched_xavier, positional_embedding


class MLP(nn.Module):
    """``F(x, c_noise)`` for ``members`` independent MLPs (weights initialised from torch's global generator).

    ``forward``: x (B, *shape) and c_noise (B,) when ``members == 1``; x (M, B, *shape) and c_noise (M, B)
    otherwise; the output has x's shape. ``prod(shape)`` must equal ``dim``.
    """

    def __init__(self, dim: int, *, members: int = 1, width: int = 256, depth: int = 3, noise_channels: int = 64,
                 max_positions: float = 10000.0) -> None:
        super().__init__()
        if min(dim, members, width, depth) < 1:
            raise InputError(f"MLP needs dim, members, width and depth >= 1 (got {dim}, {members}, {width}, "
                             f"{depth})")
        if noise_channels < 2 or noise_channels % 2:
            raise InputError(f"noise_channels={noise_channels}: pass an even number >= 2")
        self.dim, self.members, self.width, self.depth = int(dim), int(members), int(width), int(depth)
        self.noise_channels, self.max_positions = int(noise_channels), float(max_positions)
        self.config = dict(dim=self.dim, members=self.members, width=self.width, depth=self.depth,
                           noise_channels=self.noise_channels, max_positions=self.max_positions)
        m, w = self.members, self.width
        self.w_emb = nn.Parameter(batched_xavier(m, self.noise_channels, w))
        self.b_emb = nn.Parameter(torch.zeros(m, 1, w))
        self.w_in = nn.Parameter(batched_xavier(m, self.dim, w))
        self.b_in = nn.Parameter(torch.zeros(m, 1, w))
        self.w_hid = nn.ParameterList(nn.Parameter(batched_xavier(m, w, w)) for _ in range(depth - 1))
        self.b_hid = nn.ParameterList(nn.Parameter(torch.zeros(m, 1, w)) for _ in range(depth - 1))
        self.w_out = nn.Parameter(batched_xavier(m, w, self.dim, gain=1e-5))
        self.b_out = nn.Parameter(torch.zeros(m, 1, self.dim))

    def forward(self, x: torch.Tensor, noise_labels: torch.Tensor) -> torch.Tensor:
        m = self.members
        if m > 1 and x.shape[0] != m:
            raise InputError(f"x has shape {tuple(x.shape)}; an MLP of {m} members takes (M, B, *shape) = "
                             f"({m}, B, ...)")
        batch = x.shape[0] if m == 1 else x.shape[1]
        if x.numel() != m * batch * self.dim:
            raise InputError(f"x has shape {tuple(x.shape)}; this MLP takes samples of {self.dim} numbers",
                             parameter="x")
        h = torch.baddbmm(self.b_in, x.reshape(m, batch, self.dim), self.w_in)
        pe = positional_embedding(noise_labels.reshape(-1), self.noise_channels, self.max_positions)
        emb = F.silu(torch.baddbmm(self.b_emb, pe.reshape(m, batch, -1).to(self.w_emb.dtype), self.w_emb))
        for weight, bias in zip(self.w_hid, self.b_hid):
            h = torch.baddbmm(bias, F.silu(h + emb), weight)
        return torch.baddbmm(self.b_out, F.silu(h + emb), self.w_out).reshape(x.shape)

    def member(self, index: int) -> "MLP":
        """Member ``index`` as a one-member MLP whose weights are views of this one's (no copy, no gradients)."""
        if not 0 <= int(index) < self.members:
            raise InputError(f"member={index}: out of range 0..{self.members - 1}", parameter="member")
        with torch.device("meta"):
            one = MLP(**{**self.config, "members": 1})
        for name, p in self.named_parameters():
            owner, _, attr = name.rpartition(".")
            view = nn.Parameter(p.detach()[index:index + 1], requires_grad=False)
            setattr(one.get_submodule(owner) if owner else one, attr, view)
        return one

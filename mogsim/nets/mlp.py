"""A noise-conditioned MLP ``F(x, c_noise)`` on vectors, for the MoLRG score-matching experiment.

Architecture: the noise label gets the sinusoidal embedding of :func:`~mogsim.nets.unet.positional_embedding`,
then Linear -> SiLU -> Linear -> SiLU (width ``width``). The input vector is projected to ``width``; each of
``depth`` hidden layers computes ``h <- Linear(SiLU(h + A_i emb))`` (a per-layer affine map ``A_i`` of the
embedding is added before the activation); the output is ``Linear(SiLU(h))`` back to ``dim``, initialised near
zero. Inputs of any shape (B, *sample_shape) are flattened to (B, dim) and reshaped back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .unet import _init_, positional_embedding


class MLP(nn.Module):
    """``F(x, c_noise)``: (B, *shape) with ``prod(shape) = dim`` -> same shape."""

    def __init__(self, dim: int, *, width: int = 256, depth: int = 4, noise_channels: int | None = None,
                 max_positions: float = 10000.0) -> None:
        super().__init__()
        if dim < 1 or width < 1 or depth < 0:
            raise InputError(f"MLP needs dim >= 1, width >= 1 and depth >= 0 (got {dim}, {width}, {depth})")
        self.dim, self.width, self.depth = dim, width, depth
        self.noise_channels = noise_channels or width
        if self.noise_channels % 2:
            raise InputError(f"noise_channels {self.noise_channels} must be even")
        self.max_positions = max_positions
        self.config = dict(dim=dim, width=width, depth=depth, noise_channels=noise_channels,
                           max_positions=max_positions)
        self.map0 = _init_(nn.Linear(self.noise_channels, width))
        self.map1 = _init_(nn.Linear(width, width))
        self.inp = _init_(nn.Linear(dim, width))
        self.emb_proj = nn.ModuleList(_init_(nn.Linear(width, width)) for _ in range(depth))
        self.hidden = nn.ModuleList(_init_(nn.Linear(width, width)) for _ in range(depth))
        self.out = _init_(nn.Linear(width, dim), gain=1e-5)

    def forward(self, x: torch.Tensor, noise_labels: torch.Tensor) -> torch.Tensor:
        """x (B, *shape), noise_labels (B,) -> (B, *shape)."""
        shape = x.shape
        h = self.inp(x.reshape(shape[0], -1))
        pe = positional_embedding(noise_labels.reshape(-1), self.noise_channels, self.max_positions)
        emb = F.silu(self.map1(F.silu(self.map0(pe.to(self.map0.weight.dtype)))))
        for lin, proj in zip(self.hidden, self.emb_proj):
            h = lin(F.silu(h + proj(emb)))
        return self.out(F.silu(h)).reshape(shape)

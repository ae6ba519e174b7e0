"""Layers shared by the networks: the sinusoidal noise embedding and Xavier initialisation (plain and batched)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import InputError


def positional_embedding(t: torch.Tensor, dim: int, max_positions: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features ``[cos(t f_j), sin(t f_j)]`` of a (B,) tensor, ``f_j = max_positions^(-j / (dim/2))``.

    The Transformer position encoding, used by DDPM/DDPM++ to embed the noise label. Computed in float32.
    """
    if dim % 2:
        raise InputError(f"embedding dim {dim} must be even")
    half = dim // 2
    freqs = torch.exp(-math.log(max_positions) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.to(torch.float32).reshape(-1, 1) * freqs.reshape(1, -1)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def xavier_bound(fan_in: int, fan_out: int, gain: float = 1.0) -> float:
    """Half-width of Xavier-uniform weights: ``gain * sqrt(6 / (fan_in + fan_out))``."""
    return gain * math.sqrt(6.0 / (fan_in + fan_out))


def init_layer(layer: nn.Conv2d | nn.Linear, gain: float = 1.0) -> nn.Module:
    """Xavier-uniform weights scaled by ``gain`` and zero bias (``gain`` 1e-5 makes a branch start near zero)."""
    nn.init.xavier_uniform_(layer.weight, gain=gain)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def batched_xavier(members: int, fan_in: int, fan_out: int, gain: float = 1.0) -> torch.Tensor:
    """(members, fan_in, fan_out) Xavier-uniform weights, independent per member, from torch's global generator."""
    bound = xavier_bound(fan_in, fan_out, gain)
    return (torch.rand(members, fan_in, fan_out) * 2.0 - 1.0) * bound

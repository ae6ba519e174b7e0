"""Wrap a raw network ``F(x, c_noise)`` as a denoiser ``D(x, sigma) = c_skip x + c_out F(c_in x, c_noise)``.

The coefficients come from :mod:`mogsim.conventions` (Karras et al. 2022, Table 1): :class:`EDMPrecond` or
:class:`VPPrecond`. Inputs follow mogsim's convention ``x = x0 + sigma eps`` (scale s = 1) for both; the VP
preconditioning rescales internally through ``c_in = 1 / sqrt(1 + sigma^2)``.
"""

from __future__ import annotations

import contextlib
from typing import Union

import torch
from torch import nn

from ..conventions import EDMPrecond, Sigma, VPPrecond, check_positive_sigma
from ..errors import InputError

Precond = Union[EDMPrecond, VPPrecond]
PRECONDS = ("edm", "vp")


def make_precond(name: str, *, sigma_data: float = 0.5) -> Precond:
    """``"edm"`` -> :class:`EDMPrecond` (with ``sigma_data``), ``"vp"`` -> :class:`VPPrecond`."""
    key = str(name).strip().lower()
    if key == "edm":
        return EDMPrecond(sigma_data=sigma_data)
    if key == "vp":
        return VPPrecond()
    raise InputError(f"--precond {name!r} is not one of {', '.join(PRECONDS)}")


def precond_name(precond: Precond) -> str:
    """The registry name of a preconditioning object."""
    if isinstance(precond, EDMPrecond):
        return "edm"
    if isinstance(precond, VPPrecond):
        return "vp"
    raise InputError(f"unknown preconditioning {type(precond).__name__}; use EDMPrecond or VPPrecond")


class PreconditionedDenoiser(nn.Module):
    """A trained network as a :class:`~mogsim.denoiser.Denoiser`: ``D(x, sigma) -> E[x0 | x]``.

    ``forward(x, sigma)`` takes x (B, *sample_shape) of any float dtype and sigma a float, 0-d or (B,) tensor; it
    returns a tensor of x's shape, dtype and device. The network runs in float32 (its parameters' dtype), or
    under bfloat16 autocast when ``autocast_dtype=torch.bfloat16``; the skip combination runs in float32
    (float64 for float64 inputs) and the result is cast back to x's dtype.
    """

    def __init__(self, net: nn.Module, precond: Precond | None = None, *,
                 autocast_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.net = net
        self.precond = EDMPrecond() if precond is None else precond
        precond_name(self.precond)  # validates the type
        self.autocast_dtype = autocast_dtype

    def forward(self, x: torch.Tensor, sigma: Sigma) -> torch.Tensor:
        """``D(x, sigma)``, validated: x a float tensor (B, ...), sigma finite and > 0 (one value or B values)."""
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim < 1 or x.shape[0] == 0:
            raise InputError("x must be a floating-point tensor of shape (B, *sample_shape) with B >= 1")
        if isinstance(sigma, torch.Tensor) and not (sigma.ndim == 0 or (sigma.ndim == 1
                                                                        and sigma.shape[0] == x.shape[0])):
            raise InputError(f"sigma has shape {tuple(sigma.shape)}; pass a float or a ({x.shape[0]},) tensor")
        check_positive_sigma(sigma)
        sig = torch.as_tensor(sigma, device=x.device)
        return self.denoise(x, sig.expand(x.shape[0]) if sig.ndim == 0 else sig)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """``D(x, sigma)`` without input checks (the training path): sigma a (B,) tensor on x's device."""
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        xs = x.to(dtype)
        s = sigma.to(dtype).reshape((-1,) + (1,) * (x.ndim - 1))
        p = self.precond
        c_skip, c_out, c_in, c_noise = p.c_skip(s), p.c_out(s), p.c_in(s), p.c_noise(s)
        net_dtype = next(self.net.parameters()).dtype
        ctx = (torch.autocast(device_type=x.device.type, dtype=self.autocast_dtype)
               if self.autocast_dtype is not None else contextlib.nullcontext())
        with ctx:
            f = self.net((c_in * xs).to(net_dtype), c_noise.reshape(-1).to(net_dtype))
        return (c_skip * xs + c_out * f.to(dtype)).to(x.dtype)

"""Wrap a raw network ``F(x, c_noise)`` as a denoiser ``D(x, sigma) = c_skip x + c_out F(c_in x, c_noise)``.

The coefficients come from a preconditioning object (Karras et al. 2022, Table 1): :class:`~mogsim.conventions.
EDMPrecond`, :class:`~mogsim.conventions.VPPrecond`, or :class:`IdentityPrecond` for networks that are denoisers by
construction. Inputs follow mogsim's convention ``x = x0 + sigma eps`` (scale s = 1); the VP preconditioning
rescales internally through ``c_in = 1 / sqrt(1 + sigma^2)``.

Every trained network is wrapped by :class:`PreconditionedDenoiser`, including a batched net of M members (the
:class:`~mogsim.nets.mlp.MLP`): it then holds one ``sigma_data`` per member (members may see data of different
scales) and :meth:`PreconditionedDenoiser.member` gives member m as an ordinary :class:`~mogsim.denoiser.Denoiser`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Sequence, Union

import torch
from torch import nn

from ..conventions import EDMPrecond, Preconditioning, Sigma, VEPrecond, VPPrecond, check_positive_sigma, sigma_like
from ..errors import InputError


@dataclass(frozen=True)
class IdentityPrecond(Preconditioning):
    """For networks that are denoisers by construction (e.g. paper 2's low-rank denoiser): ``D(x; sigma) =
    F(x; sigma)``, i.e. ``c_skip = 0``, ``c_out = c_in = 1``, ``c_noise = sigma``, loss weight 1."""

    def c_skip(self, sigma: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(sigma)


Precond = Union[EDMPrecond, VPPrecond, VEPrecond, IdentityPrecond]
_NAMES = {EDMPrecond: "edm", VPPrecond: "vp", VEPrecond: "ve", IdentityPrecond: "identity"}


def precond_name(precond: Precond) -> str:
    """The registry name of a preconditioning object."""
    try:
        return _NAMES[type(precond)]
    except KeyError:
        raise InputError(f"precond={type(precond).__name__}: use EDMPrecond, VPPrecond, VEPrecond or "
                         "IdentityPrecond", parameter="precond") from None


def per_member(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(M,) per-member values shaped to broadcast against ``like`` (M, B, ...); one value becomes a 0-d tensor."""
    if values.numel() == 1:
        return values.reshape(())
    return values.reshape((-1,) + (1,) * (like.ndim - 1))


class PreconditionedDenoiser(nn.Module):
    """A trained network as a :class:`~mogsim.denoiser.Denoiser`: ``D(x, sigma) -> E[x0 | x]``.

    ``forward(x, sigma)`` takes x (B, *sample_shape) of any float dtype and sigma a float, 0-d or (B,) tensor; it
    returns a tensor of x's shape, dtype and device. The network runs in its parameters' dtype (float32), or under
    ``autocast_dtype`` (e.g. bfloat16) autocast; the skip combination runs in float32 (float64 for float64 inputs)
    and the result is cast back to x's dtype.

    ``sigma_data`` (one value, or one per member of a batched net) replaces the preconditioning's own, for
    preconditionings that have one (EDM).
    """

    def __init__(self, net: nn.Module, precond: Precond | None = None, *,
                 sigma_data: float | Sequence[float] | torch.Tensor | None = None,
                 autocast_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.net = net
        self.precond = EDMPrecond() if precond is None else precond
        self.name = precond_name(self.precond)
        self.members = int(getattr(net, "members", 1))
        self.autocast_dtype = autocast_dtype
        has_sd = any(f.name == "sigma_data" for f in dataclasses.fields(self.precond))
        if sigma_data is not None and not has_sd:
            raise InputError(f"sigma_data: the {self.name} preconditioning has none; leave it out",
                             parameter="sigma_data")
        values = sigma_data if sigma_data is not None else getattr(self.precond, "sigma_data", None)
        sd = None
        if values is not None:
            sd = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
            if sd.numel() == 1:
                sd = sd.expand(self.members).clone()
            if sd.numel() != self.members or not bool(torch.all(torch.isfinite(sd) & (sd > 0))):
                raise InputError(f"sigma_data={values}: pass 1 or {self.members} positive finite values",
                                 parameter="sigma_data")
        self.register_buffer("sigma_data", sd)

    def forward(self, x: torch.Tensor, sigma: Sigma) -> torch.Tensor:
        """``D(x, sigma)``, validated: x a float tensor (B, ...), sigma finite and > 0 (one value or B values)."""
        if self.members != 1:
            raise InputError(f"this denoiser holds {self.members} members; call .member(m) for one of them")
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim < 1 or x.shape[0] == 0:
            raise InputError("x must be a floating-point tensor of shape (B, *sample_shape) with B >= 1",
                             parameter="x")
        check_positive_sigma(sigma)
        sig = sigma_like(sigma, x).reshape(-1).expand(x.shape[0])
        return self.denoise(x, sig)

    def coefficients(self, sigma: torch.Tensor, dtype: torch.dtype) -> Precond:
        """The preconditioning with this denoiser's per-member ``sigma_data`` shaped to broadcast against
        ``sigma`` (B, ...) or (M, B, ...)."""
        if self.sigma_data is None:
            return self.precond
        sd = per_member(self.sigma_data.to(device=sigma.device, dtype=dtype), sigma)
        return dataclasses.replace(self.precond, sigma_data=sd)  # type: ignore[arg-type]

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """``D(x, sigma)`` without input checks (the training path): x (B, *shape) and sigma (B,), or for M
        members x (M, B, *shape) and sigma (M, B), on x's device."""
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        xs = x.to(dtype)
        s = sigma.to(dtype).reshape(tuple(sigma.shape) + (1,) * (x.ndim - sigma.ndim))
        p = self.coefficients(s, dtype)
        c_skip, c_out, c_in, c_noise = p.c_skip(s), p.c_out(s), p.c_in(s), p.c_noise(s)
        net_dtype = next(self.net.parameters()).dtype
        autocast = (torch.autocast(device_type=x.device.type, dtype=self.autocast_dtype)
                    if self.autocast_dtype is not None else contextlib.nullcontext())
        with autocast:
            f = self.net((c_in * xs).to(net_dtype), c_noise.reshape(sigma.shape).to(net_dtype))
        return (c_skip * xs + c_out * f.to(dtype)).to(x.dtype)

    def member(self, index: int) -> "PreconditionedDenoiser":
        """Member ``index`` of a batched net as a one-member denoiser sharing its weights (eval mode, no
        gradients); a one-member denoiser returns itself for index 0."""
        if self.members == 1:
            if index != 0:
                raise InputError(f"member={index}: this denoiser has one member (0)", parameter="member")
            return self
        sd = None if self.sigma_data is None else self.sigma_data[index:index + 1]
        return PreconditionedDenoiser(self.net.member(index), self.precond, sigma_data=sd,
                                      autocast_dtype=self.autocast_dtype).eval()

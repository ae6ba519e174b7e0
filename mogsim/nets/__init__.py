"""Trained networks: DDPM++ UNets, the (batched) vector MLP, preconditioning, and a registry of named configs.

A raw network computes ``F(x, c_noise)``; :class:`PreconditionedDenoiser` turns it into a denoiser
``D(x, sigma) = c_skip x + c_out F(c_in x, c_noise)`` that implements :class:`mogsim.denoiser.Denoiser` (for a
batched net of M members, or a :class:`MemberList` of M separate UNets, :meth:`PreconditionedDenoiser.member` gives
one). Shared layers live in :mod:`.layers`.
"""

from .layers import positional_embedding
from .members import MemberList
from .mlp import MLP
from .precond import IdentityPrecond, Precond, PreconditionedDenoiser, precond_name
from .registry import (NETWORKS, NetOptions, build_from_config, build_network, count_parameters, list_networks,
                       network_config)
from .unet import UNet, VectorUNet

__all__ = [
    "MLP", "MemberList", "NETWORKS", "IdentityPrecond", "NetOptions", "Precond", "PreconditionedDenoiser", "UNet", "VectorUNet",
    "build_from_config", "build_network", "count_parameters", "list_networks", "network_config",
    "positional_embedding", "precond_name",
]

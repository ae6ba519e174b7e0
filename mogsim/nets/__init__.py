"""Trained networks: DDPM++ UNets, a vector MLP, EDM/VP preconditioning, and a registry of named configs.

A raw network computes ``F(x, c_noise)``; :class:`PreconditionedDenoiser` turns it into a denoiser
``D(x, sigma) = c_skip x + c_out F(c_in x, c_noise)`` that implements :class:`mogsim.denoiser.Denoiser`.
"""

from .mlp import MLP
from .precond import PRECONDS, PreconditionedDenoiser, make_precond, precond_name
from .registry import (NETWORKS, build_from_config, build_network, count_parameters, list_networks,
                       network_config)
from .unet import UNet, VectorUNet, positional_embedding

__all__ = [
    "MLP", "NETWORKS", "PRECONDS", "PreconditionedDenoiser", "UNet", "VectorUNet", "build_from_config",
    "build_network", "count_parameters", "list_networks", "make_precond", "network_config", "positional_embedding",
    "precond_name",
]

"""Closed-form optimal denoisers: empirical, Gaussian, and mixtures of low-rank Gaussians."""

from .empirical import EmpiricalDenoiser
from .gaussian import GaussianDenoiser
from .molrg import MoLRG

__all__ = ["EmpiricalDenoiser", "GaussianDenoiser", "MoLRG"]

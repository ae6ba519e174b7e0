"""Brute-force float64 references that the closed forms are checked against."""

from __future__ import annotations

import math

import torch


def brute_force_posterior_mean(data: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """``sum_i softmax_i(-||x - y_i||^2 / (2 sigma^2)) y_i`` with explicit differences, float64, no chunking."""
    y = data.reshape(data.shape[0], -1).to(torch.float64)
    q = x.reshape(x.shape[0], -1).to(torch.float64)
    sig = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, 1) if torch.is_tensor(sigma) else float(sigma)
    logits = -((q[:, None, :] - y[None, :, :]) ** 2).sum(-1) / (2 * sig * sig if torch.is_tensor(sig) else 2 * sig**2)
    return (torch.softmax(logits, dim=1) @ y).reshape(x.shape)


def brute_force_log_density(data: torch.Tensor, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``log (1/N) sum_i N(x; y_i, sigma^2 I)`` with explicit differences (differentiable), float64."""
    y = data.reshape(data.shape[0], -1).to(torch.float64)
    q = x.reshape(x.shape[0], -1).to(torch.float64)
    d = q.shape[1]
    logits = -((q[:, None, :] - y[None, :, :]) ** 2).sum(-1) / (2 * sigma**2)
    return (torch.logsumexp(logits, dim=1) - math.log(y.shape[0])
            - 0.5 * d * math.log(2 * math.pi * sigma**2))


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest per-sample ``||a - b|| / ||b||``."""
    a2, b2 = a.reshape(a.shape[0], -1).double(), b.reshape(b.shape[0], -1).double()
    return float(((a2 - b2).norm(dim=1) / b2.norm(dim=1).clamp_min(1e-300)).max())

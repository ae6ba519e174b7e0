"""Reproducibility (RP) of two samplers run from the same seeds, with a distance-based similarity for vectors.

Paper 1 scores RP with SSCD image descriptors (threshold 0.6), which do not apply to MoLRG vectors. mogsim's
offline similarity for vectors is the relative distance of the two samples drawn from one seed:

    rel(a, b) = ||a - b|| / sqrt((||a||^2 + ||b||^2) / 2)

(0 for identical samples, about sqrt(2) for independent draws of a zero-mean distribution, 2 for ``b = -a``), and
``similarity = 1 - rel``. A seed is *reproduced* when ``rel < 1/3`` (similarity > 2/3): the two samples are closer
to each other than a third of their size. ``RP = fraction of seeds reproduced``. Record this rule with every score.
"""

from __future__ import annotations

import torch

#: Reproduced iff the relative distance is below this (similarity above 1 - RP_THRESHOLD).
RP_THRESHOLD = 1.0 / 3.0


def relative_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``||a - b|| / sqrt((||a||^2 + ||b||^2) / 2)`` per row (float64); 0 where both are 0."""
    x = a.reshape(a.shape[0], -1).to(torch.float64)
    y = b.reshape(b.shape[0], -1).to(device=x.device, dtype=torch.float64)
    num = (x - y).norm(dim=1)
    den = torch.sqrt(0.5 * ((x * x).sum(dim=1) + (y * y).sum(dim=1)))
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros_like(num))


def similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``1 - relative_distance(a, b)`` per row."""
    return 1.0 - relative_distance(a, b)


def reproducibility(a: torch.Tensor, b: torch.Tensor, threshold: float = RP_THRESHOLD) -> float:
    """RP: the fraction of rows (seeds) with ``relative_distance(a, b) < threshold``."""
    return float((relative_distance(a, b) < threshold).to(torch.float64).mean())

"""Reproducibility (RP) of two samplers run from the same seeds: the fraction of seeds whose two samples match.

"Match" is decided by a similarity backend (:mod:`mogsim.metrics.similarity`): paper 1 uses SSCD descriptors with
threshold 0.6; for images mogsim's offline default is the pixel correlation (threshold 0.9); for MoLRG vectors it
is the relative distance of the two samples drawn from one seed,

    rel(a, b) = ||a - b|| / sqrt((||a||^2 + ||b||^2) / 2)

(0 for identical samples, about sqrt(2) for independent draws of a zero-mean distribution, 2 for ``b = -a``), with
``similarity = 1 - rel``; a seed is *reproduced* when ``rel < 1/3``. :func:`reproducibility` keeps that vector rule
as its default. Record the backend's ``record()`` with every score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..parsing import whole_number
from .copies import BOOTSTRAP_RESAMPLES, CI_LEVEL, fraction_ci
from .similarity import RELATIVE_DISTANCE_MAX, RelativeDistance, Similarity, relative_distance

#: Reproduced iff the relative distance is below this (similarity above 1 - RP_THRESHOLD).
RP_THRESHOLD = RELATIVE_DISTANCE_MAX

__all__ = ["RP_THRESHOLD", "Agreement", "agreement", "mismatched_agreement", "relative_distance", "reproducibility",
           "shifted_matches", "similarity"]


def similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``1 - relative_distance(a, b)`` per row."""
    return 1.0 - relative_distance(a, b)


def reproducibility(a: torch.Tensor, b: torch.Tensor, threshold: float = RP_THRESHOLD, *,
                    backend: Similarity | None = None) -> float:
    """RP: the fraction of rows (seeds) whose two samples match.

    Without ``backend``: matched when ``relative_distance(a, b) < threshold``. With a backend, its own threshold
    applies (set it there; ``threshold`` must stay at its default).
    """
    if backend is None:
        backend = RelativeDistance(threshold)
    elif threshold != RP_THRESHOLD:
        raise InputError("threshold applies to the relative distance only; set the threshold of the backend")
    return float(backend.matches(a, b).to(torch.float64).mean())


@dataclass
class Agreement:
    """Same-seed agreement of two samplers: per-seed scores and flags, RP and its bootstrap interval."""

    similarity: np.ndarray
    reproduced: np.ndarray
    rp: float
    ci: tuple[float, float]
    backend: dict[str, Any]

    def summary(self, prefix: str) -> dict[str, Any]:
        """JSON-ready ``{prefix: rp, prefix_ci: [low, high], prefix_median_similarity: ...}``."""
        return {prefix: self.rp, f"{prefix}_ci": list(self.ci),
                f"{prefix}_median_similarity": float(np.median(self.similarity))}


def agreement(a: torch.Tensor, b: torch.Tensor, backend: Similarity, *, level: float = CI_LEVEL,
              resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> Agreement:
    """Compare row i of ``a`` with row i of ``b`` (the same seed through two samplers) with ``backend``."""
    scores = backend.similarity(a, b)
    flags = backend.is_match(scores)
    return Agreement(scores.cpu().numpy(), flags.cpu().numpy(), float(flags.to(torch.float64).mean()),
                     fraction_ci(flags, level=level, resamples=resamples, seed=seed), backend.record())


def mismatched_agreement(a: torch.Tensor, b: torch.Tensor, backend: Similarity, *, shift: int = 1,
                         level: float = CI_LEVEL, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> Agreement:
    """The control of :func:`agreement`: row i of ``a`` against row ``(i + shift) mod S`` of ``b``, two different
    seeds. It is near 0 when the backend tells the samplers' different samples apart, and near the same-seed RP when
    the samples hardly depend on the seed (e.g. all near the data mean): then a high same-seed RP says nothing."""
    shift = whole_number(shift, "shift", lo=1, hi=a.shape[0] - 1 if a.ndim else None,
                         fix="(a shift of 0 is the same-seed agreement; pass 1 .. seeds - 1)")
    return agreement(a, torch.roll(b, -shift, dims=0), backend, level=level, resamples=resamples, seed=seed)


def shifted_matches(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The label-level twin of :func:`mismatched_agreement` for per-seed labels (e.g. each sample's nearest training
    image): the share of seeds with ``a[i] == b[(i + k) mod S]`` for every shift k = 1 .. S - 1, the chance level
    that a same-seed match rate ``mean(a == b)`` must clear."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise InputError(f"a, b: need two 1-d label arrays of one length >= 2, got shapes {a.shape} and {b.shape}",
                         parameter=("a", "b"))
    return np.array([np.mean(a == np.roll(b, -k)) for k in range(1, len(a))])

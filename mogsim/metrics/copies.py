"""Nearest-neighbour copy detection (Carlini et al. 2023; Gu et al. 2023).

A sample counts as a copy of the training set when ``d1 / d2 < 1/3``, with ``d1`` and ``d2`` the Euclidean
distances to its nearest and second-nearest training points. Distances are explicit differences in float64 (no
``|x|^2 - 2 x.y + |y|^2`` expansion), so a sample sitting on a training point gets ``d1 ~ 0`` exactly. With a single
training point ``d2`` is taken as infinite (ratio 0): every sample is then "a copy" by this test, which is why
the experiments also report the plain distance ``d1``.
"""

from __future__ import annotations

import torch

#: The ratio threshold of Carlini et al. / Gu et al.
COPY_RATIO = 1.0 / 3.0


@torch.no_grad()
def nearest_two(samples: torch.Tensor, train: torch.Tensor, *, chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor,
                                                                                             torch.Tensor]:
    """``(d1, d2, index of nearest)`` per sample (float64, float64, int64), samples (B, d), train (N, d)."""
    x = samples.reshape(samples.shape[0], -1).to(torch.float64)
    y = train.reshape(train.shape[0], -1).to(device=x.device, dtype=torch.float64)
    d1s, d2s, idxs = [], [], []
    for i0 in range(0, x.shape[0], chunk):
        dist = torch.cdist(x[i0:i0 + chunk], y, compute_mode="donot_use_mm_for_euclid_dist")
        if y.shape[0] >= 2:
            val, idx = dist.topk(2, dim=1, largest=False)
            d1s.append(val[:, 0])
            d2s.append(val[:, 1])
            idxs.append(idx[:, 0])
        else:
            d1s.append(dist[:, 0])
            d2s.append(torch.full_like(dist[:, 0], float("inf")))
            idxs.append(torch.zeros(dist.shape[0], dtype=torch.long, device=dist.device))
    return torch.cat(d1s), torch.cat(d2s), torch.cat(idxs)


def nn_ratio(samples: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    """``d1 / d2`` per sample (float64); 0 where the sample equals its nearest training point exactly."""
    d1, d2, _ = nearest_two(samples, train)
    return torch.where(d1 == 0, torch.zeros_like(d1), d1 / d2)


def copy_fraction(ratio: torch.Tensor, threshold: float = COPY_RATIO) -> float:
    """Fraction of samples whose nearest-neighbour ratio is below ``threshold``."""
    return float((ratio < threshold).to(torch.float64).mean())

"""Copy detection against a training set: the nearest-neighbour ratio, GL, and bootstrap intervals of fractions.

* **Nearest-neighbour ratio** (Carlini et al. 2023; Gu et al. 2023): a sample is a copy when ``d1 / d2 < 1/3``, with
  ``d1`` and ``d2`` the Euclidean distances to its nearest and second-nearest training points. Candidates come from
  a float64 matrix-product screen; the nearest :data:`CANDIDATES` of each sample are then recomputed as explicit
  float64 differences, so a sample sitting on a training point gets ``d1 = 0`` exactly. With a single training
  point ``d2`` is taken as infinite (ratio 0): every sample is then "a copy" by this test, which is why the
  experiments also report the plain distance ``d1``.
* **GL** (generalizability, paper 1): ``1 - `` the fraction of samples whose best similarity to the training set
  exceeds the similarity backend's threshold (:mod:`mogsim.metrics.similarity`).
* **Bootstrap interval** of a fraction (percentile bootstrap, as Gu et al. and Bonnaire et al. report their
  memorized fractions), seeded.
"""

from __future__ import annotations

import numpy as np
import torch

from ..devices import exact_float32_matmul
from ..errors import InputError
from ..parsing import whole_number

#: The ratio threshold of Carlini et al. / Gu et al.
COPY_RATIO = 1.0 / 3.0
#: Training points per sample recomputed from explicit differences after the matrix-product screen.
CANDIDATES = 8
#: Confidence level and resamples of :func:`fraction_ci`'s defaults.
CI_LEVEL = 0.95
BOOTSTRAP_RESAMPLES = 2000


@torch.no_grad()
def nearest_two(samples: torch.Tensor, train: torch.Tensor, *, chunk: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(d1, d2, index of nearest)`` per sample (float64, float64, int64), samples (B, ...), train (N, ...).

    ``chunk`` samples are screened at a time (default: blocks of about 16M numbers). Runs on ``samples``' device.
    """
    x = samples.reshape(samples.shape[0], -1).to(torch.float64)
    y = train.reshape(train.shape[0], -1).to(device=x.device, dtype=torch.float64)
    if y.shape[0] == 1:
        d1 = (x - y[0]).norm(dim=1)
        return d1, torch.full_like(d1, float("inf")), torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    mean = y.mean(dim=0)
    yc = y - mean  # centring keeps the expansion's norms, and so its rounding, small
    ysq = (yc * yc).sum(dim=1)
    k = min(CANDIDATES, y.shape[0])
    rows = chunk or max(1, (1 << 24) // max(y.shape[0], k * y.shape[1]))
    d1s, d2s, idxs = [], [], []
    for i0 in range(0, x.shape[0], rows):
        xc = x[i0:i0 + rows] - mean
        with exact_float32_matmul():
            screen = torch.addmm(ysq, xc, yc.T, alpha=-2.0).add_((xc * xc).sum(dim=1, keepdim=True))
        cand = screen.topk(k, dim=1, largest=False).indices  # (b, k)
        exact = (xc[:, None, :] - yc[cand]).norm(dim=2)  # explicit differences
        val, order = exact.topk(2, dim=1, largest=False)
        d1s.append(val[:, 0])
        d2s.append(val[:, 1])
        idxs.append(cand.gather(1, order[:, :1])[:, 0])
    return torch.cat(d1s), torch.cat(d2s), torch.cat(idxs)


def nn_ratio(samples: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    """``d1 / d2`` per sample (float64); 0 where the sample equals its nearest training point exactly."""
    d1, d2, _ = nearest_two(samples, train)
    return ratio_of(d1, d2)


def ratio_of(d1: torch.Tensor, d2: torch.Tensor) -> torch.Tensor:
    """``d1 / d2``, with 0 where ``d1 = 0`` (a sample on a training point, even if that point is duplicated)."""
    return torch.where(d1 == 0, torch.zeros_like(d1), d1 / d2)


def copy_fraction(ratio: torch.Tensor, threshold: float = COPY_RATIO) -> float:
    """Fraction of samples whose nearest-neighbour ratio is below ``threshold``."""
    return float((ratio < threshold).to(torch.float64).mean())


def generalizability(max_similarity: torch.Tensor | np.ndarray, threshold: float) -> float:
    """GL (paper 1): ``1 - `` the fraction of samples whose best similarity to the training set is above
    ``threshold``."""
    best = torch.as_tensor(max_similarity)
    if best.numel() == 0:
        raise InputError("max_similarity is empty; pass one score per sample")
    return 1.0 - float((best > threshold).to(torch.float64).mean())


def fraction_ci(flags: torch.Tensor | np.ndarray, *, level: float = CI_LEVEL, resamples: int = BOOTSTRAP_RESAMPLES,
                seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the fraction of true ``flags``.

    Resampling B flags with replacement gives a count distributed as Binomial(B, p) with p the observed fraction,
    so the resampled fractions are drawn as such (numpy PCG64 seeded with ``seed``): the same interval as resampling
    the flags, in O(resamples). The bounds are resampled fractions (``inverted_cdf`` quantiles), so multiples of
    1/B. The interval is degenerate ([0, 0] or [1, 1]) when every flag agrees, a known
    limit of the percentile bootstrap.
    """
    arr = np.asarray(flags.detach().cpu().numpy() if isinstance(flags, torch.Tensor) else flags, dtype=bool)
    if arr.size == 0:
        raise InputError("flags is empty; pass one flag per sample")
    if not 0 < level < 1:
        raise InputError(f"level={level!r}; pass a confidence level in (0, 1), e.g. 0.95")
    resamples = whole_number(resamples, "resamples", lo=1)
    rng = np.random.Generator(np.random.PCG64(int(seed)))
    fractions = rng.binomial(arr.size, arr.mean(), size=int(resamples)) / arr.size
    low, high = np.quantile(fractions, [(1 - level) / 2, (1 + level) / 2], method="inverted_cdf")
    return float(low), float(high)

"""The verdict of a score-matching run: memorizing, generalizing or in transition, from the decisive noise levels.

Per noise level and query set (x from noisy true data, and from noisy training points) the errors of
:mod:`mogsim.metrics.score_error` place the net at position ``t`` along the segment from the empirical optimum
(``t = 0``) to the true denoiser (``t = 1``), at RMS distance ``offset`` from the line through them.

A level is **decisive** when both hold:

1. the references are far apart compared with the net's own error: ``offset <= OFFSET_MAX * sqrt(gap)`` (the net
   is nearer the line through the references than half their separation), so where it sits along the line means
   something;
2. the references are far apart compared with the noise: ``E||x - D_true(x)||^2 >= gap * IDENTITY_MIN`` (the
   identity map ``x -> x``, which EDM's skip connection gives every net for free at small sigma, is not already
   within half the gap of the true denoiser). Without this, every net looks "true" on fresh queries at small
   sigma, where the empirical optimum jumps to a far training point and no smooth net can follow.

The **generalization index** is the mean of ``clip(t, 0, 1)`` over the decisive levels of both query sets; the
verdict is *memorizing* below ``1/3``, *generalizing* above ``2/3``, *in transition* between, and *undecided* when
no level is decisive (the net is too imprecise to tell the references apart anywhere).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .score_error import SigmaErrors

OFFSET_MAX = 0.5
IDENTITY_MIN = 0.25
MEMORIZING_BELOW = 1.0 / 3.0
GENERALIZING_ABOVE = 2.0 / 3.0

RULE = (f"decisive levels: offset <= {OFFSET_MAX:g} * sqrt(gap) (the net is nearer the line through the two "
        f"references than {OFFSET_MAX:g} of their separation) and E||x - D_true||^2 >= {IDENTITY_MIN:g} * gap (the "
        "identity map is not already near the true denoiser); generalization index = mean of clip(t, 0, 1) over "
        "decisive levels of both query sets, t = (e_emp - e_true + gap) / (2 gap) (0 = empirical optimum, "
        f"1 = true denoiser); memorizing if < {MEMORIZING_BELOW:.3g}, generalizing if > {GENERALIZING_ABOVE:.3g}, "
        "in transition between, undecided without decisive levels")


def decisive_levels(err: SigmaErrors) -> np.ndarray:
    """Boolean mask of the decisive levels of one query set."""
    gap = err.gap
    ok = np.isfinite(err.position) & (gap > 0)
    near_line = err.offset <= OFFSET_MAX * np.sqrt(np.where(gap > 0, gap, 0.0))
    return ok & near_line & (err.norm_true >= IDENTITY_MIN * gap)


@dataclass
class Verdict:
    """The label, the numbers that decided it, and the rule."""

    label: str
    generalization_index: float
    decisive: dict[str, np.ndarray]
    positions: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    l_score_true_decisive: float = float("nan")
    l_score_empirical_decisive: float = float("nan")
    rule: str = RULE

    @property
    def reason(self) -> str:
        """One line: the index and the levels behind it."""
        n = sum(int(m.sum()) for m in self.decisive.values())
        if n == 0:
            return "no decisive noise level: the net's error exceeds half the gap between the references everywhere"
        parts = []
        for name, pts in self.positions.items():
            if pts:
                lo, hi = min(s for s, _ in pts), max(s for s, _ in pts)
                parts.append(f"{len(pts)} on noisy {'true data' if name == 'true' else 'training points'} "
                             f"(sigma {lo:.3g}..{hi:.3g})")
        return (f"generalization index {self.generalization_index:.2f} (0 = empirical optimum, 1 = true score) over "
                f"{n} decisive levels: " + ", ".join(parts))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"label": self.label, "generalization_index": self.generalization_index,
                "decisive_levels": int(sum(int(m.sum()) for m in self.decisive.values())),
                "positions": {k: [[s, t] for s, t in v] for k, v in self.positions.items()},
                "l_score_true_decisive": self.l_score_true_decisive,
                "l_score_empirical_decisive": self.l_score_empirical_decisive,
                "reason": self.reason, "rule": self.rule}


def decide(fresh: SigmaErrors, train: SigmaErrors) -> Verdict:
    """The verdict from the per-level errors on noisy true data (``fresh``) and noisy training points (``train``)."""
    masks = {"true": decisive_levels(fresh), "train": decisive_levels(train)}
    positions = {name: [(float(err.sigmas[i]), float(err.position[i])) for i in np.flatnonzero(masks[name])]
                 for name, err in (("true", fresh), ("train", train))}
    ts = [min(max(t, 0.0), 1.0) for pts in positions.values() for _, t in pts]
    if not ts:
        return Verdict("undecided", float("nan"), masks, positions)
    g = float(np.mean(ts))
    label = "memorizing" if g < MEMORIZING_BELOW else "generalizing" if g > GENERALIZING_ABOVE else "in transition"
    band = masks["true"].astype(np.float64)
    lt = fresh.total("true", band) if band.any() else float("nan")
    le = fresh.total("empirical", band) if band.any() else float("nan")
    return Verdict(label, g, masks, positions, lt, le)

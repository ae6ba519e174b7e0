"""Exponential moving average of the weights with a half-life counted in training images (as EDM).

After each step with global batch B and ``images`` seen so far, ``ema <- beta ema + (1 - beta) w`` with
``beta = 0.5 ** (B / h)`` and ``h = min(halflife_images, rampup_ratio * images)``: the ramp-up keeps the average
from being dominated by the random initialisation early in short runs (EDM default ratio 0.05; ``None`` disables it).
The update is ``ema += (1 - beta) (w - ema)`` in three foreach operations whose weight may be a 0-d device tensor,
so the trainer's captured CUDA graph and its eager step compute it identically, without a host synchronisation.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..errors import InputError


class EMA:
    """Holds an averaged copy of a module (``.module``, eval mode, no gradients)."""

    def __init__(self, model: nn.Module, halflife_images: float, rampup_ratio: float | None = 0.05) -> None:
        if not halflife_images > 0:
            raise InputError(f"ema_halflife_images={halflife_images}: must be > 0", parameter="ema_halflife_images")
        if rampup_ratio is not None and not rampup_ratio >= 0:
            raise InputError(f"ema_rampup_ratio={rampup_ratio}: must be >= 0 (0 or None: no ramp-up)",
                             parameter="ema_rampup_ratio")
        self.halflife_images = float(halflife_images)
        self.rampup_ratio = rampup_ratio or None
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self._pairs: tuple[nn.Module, list[torch.Tensor], list[torch.Tensor], list[Any]] | None = None

    def beta(self, images: int, batch: int) -> float:
        """Decay for a step that brought the count of images seen to ``images``."""
        h = self.halflife_images
        if self.rampup_ratio is not None:
            h = min(h, images * self.rampup_ratio)
        return 0.5 ** (batch / max(h, 1e-8))

    @torch.no_grad()
    def update(self, model: nn.Module, images: int, batch: int) -> float:
        """Average ``model``'s parameters in (buffers are copied); returns the beta used."""
        beta = self.beta(images, batch)
        self.average_in(model, 1.0 - beta)
        return beta

    @torch.no_grad()
    def average_in(self, model: nn.Module, weight: float | torch.Tensor) -> None:
        """``ema += weight (w - ema)`` for ``model``'s parameters (``weight`` a number or a 0-d tensor on their
        device); buffers are copied."""
        if self._pairs is None or self._pairs[0] is not model:  # the tensor lists, built once per model
            ema_params = list(self.module.parameters())
            params = [p.detach() for p in model.parameters()]
            if len(ema_params) != len(params):
                raise RuntimeError("EMA: the model's parameters no longer match the averaged copy")
            self._pairs = (model, ema_params, params, list(zip(self.module.buffers(), model.buffers())))
        _, ema_params, params, buffers = self._pairs
        step = torch._foreach_sub(params, ema_params)
        torch._foreach_mul_(step, weight)
        torch._foreach_add_(ema_params, step)
        for b_ema, b in buffers:
            b_ema.copy_(b)

    def state_tensors(self) -> list[torch.Tensor]:
        """The averaged parameters and buffers (what a step writes)."""
        return list(self.module.parameters()) + list(self.module.buffers())

    def state_dict(self) -> dict[str, Any]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state)

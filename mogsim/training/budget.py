"""The training budget: exactly one of steps, images or epochs, resolved to a whole number of optimizer steps.

Papers differ here (a fixed number of images for every subset size, steps growing with the subset, a fixed
number of steps), and the choice moves the memorization/generalization transition, so a run records all three
views of its budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import InputError

BUDGET_KINDS = ("steps", "images", "epochs")
#: upper bounds: a budget beyond these is a typo, not a run
MAX_BUDGET = {"steps": 1e10, "images": 1e13, "epochs": 1e9}


@dataclass(frozen=True)
class Budget:
    """``kind`` is ``steps``, ``images`` or ``epochs``; ``value`` its amount (epochs may be fractional)."""

    kind: str
    value: float

    def total_steps(self, batch: int, num_items: int) -> int:
        """Optimizer steps needed: images and epochs round up to whole global batches."""
        if self.kind == "steps":
            return int(self.value)
        images = self.value if self.kind == "images" else self.value * num_items
        return max(1, math.ceil(images / batch))

    def record(self, batch: int, num_items: int) -> dict[str, Any]:
        """JSON-ready: the budget as given plus the resolved steps, images and epochs."""
        steps = self.total_steps(batch, num_items)
        return {"kind": self.kind, "value": self.value, "steps": steps, "images": steps * batch,
                "epochs": steps * batch / num_items, "batch": batch}


def resolve_budget(steps: int | None = None, images: float | None = None, epochs: float | None = None) -> Budget:
    """Exactly one of ``steps``/``images``/``epochs`` (positive) -> :class:`Budget`, else an :class:`InputError`."""
    given = {k: v for k, v in (("steps", steps), ("images", images), ("epochs", epochs)) if v is not None}
    if len(given) != 1:
        raise InputError("give the training budget as exactly one of steps, images or epochs"
                         + (f" (got {', '.join(given)})" if given else ""), parameter=BUDGET_KINDS)
    kind, value = next(iter(given.items()))
    if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 < value <= MAX_BUDGET[kind]):
        raise InputError(f"{kind}={value!r}: must be a positive number <= {MAX_BUDGET[kind]:g}", parameter=kind)
    if kind == "steps":
        if int(value) != value:
            raise InputError(f"steps={value!r}: must be a whole number", parameter="steps")
        value = int(value)
    elif kind == "images":
        value = int(value) if float(value).is_integer() else float(value)
    return Budget(kind, value)

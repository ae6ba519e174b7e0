"""A result's ``check``: prove every symbolic claim, then compare every formula with mogsim at seeded points."""

from __future__ import annotations

from typing import Callable

import numpy as np

from .core import Check, Derivation, Point
from .numeric import ErrorsAt, numeric_checks
from .proof import prove_all

RandomPoint = Callable[[np.random.Generator], Point]


def standard_check(errors_at: ErrorsAt, random_point: RandomPoint, *, num_points: int = 5,
                   seed: int = 0) -> Callable[[Derivation], list[Check]]:
    """Build ``check(derivation)``: all claims symbolically, then every formula at ``num_points`` seeded points."""

    def check(derivation: Derivation) -> list[Check]:
        rng = np.random.Generator(np.random.PCG64(seed))
        points = [random_point(rng) for _ in range(num_points)]
        return prove_all(derivation.claims) + numeric_checks(derivation, errors_at, points)

    return check

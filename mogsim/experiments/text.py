"""How the experiments' plain-text summaries print a number: three significant digits, ``-`` for a missing one."""

from __future__ import annotations

import math
from typing import Any


def short_number(value: Any) -> str:
    """``0.983``, ``1.2e+03``, ``nan``; ``-`` for None; anything that is not a float as ``str``."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if math.isfinite(value) else str(value)
    return str(value)

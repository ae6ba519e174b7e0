"""A small CIFAR-like data set on disk for tests: random 32x32 RGB PNGs in EDM's zip layout, sorted by class."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mogsim import data


def write_edm_zip(path: Path, num: int, *, seed: int = 0) -> Path:
    """``num`` images (``num // 10`` per class, class-sorted like the real zips) with ``dataset.json`` labels."""
    rng = np.random.default_rng(seed)
    images = np.stack([rng.integers(0, 256, (32, 32, 3), dtype=np.uint8).transpose(2, 0, 1) for _ in range(num)])
    return data.write_edm_zip(path, images, [i // (num // 10) for i in range(num)])

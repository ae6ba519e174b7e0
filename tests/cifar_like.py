"""A small CIFAR-like data set on disk for tests: random 32x32 RGB PNGs in EDM's zip layout, sorted by class."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from mogsim.data import CIFAR10_CLASSES


def write_edm_zip(path: Path, num: int, *, seed: int = 0) -> Path:
    """``num`` images (``num // 10`` per class, class-sorted like the real zips) with ``dataset.json`` labels."""
    rng = np.random.default_rng(seed)
    per_class = num // 10
    labels = []
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(num):
            name = f"{CIFAR10_CLASSES[i // per_class]}/{i:05d}.png"
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, format="PNG")
            zf.writestr(name, buf.getvalue())
            labels.append([name, i // per_class])
        zf.writestr("dataset.json", json.dumps({"labels": labels}))
    return path

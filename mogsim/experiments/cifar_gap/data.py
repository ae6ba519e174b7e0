"""The images of ``mogsim cifar-optimal-gap``: nested class-balanced training subsets and held-out images.

Every subset is a prefix of one seeded class-balanced order of CIFAR-10's training split
(:func:`mogsim.data.subset_indices`), so each smaller subset lies inside each larger one, whatever the grid. The
held-out images (for the per-sigma distances on noisy held-out images) are a seeded balanced subset of the test
split when the source has one, else the last training images of the same order (outside every subset the
grid may take, and the same for every grid). At ``resolution`` 16 or 8 every image is reduced by 2x2 or 4x4 box
averaging in float64 and stored as float32 in [-1, 1]; at 32 the uint8 pixels are kept (the trainer and the
references map them to [-1, 1] themselves).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ...data import images_to_tensor, load_cifar10, subset_indices
from ...errors import InputError


@dataclass
class GapData:
    """Training images in nested order (the subset of N is ``train[:N]``), held-out images, and their records."""

    train: torch.Tensor
    held_out: torch.Tensor
    indices: np.ndarray
    source: str
    num_items_source: int
    subset_seed: int
    resolution: int
    held_out_record: dict[str, Any]

    def subset(self, n: int) -> torch.Tensor:
        return self.train[:n]

    def train_record(self, n: int) -> dict[str, Any]:
        """The ``data`` record of a cell's run folder: what ``mogsim train --data SOURCE --n N --balanced`` writes
        (so such a run can train a cell, e.g. with DDP), plus the reduction when the resolution is not 32."""
        record: dict[str, Any] = {"source": self.source, "format": "cifar10", "split": "train",
                                  "num_items_source": self.num_items_source, "n": n, "subset_seed": self.subset_seed,
                                  "balanced": True, "subset_file": "subset.json"}
        if self.resolution != 32:
            record["reduction"] = reduction_text(self.resolution)
        return record

    def record(self) -> dict[str, Any]:
        """JSON-ready account of the data of the whole run."""
        return {"source": self.source, "split": "train", "num_items_source": self.num_items_source,
                "subset_seed": self.subset_seed, "balanced": True, "nested": True,
                "resolution": self.resolution,
                "reduction": reduction_text(self.resolution) if self.resolution != 32 else None,
                "held_out": self.held_out_record}


def reduction_text(resolution: int) -> str:
    k = 32 // resolution
    return f"{k}x{k} box average in float64 to {resolution}x{resolution}, stored as float32 in [-1, 1]"


def reduce_images(images: np.ndarray, resolution: int) -> torch.Tensor:
    """uint8 (N, 3, 32, 32) -> the images at ``resolution``: uint8 unchanged at 32, else float32 box averages."""
    tensor = torch.from_numpy(np.ascontiguousarray(images))
    if resolution == 32:
        return tensor
    return F.avg_pool2d(images_to_tensor(tensor, dtype=torch.float64), 32 // resolution).to(torch.float32)


def load_gap_data(path: str | os.PathLike, max_n: int, *, subset_seed: int = 0, resolution: int = 32,
                  held_out: int = 1000, cache_dir: str | os.PathLike | None = None) -> GapData:
    """Read CIFAR-10 from ``path`` and keep the nested subsets up to ``max_n`` images and the held-out images.

    A subset larger than the training split, or no image left to hold out, is an :class:`InputError` naming the
    option."""
    source = Path(path)
    images, labels = load_cifar10(source, split="train", cache_dir=cache_dir)
    total = len(labels)
    if max_n > total:
        raise InputError(f"ns={max_n} is above the size of the training split ({total:,} images in {source}); pass "
                         f"N <= {total:,}", parameter="ns")
    held_record: dict[str, Any]
    try:
        test, test_labels = load_cifar10(source, split="test", cache_dir=cache_dir)
    except InputError as exc:
        test, test_labels, reason = None, None, str(exc)
    if test is not None:
        count = min(held_out, len(test_labels))
        held_idx = subset_indices(len(test_labels), count, subset_seed, labels=test_labels, balanced=True)
        held_images = test[held_idx]
        held_record = {"split": "test", "count": count, "rule": f"first {count} of the seeded class-balanced order "
                       f"of the test split (seed {subset_seed})"}
        order = subset_indices(total, max_n, subset_seed, labels=labels, balanced=True)
    else:
        count = min(held_out, total - max_n)
        if count < 1:
            raise InputError(f"ns={max_n}: {source} has no test split and no training image outside the largest "
                             "subset to hold out; pass a source with a test split or a smaller N", parameter="ns")
        full = subset_indices(total, total, subset_seed, labels=labels, balanced=True)
        held_images = images[full[total - count:]]
        held_record = {"split": "train", "count": count, "rule": f"the last {count} training images of the seeded "
                       f"class-balanced order (outside every subset of N <= {total - count}; seed {subset_seed}), "
                       "the same whatever the grid", "why": f"no test split: {reason}"}
        order = full[:max_n]
    return GapData(reduce_images(images[order], resolution), reduce_images(held_images, resolution),
                   order.astype(np.int64), str(source), total, subset_seed, resolution, held_record)

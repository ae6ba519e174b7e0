"""Seeded, nested training subsets, and a JSON record of the subset a run used.

A subset of size ``n`` is the first ``n`` entries of one fixed, seeded order of the whole data set, so for a given
seed every smaller subset lies inside every larger one (memorization-vs-generalization sweeps over ``n`` then
compare nested training sets). The order is never "the first N files": the shared CIFAR-10 zips are sorted by
class, and a prefix of them would hold a single class.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io import write_json
from ..parsing import SEED_LIMIT, whole_number

SUBSET_FORMAT = "mogsim-subset"
SUBSET_VERSION = 1


def subset_indices(num_items: int, n: int, seed: int, labels: Any = None, balanced: bool = False) -> np.ndarray:
    """Indices of a size-``n`` subset of ``range(num_items)``: the first ``n`` of a seeded order, as int64.

    The result is in *subset order* (the order of the nested sequence), not sorted, so
    ``subset_indices(N, m, s)`` equals ``subset_indices(N, n, s)[:m]`` for ``m <= n``. Without ``balanced`` the
    order is ``np.random.default_rng(seed).permutation(num_items)``; ``labels`` (length ``num_items``) is then only
    checked. With ``balanced=True`` the order takes one item per class in rounds (a seeded permutation within each
    class, a fresh seeded class order in each round), so every prefix has class counts that differ by at most 1
    among the classes not yet used up.
    """
    num_items = whole_number(num_items, "num_items", lo=1)
    n = whole_number(n, "n", lo=1)
    seed = whole_number(seed, "seed", lo=0, hi=SEED_LIMIT - 1)
    if n > num_items:
        raise InputError(f"n={n} is larger than the data set ({num_items} items); pass n <= {num_items}")
    label_arr = None if labels is None else _check_labels(labels, num_items)
    if balanced:
        if label_arr is None:
            raise InputError("balanced=True needs labels; pass labels=... (one class per item) or balanced=False")
        order = _balanced_order(label_arr, seed)
    else:
        order = np.random.default_rng(seed).permutation(num_items)
    return order[:n].astype(np.int64)


def _balanced_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """Round-robin order over classes: round r holds the r-th item of each class, classes in a seeded order."""
    rng = np.random.default_rng(seed)
    classes, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(-1)
    rank = np.empty(len(labels), dtype=np.int64)  # position of each item within its shuffled class
    for k in range(len(classes)):
        members = np.flatnonzero(inverse == k)
        rank[members[rng.permutation(len(members))]] = np.arange(len(members))
    rounds = int(rank.max()) + 1
    slot = np.argsort(rng.random((rounds, len(classes))), axis=1)  # slot[r, k]: class k's place in round r
    key = rank * len(classes) + slot[rank, inverse]  # unique: one item per (round, class)
    return np.argsort(key, kind="stable")


def _check_labels(labels: Any, num_items: int) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise InputError(f"labels has shape {arr.shape} and dtype {arr.dtype}; pass one integer class per item")
    if len(arr) != num_items:
        raise InputError(f"labels has {len(arr)} entries but num_items={num_items}; pass one label per item")
    return arr


# --- record -------------------------------------------------------------------------------------------------------

def save_subset(path: str | os.PathLike, indices: Any, *, seed: int, balanced: bool, source: Any,
                num_items: int | None = None) -> Path:
    """Write the subset a run used as JSON (atomically): indices in subset order plus how they were drawn."""
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    record = {
        "format": SUBSET_FORMAT,
        "version": SUBSET_VERSION,
        "n": int(idx.size),
        "seed": int(seed),
        "balanced": bool(balanced),
        "source": str(source),
        "num_items": None if num_items is None else int(num_items),
        "order": "subset order: the first n of the seeded nested sequence (not sorted)",
        "indices": idx.tolist(),
    }
    return write_json(path, record)


def load_subset(path: str | os.PathLike) -> np.ndarray:
    """Indices (int64, subset order) from a file written by :func:`save_subset`."""
    p = Path(path)
    try:
        record = json.loads(p.read_text())
    except FileNotFoundError:
        raise InputError(f"subset file {p}: does not exist; pass a file written by save_subset") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"subset file {p}: not readable JSON ({exc}); pass a file written by save_subset") from None
    indices = record.get("indices") if isinstance(record, dict) else None
    ok = isinstance(indices, list) and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0
                                           for i in indices)
    if not ok:
        raise InputError(f"subset file {p}: has no list of non-negative integer indices; pass a file written by "
                         "save_subset")
    arr = np.asarray(indices, dtype=np.int64)
    if len(np.unique(arr)) != len(arr):
        raise InputError(f"subset file {p}: repeats indices; pass a file written by save_subset")
    num_items = record.get("num_items")
    if isinstance(num_items, int) and arr.size and int(arr.max()) >= num_items:
        raise InputError(f"subset file {p}: index {int(arr.max())} is out of range for num_items={num_items}; "
                         "the file is damaged, draw the subset again")
    return arr

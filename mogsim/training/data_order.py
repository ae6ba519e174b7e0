"""Which training items each optimizer step sees: seeded per-epoch permutations, a pure function of the step.

The item stream is ``perm_0 ++ perm_1 ++ ...`` with ``perm_e`` a permutation of ``range(num_items)`` drawn from
``(seed, e)``; step ``k`` takes stream positions ``[k B, (k + 1) B)`` for the global batch size B, so a batch may
run across an epoch boundary (or several epochs when ``num_items < B``). Because the order depends only on
(seed, step), resuming needs nothing but the step, and the order does not depend on the number of processes:
with W processes, rank r takes the r-th of W equal slices of every global batch.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from ..errors import InputError

_TAG = 0x6D6F_6764  # separates this stream from the other seeded streams of a run


class DataOrder:
    """Seeded, resumable data order over ``num_items`` items."""

    def __init__(self, num_items: int, seed: int, *, cache_epochs: int = 4) -> None:
        if num_items < 1:
            raise InputError("the training set is empty; pass at least one item")
        self.num_items, self.seed = int(num_items), int(seed)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_epochs = cache_epochs

    def permutation(self, epoch: int) -> np.ndarray:
        """The order of epoch ``epoch`` (int64 indices)."""
        perm = self._cache.get(epoch)
        if perm is None:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch, _TAG]))
            perm = rng.permutation(self.num_items).astype(np.int64)
            self._cache[epoch] = perm
            while len(self._cache) > self._cache_epochs:
                self._cache.popitem(last=False)
        return perm

    def stream(self, start: int, count: int) -> np.ndarray:
        """Item indices at stream positions ``[start, start + count)`` (int64)."""
        out = np.empty(count, dtype=np.int64)
        n = self.num_items
        for epoch in range(start // n, (start + count - 1) // n + 1):
            lo, hi = max(start, epoch * n), min(start + count, (epoch + 1) * n)
            out[lo - start:hi - start] = self.permutation(epoch)[lo - epoch * n:hi - epoch * n]
        return out

    def batch_indices(self, step: int, batch: int) -> np.ndarray:
        """Item indices of global batch ``step`` (length ``batch``)."""
        return self.stream(step * batch, batch)

    def state(self, step: int, batch: int) -> dict[str, Any]:
        """Where the stream stands before step ``step``: epoch and offset into it (recorded in checkpoints)."""
        epoch, offset = divmod(step * batch, self.num_items)
        return {"seed": self.seed, "num_items": self.num_items, "epoch": int(epoch), "offset": int(offset),
                "position": int(step * batch)}

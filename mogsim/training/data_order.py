"""Which training items each optimizer step sees: seeded per-epoch permutations, a pure function of the step.

The item stream is ``perm_0 ++ perm_1 ++ ...`` with ``perm_e`` a permutation of ``range(num_items)``; step ``k``
takes stream positions ``[k B, (k + 1) B)`` for the global batch size B, so a batch may run across an epoch boundary
(or several epochs when ``num_items < B``). Because the order depends only on (seed, step), resuming needs nothing
but the step, and the order does not depend on the number of processes: with W processes, rank r takes the r-th of
W equal slices of every global batch.

Permutations are drawn a block of epochs at a time (about 65,536 items per block, so small training sets get many
epochs per draw), block b from :func:`mogsim.seeds.derive_seed` ``(seed, "data-order", b)``; a member of a batched
run has its own order over its own items.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from ..errors import InputError
from ..seeds import numpy_generator

BLOCK_ITEMS = 1 << 16


class DataOrder:
    """Seeded, resumable data order over ``num_items`` items."""

    def __init__(self, num_items: int, seed: int, *, cache_blocks: int = 4) -> None:
        if num_items < 1:
            raise InputError("data: the training set is empty; pass at least one item", parameter="data")
        self.num_items, self.seed = int(num_items), int(seed)
        self.epochs_per_block = max(1, BLOCK_ITEMS // self.num_items)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_blocks = cache_blocks

    def _block(self, block: int) -> np.ndarray:
        """The permutations of the block's epochs, one row each (int64)."""
        perms = self._cache.get(block)
        if perms is None:
            perms = np.tile(np.arange(self.num_items, dtype=np.int64), (self.epochs_per_block, 1))
            numpy_generator(self.seed, "data-order", block).permuted(perms, axis=1, out=perms)
            self._cache[block] = perms
            while len(self._cache) > self._cache_blocks:
                self._cache.popitem(last=False)
        return perms

    def permutation(self, epoch: int) -> np.ndarray:
        """The order of epoch ``epoch`` (int64 indices)."""
        block, row = divmod(epoch, self.epochs_per_block)
        return self._block(block)[row]

    def stream(self, start: int, count: int) -> np.ndarray:
        """Item indices at stream positions ``[start, start + count)`` (int64)."""
        out = np.empty(count, dtype=np.int64)
        span = self.epochs_per_block * self.num_items
        for block in range(start // span, (start + count - 1) // span + 1):
            lo, hi = max(start, block * span), min(start + count, (block + 1) * span)
            out[lo - start:hi - start] = self._block(block).reshape(-1)[lo - block * span:hi - block * span]
        return out

    def batch_indices(self, step: int, batch: int) -> np.ndarray:
        """Item indices of global batch ``step`` (length ``batch``)."""
        return self.stream(step * batch, batch)

    def state(self, step: int, batch: int) -> dict[str, Any]:
        """Where the stream stands before step ``step``: epoch and offset into it (recorded in checkpoints)."""
        epoch, offset = divmod(step * batch, self.num_items)
        return {"seed": self.seed, "num_items": self.num_items, "epoch": int(epoch), "offset": int(offset),
                "position": int(step * batch)}

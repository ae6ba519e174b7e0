"""The one seed derivation behind every seeded stream of mogsim.

A run has one root seed; each random stream (initial weights, data order, training noise at a step, evaluation
queries, the subspaces and training set of an experiment) gets its own seed from the root and labels that name the
stream and what it depends on, e.g. ``derive_seed(seed, "training-noise", step)``. Streams are then independent of
one another and of the order in which they are used, and resuming a run needs only its step.

Labels are non-negative integers or strings (hashed with SHA-256); numpy's ``SeedSequence`` mixes them.
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np

from .errors import InputError

_SEED_BITS = 63


@functools.lru_cache(maxsize=256)
def _label(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from a root seed and labels: the same parts give the same seed on every machine."""
    words = []
    for part in parts:
        if isinstance(part, str):
            words.append(_label(part))
        elif isinstance(part, (int, np.integer)) and not isinstance(part, bool) and part >= 0:
            words.append(int(part))
        else:
            raise InputError(f"seed part {part!r}: pass non-negative integers or strings")
    high, low = np.random.SeedSequence(words).generate_state(2, np.uint32)
    return ((int(high) << 32) | int(low)) & ((1 << _SEED_BITS) - 1)


def numpy_generator(*parts: int | str) -> np.random.Generator:
    """A numpy PCG64 generator seeded with :func:`derive_seed` of ``parts``."""
    return np.random.Generator(np.random.PCG64(derive_seed(*parts)))

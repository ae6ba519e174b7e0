"""The one training-set loader of every command: an array file or CIFAR-10, an optional seeded nested subset, and
the checks that must pass before any work (readable, real numbers, shape (N, ...), no NaN or inf).

``mogsim sample``, ``mogsim train`` and Python code all call :func:`load_training_set`, so a file that one command
accepts the others accept too, and every run records its data the same way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from ..errors import InputError
from .cifar import images_to_tensor, load_cifar10
from .subsets import subset_indices

#: File suffixes read as plain arrays; any other path is read as CIFAR-10.
ARRAY_SUFFIXES = (".npy", ".npz", ".pt")
#: Keys tried, in order, in an ``.npz`` holding several arrays (``samples`` reads a ``mogsim sample`` result).
NPZ_KEYS = ("data", "x", "samples")


class TrainingSet(NamedTuple):
    """What :func:`load_training_set` returns (unpacks as ``data, record, indices``)."""

    #: uint8 pixels (N, 3, 32, 32) for CIFAR-10 (map them with :meth:`as_float`), float64 for array files.
    data: torch.Tensor
    #: JSON-ready account: source, format, split, num_items_source, n, subset_seed, balanced.
    record: dict[str, Any]
    #: Indices into the source, in subset order, or None when every item is used in source order.
    indices: np.ndarray | None

    def as_float(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """The data as floats: CIFAR-10 pixels mapped to [-1, 1] (``x / 127.5 - 1``), arrays cast to ``dtype``."""
        if self.data.dtype == torch.uint8:
            return images_to_tensor(self.data, dtype=dtype)
        return self.data.to(dtype)


def load_training_set(path: str | os.PathLike, *, n: int | None = None, subset_seed: int = 0,
                      balanced: bool | None = None, cache_dir: str | os.PathLike | None = None,
                      option: str = "path") -> TrainingSet:
    """Read a training set and keep a seeded nested subset of it.

    Args:
        path: ``.npy``, ``.npz`` (key ``data``, ``x`` or ``samples``, or its only array) or ``.pt`` (a tensor) of
            shape (N, ...); anything else is CIFAR-10's training split in any format :func:`load_cifar10` reads.
        n: keep the first ``n`` items of the seeded order of :func:`subset_indices` (default: all, in file order).
        subset_seed: seed of that order.
        balanced: class-balanced order (needs labels: CIFAR-10 only); ``None`` means balanced whenever the source
            has labels.
        cache_dir: where :func:`load_cifar10` keeps decoded CIFAR-10 arrays.
        option: how messages name ``path`` (``"--data"`` on the command line).

    Every problem (missing or unreadable file, wrong shape or dtype, NaN or inf values, a subset larger than the
    data) is an :class:`InputError` of one line, raised before any training or sampling starts.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{option} {p}: no such file or folder; pass a .npy/.npz/.pt array of shape (N, ...) or "
                         "CIFAR-10 (official archive, EDM zip/folder, class folders)")
    labels = None
    if p.suffix.lower() in ARRAY_SUFFIXES:
        data, fmt = _load_array(p, option), "array"
    else:
        images, labels = load_cifar10(p, split="train", cache_dir=cache_dir)
        data, fmt = torch.from_numpy(images), "cifar10"
    num_items = int(data.shape[0])
    use_balance = labels is not None if balanced is None else bool(balanced)
    if use_balance and labels is None:
        raise InputError(f"{option} {p}: an array file has no class labels, so its subset cannot be class-balanced; "
                         "turn balancing off: balanced=False (--no-balanced on the command line)", parameter="balanced")
    indices = None
    if n is not None or balanced:
        indices = subset_indices(num_items, num_items if n is None else n, subset_seed, labels=labels,
                                 balanced=use_balance)
        data = data[torch.from_numpy(indices)]
    record = {"source": str(p), "format": fmt, "split": "train" if fmt == "cifar10" else None,
              "num_items_source": num_items, "n": int(data.shape[0]),
              "subset_seed": subset_seed if indices is not None else None, "balanced": use_balance}
    return TrainingSet(data.contiguous(), record, indices)


def _load_array(path: Path, option: str) -> torch.Tensor:
    """A float64 tensor (N, ...) from an array file, checked for shape, dtype and finiteness."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            arr: Any = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                keys = list(z.keys())
                key = next((k for k in NPZ_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
                if key is None:
                    raise InputError(f"{option} {path}: holds arrays {keys}; name the training set 'data'")
                arr = z[key]
        else:
            arr = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(arr, torch.Tensor):
                raise InputError(f"{option} {path}: holds a {type(arr).__name__}, not a tensor; save the training "
                                 "set itself with torch.save(tensor, path)")
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - damaged files make numpy and torch raise many types
        raise InputError(f"{option} {path}: cannot read it ({type(exc).__name__}); is it a valid {suffix} "
                         "file?") from None
    tensor = arr.detach().cpu() if isinstance(arr, torch.Tensor) else None
    kind = np.asarray(arr).dtype.kind if tensor is None else ("f" if tensor.is_floating_point() else
                                                              "c" if tensor.is_complex() else
                                                              "b" if tensor.dtype == torch.bool else "i")
    shape = tuple(arr.shape)
    if kind not in "fiu" or len(shape) < 2 or shape[0] < 1:
        raise InputError(f"{option} {path}: has shape {shape} and dtype {arr.dtype}; need real numbers of shape "
                         "(N, ...) with N >= 1 (reshape a vector of N numbers to (N, 1))")
    data = (tensor if tensor is not None else torch.from_numpy(np.asarray(arr))).to(torch.float64)
    finite = torch.isfinite(data).reshape(shape[0], -1).all(dim=1)
    if not bool(finite.all()):
        bad = (~finite).nonzero()[:, 0]
        raise InputError(f"{option} {path}: {bad.numel()} of {shape[0]} items contain NaN or inf (first: item "
                         f"{int(bad[0])}); clean the training set first")
    return data

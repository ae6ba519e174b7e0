"""Device and dtype choice, and exact float32 matrix products (no TF32)."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from .errors import InputError

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` gives CUDA when available, else CPU; ``"cuda"`` without a GPU is an :class:`InputError`."""
    if isinstance(device, torch.device):
        return device
    name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"--device {device}: no CUDA GPU is visible to torch; use --device cpu or auto")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise InputError(f"--device {device!r} is not one of auto, cpu, cuda, cuda:N")


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float32"`` or ``"float64"`` (or the torch dtype itself)."""
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPES.values():
            raise InputError(f"dtype {dtype} is not supported; use float32 or float64")
        return dtype
    try:
        return _DTYPES[str(dtype).strip().lower()]
    except KeyError:
        raise InputError(f"--dtype {dtype!r} is not one of {', '.join(_DTYPES)}") from None


def device_description(device: torch.device) -> str:
    """A human-readable device name for provenance records."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


@contextlib.contextmanager
def exact_float32_matmul() -> Iterator[None]:
    """Run the block with TF32 (and other reduced-precision float32 modes) off for matrix products, then restore.

    PyTorch lets a user (or another library) turn on TF32 globally, which silently rounds float32 matrix-product
    inputs to 10 mantissa bits. Closed forms that claim float32 accuracy run their products inside this block.
    PyTorch >= 2.9 has per-backend ``fp32_precision`` settings (and refuses reads through the legacy flags once they
    are used); older versions only the legacy flags. Either way the previous settings come back afterwards.
    """
    candidates = [torch.backends.cuda.matmul, getattr(getattr(torch.backends, "mkldnn", None), "matmul", None)]
    new_api = [b for b in candidates if b is not None and hasattr(b, "fp32_precision")]
    if new_api:
        saved = [b.fp32_precision for b in new_api]
        for b in new_api:
            b.fp32_precision = "ieee"
        try:
            yield
        finally:
            for b, value in zip(new_api, saved):
                b.fp32_precision = value
        return
    old_precision = torch.get_float32_matmul_precision()
    old_cuda = torch.backends.cuda.matmul.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old_precision)
        torch.backends.cuda.matmul.allow_tf32 = old_cuda

"""Device and dtype choice, and exact float32 matrix products (no TF32).

Errors name the parameters ``device`` and ``dtype``; the command line shows them as its flags.
"""

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
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"device={device!r}: no CUDA GPU is visible to torch; pass cpu or auto",
                             parameter="device")
        with contextlib.suppress(RuntimeError):  # torch refuses "cuda:x" with a RuntimeError
            return torch.device(name)
    raise InputError(f"device={device!r}: pass auto, cpu, cuda or cuda:N", parameter="device")


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float32"`` or ``"float64"`` (or the torch dtype itself)."""
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPES.values():
            raise InputError(f"dtype={dtype!r}: pass {' or '.join(_DTYPES)}", parameter="dtype")
        return dtype
    try:
        return _DTYPES[str(dtype).strip().lower()]
    except KeyError:
        raise InputError(f"dtype={dtype!r}: pass {' or '.join(_DTYPES)}", parameter="dtype") from None


def device_description(device: torch.device) -> str:
    """A human-readable device name for provenance records."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


@contextlib.contextmanager
def float32_precision(tf32: bool) -> Iterator[None]:
    """The one TF32 switch: run the block with float32 matrix products and cuDNN convolutions in TF32
    (``tf32=True``: fast, 10 mantissa bits of input) or in full float32 (``False``), then restore the settings.

    PyTorch lets a user (or another library) turn TF32 on globally, and cuDNN convolutions default to it, which
    silently rounds float32 inputs. Closed forms that claim float32 accuracy and the trainer's float32 mode run inside
    this block. PyTorch >= 2.9 has per-backend ``fp32_precision`` settings (and refuses reads through the legacy flags
    once they are used); older versions only the legacy flags. CPU (oneDNN) products are kept exact when
    ``tf32=False`` and left as configured otherwise.
    """
    value = "tf32" if tf32 else "ieee"
    mkldnn = getattr(torch.backends, "mkldnn", None)
    gpu = [torch.backends.cuda.matmul, getattr(torch.backends.cudnn, "conv", None)]
    cpu = [getattr(mkldnn, "matmul", None), getattr(mkldnn, "conv", None)] if not tf32 else []
    targets = [(b, value) for b in gpu if hasattr(b, "fp32_precision")]
    targets += [(b, "ieee") for b in cpu if hasattr(b, "fp32_precision")]
    if targets:
        saved = [b.fp32_precision for b, _ in targets]
        for b, v in targets:
            b.fp32_precision = v
        try:
            yield
        finally:
            for (b, _), old in zip(targets, saved):
                b.fp32_precision = old
        return
    old = (torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32,
           torch.backends.cudnn.allow_tf32)
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old[0])
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old[1], old[2]


def exact_float32_matmul() -> contextlib.AbstractContextManager[None]:
    """Full-precision float32 products for the block (:func:`float32_precision` with ``tf32=False``)."""
    return float32_precision(False)

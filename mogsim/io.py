"""Result files: atomic writes (a file is either complete or absent, never half-written) of JSON, arrays and
image grids, with the permissions a plain ``open()`` would give, and checks that an output folder is usable."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .errors import InputError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it into place in one step (``os.replace``).

    The temporary file is created with mode ``0o666`` filtered by the process umask, exactly as a plain ``open()``
    would create ``path``, so colleagues sharing a folder can read the result (``tempfile.mkstemp`` would make it
    0600). On an error it is removed and ``path`` is left as it was.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _create_beside(target)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _create_beside(target: Path) -> Path:
    """Create a new empty hidden file next to ``target`` (mode 0o666 & ~umask, applied by the kernel)."""
    for _ in range(100):
        candidate = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"could not create a temporary file beside {target}")  # pragma: no cover


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")
    return Path(path)


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """Write arrays to an ``.npz`` file, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    return Path(path)


def ensure_writable_dir(path: str | os.PathLike, *, option: str = "path") -> Path:
    """Create ``path`` if needed and check that files can be written there; else an :class:`InputError`.

    Messages name the folder ``option`` (``path``; a command line passes its flag, e.g. ``"--out"``).
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError(f"{option} {p}: exists and is not a folder; give a folder path")
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise InputError(f"{option} {p}: cannot write there ({exc.strerror}); choose a writable folder") from None
    return p


@contextlib.contextmanager
def output_dir(path: str | os.PathLike, *, option: str = "path") -> Iterator[Path]:
    """:func:`ensure_writable_dir` for the duration of a command's work: if the block fails, the folders this call
    created are removed again (when still empty), so a failed command leaves nothing behind."""
    p = Path(path)
    created = []  # the folders mkdir will create, deepest first
    probe = p
    while not probe.exists() and probe.parent != probe:
        created.append(probe)
        probe = probe.parent
    folder = ensure_writable_dir(p, option=option)
    try:
        yield folder
    except BaseException:
        for d in created:
            try:
                d.rmdir()
            except OSError:
                break
        raise


def is_image_batch(shape: tuple[int, ...]) -> bool:
    """Whether a batch of this shape can be shown as images: (N, C, H, W) with C = 1 (grey) or 3 (RGB)."""
    return len(shape) == 4 and shape[1] in (1, 3) and shape[2] >= 1 and shape[3] >= 1


def write_image_grid(path: str | os.PathLike, images: Any, *, columns: int = 8, limit: int = 64) -> Path:
    """Write the first ``limit`` images (N, C, H, W), values in [-1, 1], as one PNG grid (1-pixel gaps), atomically.

    Values are mapped by ``(x + 1) * 127.5``, rounded and clipped to 0..255, the inverse of the [-1, 1] scaling of
    :func:`mogsim.data.images_to_tensor`.
    """
    from PIL import Image

    arr = np.asarray(images.detach().cpu() if hasattr(images, "detach") else images, dtype=np.float64)[:limit]
    if not is_image_batch(arr.shape) or arr.shape[0] < 1:
        raise InputError(f"images has shape {arr.shape}; pass (N, C, H, W) with C = 1 or 3")
    pixels = np.clip(np.rint((np.nan_to_num(arr) + 1.0) * 127.5), 0, 255).astype(np.uint8)
    n, c, h, w = pixels.shape
    cols = min(columns, n)
    rows = -(-n // cols)
    grid = np.full((rows * (h + 1) + 1, cols * (w + 1) + 1, c), 255, dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + k * (w + 1):1 + k * (w + 1) + w] = pixels[i].transpose(1, 2, 0)
    image = Image.fromarray(grid[:, :, 0] if c == 1 else grid)  # uint8: mode L (grey) or RGB
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)

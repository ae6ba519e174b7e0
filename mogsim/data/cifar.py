"""CIFAR-10 readers: find out what a path holds and return uint8 images and int64 labels.

Three on-disk formats are read, all giving the same arrays for the same pictures:

* the official ``cifar-10-python.tar.gz`` (members read straight from the archive) or its extracted
  ``cifar-10-batches-py/`` folder: pickled batches, train = ``data_batch_1..5`` in order, test = ``test_batch``;
* an EDM-style zip or folder: ``dataset.json`` = ``{"labels": [["airplane/0000.jpg", 0], ...]}`` plus the image
  files, read in the order of ``dataset.json``; a folder holding ``train.zip`` / ``test.zip`` picks by ``split``;
* a folder of class subfolders ``root/<class>/*.png|jpg`` (optionally under ``root/train`` and ``root/test``);
  the 10 CIFAR-10 class names get CIFAR's labels, any other names get labels by sorted name.

Anything else (missing path, corrupt archive, unknown layout, an image that is not 32x32 RGB, missing or
out-of-range labels, an unknown split) is one :class:`~mogsim.errors.InputError` naming the problem and the fix.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import pickle
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image

from ..devices import resolve_device
from ..errors import InputError
from ..io import ensure_writable_dir, write_npz

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
SPLITS: tuple[str, ...] = ("train", "test")
IMAGE_SHAPE: tuple[int, int, int] = (3, 32, 32)

_PICKLE_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_FORMATS_HINT = ("the official cifar-10-python.tar.gz or its cifar-10-batches-py/ folder, an EDM-style zip or "
                 "folder with dataset.json, or a folder of class subfolders of 32x32 RGB images")
_CACHE_VERSION = 1

Arrays = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class _Source:
    """What :func:`_locate` found: a format name and the file or folder to read."""

    kind: str  # "pickle-tar" | "pickle-dir" | "edm-zip" | "edm-dir" | "class-tree"
    path: Path


# --- public entry points ------------------------------------------------------------------------------------------

def load_cifar10(path: str | os.PathLike, split: str = "train", *,
                 cache_dir: str | os.PathLike | None = None) -> Arrays:
    """Read CIFAR-10 from ``path`` in any supported format; return ``(images, labels)``.

    ``images`` is uint8 ``(N, 3, 32, 32)`` (C-contiguous, CHW), ``labels`` int64 ``(N,)`` in ``0..9``, in the
    order of the source (batch order, ``dataset.json`` order, or class then file name). ``split`` is
    ``"train"`` or ``"test"``; it picks the batches, zip or subfolder where the source holds both, and is only
    checked where ``path`` already names a single split (one zip, one EDM folder, one class tree).
    With ``cache_dir`` the decoded arrays are kept in an ``.npz`` there, keyed by the source's path, size,
    modification time and ``split``, so the next call skips decoding (e.g. 50,000 JPEGs).
    """
    split = _check_split(split)
    source = _locate(Path(path), split)
    cache_file = _cache_file(Path(cache_dir), source, split) if cache_dir is not None else None
    if cache_file is not None:
        cached = _read_cache(cache_file)
        if cached is not None:
            return cached
    images, labels = _READERS[source.kind](source.path, split)
    _check_arrays(images, labels, source.path)
    if cache_file is not None:
        write_npz(cache_file, images=images, labels=labels)
    return images, labels


def write_edm_zip(path: str | os.PathLike, images: np.ndarray, labels: Sequence[int]) -> Path:
    """uint8 images (N, 3, 32, 32) and their CIFAR-10 labels as an EDM-style zip (``<class>/<index>.png`` plus
    ``dataset.json``), losslessly: :func:`load_cifar10` reads back the same arrays (e.g. a small subset to carry)."""
    entries = []
    with zipfile.ZipFile(path, "w") as zf:
        for i, (img, label) in enumerate(zip(np.asarray(images, dtype=np.uint8), labels)):
            name = f"{CIFAR10_CLASSES[int(label)]}/{i:05d}.png"
            buf = io.BytesIO()
            Image.fromarray(img.transpose(1, 2, 0), "RGB").save(buf, format="PNG")
            zf.writestr(name, buf.getvalue())
            entries.append([name, int(label)])
        zf.writestr("dataset.json", json.dumps({"labels": entries}))
    return Path(path)


def images_to_tensor(images: np.ndarray | torch.Tensor, dtype: torch.dtype = torch.float32,
                     device: str | torch.device = "cpu") -> torch.Tensor:
    """Map uint8 images ``(N, C, H, W)`` to a float tensor in ``[-1, 1]`` (``x / 127.5 - 1``) on ``device``.

    The uint8 data moves to the device first (4x less to copy), then converts; 0 maps to -1 and 255 to 1 exactly.
    """
    t = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    if t.dtype != torch.uint8:
        raise InputError(f"images has dtype {t.dtype}; pass uint8 pixels 0..255 as returned by load_cifar10")
    if t.ndim != 4:
        raise InputError(f"images has shape {tuple(t.shape)}; pass a batch (N, C, H, W)")
    if not dtype.is_floating_point:
        raise InputError(f"dtype {dtype} is not a floating type; use torch.float32 or torch.float64")
    return t.to(device=resolve_device(device)).to(dtype).div_(127.5).sub_(1.0)


# --- format detection ---------------------------------------------------------------------------------------------

def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise InputError(f"split {split!r} is unknown; use 'train' or 'test'")
    return split


def _locate(p: Path, split: str) -> _Source:
    """Decide which reader handles ``p`` (a file or a folder) for ``split``."""
    if not p.exists():
        raise InputError(f"CIFAR-10 path {p}: does not exist; pass {_FORMATS_HINT}")
    if p.is_file():
        return _locate_file(p)
    if any((p / name).is_file() for names in _PICKLE_BATCHES.values() for name in names):
        return _Source("pickle-dir", p)
    if (p / "cifar-10-batches-py").is_dir():
        return _Source("pickle-dir", p / "cifar-10-batches-py")
    if (p / "dataset.json").is_file():
        return _Source("edm-dir", p)
    split_zip = p / f"{split}.zip"
    if split_zip.is_file():
        return _Source("edm-zip", split_zip)
    if any((p / f"{s}.zip").is_file() for s in SPLITS):
        raise InputError(f"CIFAR-10 path {p}: has no {split}.zip for split={split!r}; add it or pick the other "
                         "split")
    if (p / "cifar-10-python.tar.gz").is_file():
        return _Source("pickle-tar", p / "cifar-10-python.tar.gz")
    if (p / split).is_dir():
        sub = p / split
        if (sub / "dataset.json").is_file():
            return _Source("edm-dir", sub)
        if _class_folders(sub):
            return _Source("class-tree", sub)
        raise InputError(f"CIFAR-10 path {sub}: neither dataset.json nor class subfolders of images; "
                         f"pass {_FORMATS_HINT}")
    if any((p / s).is_dir() for s in SPLITS):
        raise InputError(f"CIFAR-10 path {p}: has no {split}/ folder for split={split!r}; add it or pick the "
                         "other split")
    if _class_folders(p):
        return _Source("class-tree", p)
    raise InputError(f"CIFAR-10 path {p}: unknown format (no batches, dataset.json, train.zip/test.zip or class "
                     f"subfolders of images); pass {_FORMATS_HINT}")


def _locate_file(p: Path) -> _Source:
    name = p.name.lower()
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        return _Source("pickle-tar", p)
    if name.endswith(".zip"):
        return _Source("edm-zip", p)
    try:
        if zipfile.is_zipfile(p):
            return _Source("edm-zip", p)
        if tarfile.is_tarfile(p):
            return _Source("pickle-tar", p)
    except OSError as exc:
        raise InputError(f"CIFAR-10 path {p}: cannot be read ({exc.strerror}); check its permissions") from None
    raise InputError(f"CIFAR-10 path {p}: unknown format (neither a zip nor a tar archive); pass {_FORMATS_HINT}")


def _class_folders(root: Path) -> list[Path]:
    """Visible subfolders of ``root`` if at least one of them holds an image file, else ``[]``."""
    folders = sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith((".", "_"))),
                     key=lambda d: d.name)
    has_images = any(f.is_file() and f.suffix.lower() in _IMAGE_SUFFIXES for d in folders for f in d.iterdir())
    return folders if has_images else []


# --- official pickled batches -------------------------------------------------------------------------------------

class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that builds only numpy arrays: a CIFAR batch never needs more, and pickle can run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        # Python 2 pickles name numpy.core, which numpy 2 renamed numpy._core: try the new name first.
        for candidate in (module.replace("numpy.core", "numpy._core", 1), module):
            try:
                return getattr(importlib.import_module(candidate), name)
            except (ImportError, AttributeError):
                continue
        raise pickle.UnpicklingError(f"cannot find {module}.{name}")


def _unpickle_batch(fh: IO[bytes], where: str) -> Arrays:
    """One pickled batch: a dict with b"data" (N, 3072) uint8 row-major CHW and b"labels" (N ints)."""
    try:
        batch = _BatchUnpickler(fh, encoding="bytes").load()
    except Exception as exc:  # corrupt pickles raise almost any type (EOFError, KeyError, ValueError, ...)
        raise InputError(f"{where}: not a readable CIFAR-10 batch ({type(exc).__name__}: {exc}); "
                         "download cifar-10-python.tar.gz again") from None
    if not isinstance(batch, dict):
        raise InputError(f"{where}: not a CIFAR-10 batch (a {type(batch).__name__}, not a dict); "
                         "pass the official cifar-10-python.tar.gz")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if labels is None:
        raise InputError(f"{where}: batch has no labels entry; pass the official CIFAR-10 (not CIFAR-100) batches")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise InputError(f"{where}: data is not a uint8 (N, 3072) array (got {type(data).__name__} {shape}); "
                         "pass the official cifar-10-python.tar.gz")
    labels_arr = _int_labels(labels, where)
    if len(labels_arr) != len(data):
        raise InputError(f"{where}: {len(data)} images but {len(labels_arr)} labels; download the archive again")
    return data.reshape(-1, *IMAGE_SHAPE), labels_arr


def _read_pickle_tar(path: Path, split: str) -> Arrays:
    wanted = _PICKLE_BATCHES[split]
    found: dict[str, Arrays] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:  # one forward pass: seeking back in a .gz re-decompresses from the start
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in wanted and base not in found:
                    fh = tar.extractfile(member)
                    assert fh is not None  # a regular file always has a stream
                    found[base] = _unpickle_batch(io.BytesIO(fh.read()), f"{path}:{member.name}")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise InputError(f"CIFAR-10 archive {path}: corrupt or unreadable ({exc}); download "
                         "cifar-10-python.tar.gz again") from None
    missing = [name for name in wanted if name not in found]
    if missing:
        raise InputError(f"CIFAR-10 archive {path}: has no {', '.join(missing)}; pass the official "
                         "cifar-10-python.tar.gz")
    return _concat([found[name] for name in wanted])


def _read_pickle_dir(path: Path, split: str) -> Arrays:
    parts = []
    for name in _PICKLE_BATCHES[split]:
        f = path / name
        if not f.is_file():
            raise InputError(f"CIFAR-10 folder {path}: has no {name} for split={split!r}; extract the whole "
                             "cifar-10-python.tar.gz")
        try:
            with open(f, "rb") as fh:
                parts.append(_unpickle_batch(fh, str(f)))
        except OSError as exc:
            raise InputError(f"{f}: cannot be read ({exc.strerror}); check its permissions") from None
    return _concat(parts)


def _concat(parts: Sequence[Arrays]) -> Arrays:
    images = np.ascontiguousarray(np.concatenate([p[0] for p in parts]))
    return images, np.concatenate([p[1] for p in parts])


# --- EDM-style dataset.json + images ------------------------------------------------------------------------------

def _parse_dataset_json(raw: bytes, where: str) -> list[tuple[str, int]]:
    """The ``labels`` list of an EDM ``dataset.json`` as (file name, label) pairs."""
    try:
        meta = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{where}: not valid JSON ({exc}); write it as "
                         '{"labels": [["airplane/0000.png", 0], ...]}') from None
    entries = meta.get("labels") if isinstance(meta, dict) else None
    if not isinstance(entries, list) or not entries:
        raise InputError(f"{where}: has no labels list; CIFAR-10 needs class labels, write "
                         '{"labels": [["airplane/0000.png", 0], ...]}')
    pairs = []
    for i, entry in enumerate(entries):
        ok = (isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], str)
              and isinstance(entry[1], int) and not isinstance(entry[1], bool))
        if not ok:
            raise InputError(f"{where}: labels entry {i} is {entry!r}; each entry must be [file name, integer label]")
        pairs.append((entry[0], entry[1]))
    return pairs


def _decode_image(blob: bytes, where: str) -> np.ndarray:
    """Decode one image file to uint8 (32, 32, 3); it must already be 32x32 RGB (no silent resizing)."""
    try:
        with Image.open(io.BytesIO(blob)) as im:
            if im.size != (32, 32) or im.mode != "RGB":
                raise InputError(f"image {where} is {im.size[0]}x{im.size[1]} {im.mode}; CIFAR-10 images must be "
                                 "32x32 RGB, convert it first")
            return np.frombuffer(im.tobytes(), dtype=np.uint8).reshape(32, 32, 3)
    except InputError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:  # PIL's decode failures
        raise InputError(f"image {where}: cannot be decoded ({exc}); replace the file") from None


def _decode_entries(entries: Sequence[tuple[str, int]], read: Callable[[str], bytes], where: str) -> Arrays:
    """Read and decode every listed file in order; ``read`` maps a listed name to its bytes."""
    hwc = np.empty((len(entries), 32, 32, 3), dtype=np.uint8)
    for i, (name, _) in enumerate(entries):
        hwc[i] = _decode_image(read(name), f"{where}/{name}")
    labels = np.fromiter((label for _, label in entries), dtype=np.int64, count=len(entries))
    return np.ascontiguousarray(hwc.transpose(0, 3, 1, 2)), labels


def _read_edm_zip(path: Path, split: str) -> Arrays:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InputError(f"CIFAR-10 zip {path}: corrupt or unreadable ({exc}); download or build it again") from None

    def read(name: str) -> bytes:
        try:
            return zf.read(name)
        except KeyError:
            raise InputError(f"CIFAR-10 zip {path}: dataset.json lists {name} but the zip has no such file; "
                             "rebuild the zip") from None
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError) as exc:
            raise InputError(f"CIFAR-10 zip {path}: member {name} is corrupt ({exc}); download or build it "
                             "again") from None

    with zf:
        if "dataset.json" not in set(zf.namelist()):
            raise InputError(f"CIFAR-10 zip {path}: has no dataset.json with labels; add one "
                             '({"labels": [["airplane/0000.png", 0], ...]}) or pass a folder of class subfolders')
        entries = _parse_dataset_json(read("dataset.json"), f"{path}/dataset.json")
        return _decode_entries(entries, read, str(path))


def _folder_reader(path: Path) -> Callable[[str], bytes]:
    """A ``read(name)`` for files under ``path`` that turns file-system errors into :class:`InputError`."""
    def read(name: str) -> bytes:
        try:
            return (path / name).read_bytes()
        except FileNotFoundError:
            raise InputError(f"CIFAR-10 folder {path}: dataset.json lists {name} but there is no such file; "
                             "restore it or fix dataset.json") from None
        except OSError as exc:
            raise InputError(f"{path / name}: cannot be read ({exc.strerror}); check its permissions") from None

    return read


def _read_edm_dir(path: Path, split: str) -> Arrays:
    read = _folder_reader(path)
    entries = _parse_dataset_json(read("dataset.json"), str(path / "dataset.json"))
    return _decode_entries(entries, read, str(path))


# --- class subfolders ---------------------------------------------------------------------------------------------

def _read_class_tree(path: Path, split: str) -> Arrays:
    folders = _class_folders(path)
    names = [d.name for d in folders]
    if len(folders) > len(CIFAR10_CLASSES):
        raise InputError(f"CIFAR-10 folder {path}: has {len(folders)} class subfolders; CIFAR-10 has 10, "
                         "remove the others")
    if set(names) == set(CIFAR10_CLASSES):  # CIFAR's own label order, whatever the sort order
        folders = [path / c for c in CIFAR10_CLASSES]
    entries: list[tuple[str, int]] = []
    for label, folder in enumerate(folders):
        files = sorted(f.name for f in folder.iterdir() if f.is_file() and f.suffix.lower() in _IMAGE_SUFFIXES)
        entries.extend((f"{folder.name}/{f}", label) for f in files)
    return _decode_entries(entries, _folder_reader(path), str(path))


_READERS: dict[str, Callable[[Path, str], Arrays]] = {
    "pickle-tar": _read_pickle_tar,
    "pickle-dir": _read_pickle_dir,
    "edm-zip": _read_edm_zip,
    "edm-dir": _read_edm_dir,
    "class-tree": _read_class_tree,
}


# --- checks -------------------------------------------------------------------------------------------------------

def _int_labels(labels: Any, where: str) -> np.ndarray:
    try:
        arr = np.asarray(labels)
    except (ValueError, TypeError):
        arr = np.asarray([], dtype=object)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise InputError(f"{where}: labels are not a list of integers; pass the official CIFAR-10 batches")
    return arr.astype(np.int64)


def _check_arrays(images: np.ndarray, labels: np.ndarray, source: Path) -> None:
    """Shapes agree and every label is a CIFAR-10 class index."""
    if len(images) == 0:
        raise InputError(f"CIFAR-10 path {source}: holds no images; pass {_FORMATS_HINT}")
    if images.shape[1:] != IMAGE_SHAPE or len(labels) != len(images):  # readers guarantee this; guard anyway
        raise InputError(f"CIFAR-10 path {source}: got images {images.shape} and {len(labels)} labels; rebuild it")
    bad = np.flatnonzero((labels < 0) | (labels >= len(CIFAR10_CLASSES)))
    if bad.size:
        i = int(bad[0])
        raise InputError(f"CIFAR-10 path {source}: label {int(labels[i])} of image {i} is out of range 0..9 "
                         f"({bad.size} such labels); fix the labels")


# --- cache --------------------------------------------------------------------------------------------------------

def _fingerprint(p: Path) -> list[Any]:
    """Size and modification time of a file, or of every file under a folder (so an edit invalidates the cache)."""
    if p.is_file():
        st = p.stat()
        return [st.st_size, st.st_mtime_ns]
    stamp = []
    for root, dirs, files in os.walk(p):
        dirs.sort()
        for name in sorted(files):
            st = os.stat(os.path.join(root, name))
            stamp.append([os.path.relpath(os.path.join(root, name), p), st.st_size, st.st_mtime_ns])
    return stamp


def _cache_file(cache_dir: Path, source: _Source, split: str) -> Path:
    ensure_writable_dir(cache_dir, option="cache_dir")
    key = {"version": _CACHE_VERSION, "kind": source.kind, "path": str(source.path.resolve()), "split": split,
           "stamp": _fingerprint(source.path)}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_dir / f"cifar10-{split}-{digest}.npz"


def _read_cache(path: Path) -> Arrays | None:
    """Cached arrays, or ``None`` if absent or unreadable (then the caller decodes again and rewrites it)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            images, labels = npz["images"], npz["labels"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None
    if images.dtype != np.uint8 or images.shape[1:] != IMAGE_SHAPE or labels.shape != (len(images),):
        return None
    return images, labels.astype(np.int64, copy=False)

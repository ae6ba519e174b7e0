"""Similarity backends: one interface for reproducibility (RP), generalizability (GL) and copy detection.

Every backend answers two questions about images (B, C, H, W) in [-1, 1] (or vectors, for
:class:`RelativeDistance`): ``similarity(a, b)``, the per-row score of two batches (the same seed run through two
samplers), and ``max_similarity(queries, reference)``, each query's best score over a reference set (a training
set) with its index. ``matches(a, b)`` applies the backend's threshold. ``record()`` is what every stored score must
carry: backend, preprocessing, dtype and threshold.

Backends:

* :class:`PixelCorrelation` (the offline default): the Pearson correlation of two images' pixels (each image's
  values less their own mean, over all channels and pixels), i.e. the cosine similarity of mean-centred pixels,
  as Kadkhodaie et al. (2024) and Kamb & Ganguli (2024) compare images. It ignores a global brightness shift and
  contrast scale. Threshold :data:`PIXEL_THRESHOLD` = 0.9, chosen on real CIFAR-10 (measured with this code, float64):

  ================================================  ==========================================================
  pair                                              correlation (quantiles 1% / 5% / 50%)
  ================================================  ==========================================================
  an image and itself                               1 (exactly)
  a training image plus N(0, 0.1^2) pixel noise     0.887 / 0.930 / 0.974  (about 98% above 0.9)
  the same with noise 0.2 (visibly noisy)           0.691 / 0.786 / 0.906  (about half above 0.9)
  two different images of one class                 median 0.08, 99% below 0.60, max 0.87 (5,000 pairs)
  a test image and its best match among N           above 0.9: 0.1% (N = 64 and 1,024), 0.7% (N = 8,192),
  training images (test images are novel)           3.1% (N = 50,000; CIFAR-10 holds near-duplicates)
  ================================================  ==========================================================

  So a sample counts as the same image as a training image (or as another sampler's sample) when it is that image
  up to pixel noise of about 0.1 (13 grey levels), while novel images almost never pass.
* :class:`LearnedEmbedding`: a user's TorchScript (``torch.jit.load``) or ONNX (onnxruntime, ``pip install
  'mogsim[onnx]'``) descriptor such as SSCD, with SSCD's preprocessing pinned as options: images to [0, 1], resized
  to 320 x 320 (bilinear), ImageNet mean/std, L2-normalised features, dot product, threshold 0.6 (paper 1).
* :class:`RelativeDistance`: for vectors (the MoLRG experiment): ``1 - ||a - b|| / sqrt((|a|^2 + |b|^2) / 2)``,
  reproduced when the relative distance is below 1/3.

Images are clipped to [-1, 1] first, as saved images are. Scores are float64.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..devices import exact_float32_matmul, resolve_device
from ..errors import InputError
from ..parsing import whole_number

#: Pixel-correlation threshold (see the module docs for how it was chosen).
PIXEL_THRESHOLD = 0.9
#: Images whose pixels all lie within this of their mean count as constant (similarity 0 to anything); a grey
#: level of an 8-bit image is 2/255 = 0.0078.
FLAT_TOLERANCE = 1e-9
#: Paper 1's SSCD threshold.
SSCD_THRESHOLD = 0.6
#: SSCD's input size and ImageNet normalisation.
SSCD_RESIZE = 320
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: A vector pair is reproduced when its relative distance is below this.
RELATIVE_DISTANCE_MAX = 1.0 / 3.0
#: Elements per block of a query-by-reference score matrix.
_BLOCK = 1 << 24


def relative_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``||a - b|| / sqrt((||a||^2 + ||b||^2) / 2)`` per row (float64); 0 where both are 0."""
    x = a.reshape(a.shape[0], -1).to(torch.float64)
    y = b.reshape(b.shape[0], -1).to(device=x.device, dtype=torch.float64)
    num = (x - y).norm(dim=1)
    den = torch.sqrt(0.5 * ((x * x).sum(dim=1) + (y * y).sum(dim=1)))
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros_like(num))


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    for name, t in (("a", a), ("b", b)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.ndim < 2 or t.shape[0] == 0:
            raise InputError(f"{name} must be a floating-point tensor (B, ...) with B >= 1")
    if a.shape != b.shape:
        raise InputError(f"a has shape {tuple(a.shape)} and b {tuple(b.shape)}; compare batches of one shape "
                         "(the same seeds through two samplers)")


class Similarity(ABC):
    """A similarity score with its threshold; see the module docs."""

    name: str
    threshold: float

    @abstractmethod
    def similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(B,) float64 scores of row i of ``a`` with row i of ``b``."""

    @abstractmethod
    def max_similarity(self, queries: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(best score (B,) float64, index of the best reference row (B,) int64) for every query."""

    @abstractmethod
    def record(self) -> dict[str, Any]:
        """JSON-ready description: backend, preprocessing, dtype, threshold, and the rule."""

    def matches(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(B,) bool: ``similarity(a, b) > threshold``."""
        return self.is_match(self.similarity(a, b))

    def is_match(self, scores: torch.Tensor) -> torch.Tensor:
        """Scores above the threshold (the one decision rule of every backend)."""
        return scores > self.threshold


class EmbeddingSimilarity(Similarity):
    """A backend whose score is the dot product of L2-normalised features, ``embed(images)``."""

    #: Images per call of :meth:`embed_batch`.
    batch_size: int = 4096

    @abstractmethod
    def embed_batch(self, images: torch.Tensor) -> torch.Tensor:
        """Unnormalised features (b, F) of images (b, C, H, W) already clipped to [-1, 1]."""

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised features (B, F), float64 (a zero feature vector stays zero: similarity 0 to anything)."""
        if not isinstance(images, torch.Tensor) or not images.is_floating_point() or images.ndim < 2:
            raise InputError("images must be a floating-point tensor (B, C, H, W) in [-1, 1]")
        parts = []
        for i0 in range(0, images.shape[0], self.batch_size):
            feats = self.embed_batch(images[i0:i0 + self.batch_size].clamp(-1.0, 1.0)).to(torch.float64)
            if feats.ndim != 2 or feats.shape[0] != min(self.batch_size, images.shape[0] - i0):
                raise InputError(f"the similarity model returned shape {tuple(feats.shape)}; it must return one "
                                 "feature vector per image (B, F)")
            if not bool(torch.isfinite(feats).all()):
                raise InputError("the similarity model returned NaN or infinite features")
            norm = feats.norm(dim=1, keepdim=True)
            parts.append(torch.where(norm > 0, feats / norm.clamp_min(1e-300), torch.zeros_like(feats)))
        return torch.cat(parts)

    def similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        _check_pair(a, b)
        fa, fb = self.embed(a), self.embed(b)
        return (fa * fb.to(fa.device)).sum(dim=1)

    def max_similarity(self, queries: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fq = self.embed(queries)
        return best_dot(fq, self.embed(reference).to(fq.device))


def best_dot(queries: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(max over reference rows of the dot product, its index) per query row, in blocks of the reference."""
    step = max(1, _BLOCK // max(1, queries.shape[0]))
    best = torch.full((queries.shape[0],), -math.inf, dtype=queries.dtype, device=queries.device)
    where = torch.zeros(queries.shape[0], dtype=torch.long, device=queries.device)
    with exact_float32_matmul():
        for j0 in range(0, reference.shape[0], step):
            val, idx = (queries @ reference[j0:j0 + step].T).max(dim=1)
            better = val > best
            best = torch.where(better, val, best)
            where = torch.where(better, idx + j0, where)
    return best, where


class PixelCorrelation(EmbeddingSimilarity):
    """Pearson correlation of pixels (cosine similarity of each image less its own mean), float64."""

    name = "pixel-correlation"

    def __init__(self, threshold: float = PIXEL_THRESHOLD) -> None:
        self.threshold = _check_threshold(threshold, low=-1.0, high=1.0)

    def embed_batch(self, images: torch.Tensor) -> torch.Tensor:
        flat = images.reshape(images.shape[0], -1).to(torch.float64)
        centred = flat - flat.mean(dim=1, keepdim=True)
        # a constant image has no direction: its rounding residue (~1e-17) must not become one
        flat_rows = centred.abs().amax(dim=1, keepdim=True) < FLAT_TOLERANCE
        return torch.where(flat_rows, torch.zeros_like(centred), centred)

    def record(self) -> dict[str, Any]:
        return {"backend": self.name, "threshold": self.threshold, "rule": "similarity > threshold",
                "preprocessing": "clip to [-1, 1]; subtract each image's mean over all channels and pixels; "
                                 "L2-normalise", "similarity": "dot product (Pearson correlation)",
                "dtype": "float64"}


class LearnedEmbedding(EmbeddingSimilarity):
    """A TorchScript or ONNX descriptor model (e.g. SSCD) with pinned preprocessing.

    Preprocessing: clip to [-1, 1], map to [0, 1], resize to ``resize`` x ``resize`` (``interpolation``; antialiased
    when shrinking), subtract ``mean`` and divide by ``std`` per channel, run the model in float32, L2-normalise its
    (B, F) output; similarity is the dot product, matched when above ``threshold``. The defaults are SSCD's and
    paper 1's. ``kind`` is ``"auto"`` (``.onnx`` files through onnxruntime, anything else through
    ``torch.jit.load``), ``"torchscript"`` or ``"onnx"``. A file that does not load, or a model that does not return
    one feature vector per image, is an :class:`InputError` here, at construction.
    """

    def __init__(self, path: str | Path, *, threshold: float = SSCD_THRESHOLD, resize: int | None = SSCD_RESIZE,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 interpolation: str = "bilinear", kind: str = "auto", device: str | torch.device = "cpu",
                 batch_size: int = 64) -> None:
        self.path = Path(path)
        self.threshold = _check_threshold(threshold, low=-1.0, high=1.0)
        if resize is not None:
            resize = whole_number(resize, "resize", lo=1, fix="SSCD: 320; None keeps the size")
        if interpolation not in ("bilinear", "bicubic", "nearest", "area"):
            raise InputError(f"interpolation={interpolation!r}; choose bilinear, bicubic, nearest or area")
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise InputError("mean and std need one value per channel, std > 0 (ImageNet: 3 values each)")
        self.batch_size = whole_number(batch_size, "batch_size", lo=1)
        self.resize = resize
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.interpolation = interpolation
        self.device = resolve_device(device)
        self.kind = _model_kind(self.path, kind)
        self.name = self.kind
        self.sha256 = _sha256(self.path)
        self._run = _load_torchscript(self.path, self.device) if self.kind == "torchscript" \
            else _load_onnx(self.path, self.device)
        self._probe()

    def _probe(self) -> None:
        """Run one grey image through the model so that a broken file fails now, as one line."""
        side = self.resize or 32
        try:
            self.embed(torch.zeros(1, len(self.mean), side, side, device=self.device))
        except InputError as exc:
            raise InputError(f"--similarity {self.path}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - any failure of a foreign model is the user's file
            raise InputError(f"--similarity {self.path}: the model fails on one {len(self.mean)}x{side}x{side} image "
                             f"({type(exc).__name__}: {_first_line(exc)}); pass a model that maps (B, "
                             f"{len(self.mean)}, H, W) images to (B, F) features") from None

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Clipped images in [-1, 1] -> the model's float32 input (B, C, resize, resize)."""
        x = (images.to(device=self.device, dtype=torch.float32).clamp(-1.0, 1.0) + 1.0) * 0.5
        if self.resize is not None and tuple(x.shape[-2:]) != (self.resize, self.resize):
            shrink = self.resize < x.shape[-1] or self.resize < x.shape[-2]
            smooth = self.interpolation in ("bilinear", "bicubic")
            x = F.interpolate(x, size=(self.resize, self.resize), mode=self.interpolation,
                              **({"align_corners": False, "antialias": shrink} if smooth else {}))
        if x.shape[1] != len(self.mean):
            raise InputError(f"images have {x.shape[1]} channels but mean/std give {len(self.mean)}")
        mean = torch.tensor(self.mean, device=x.device).reshape(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).reshape(1, -1, 1, 1)
        return (x - mean) / std

    @torch.no_grad()
    def embed_batch(self, images: torch.Tensor) -> torch.Tensor:
        return self._run(self.preprocess(images))

    def record(self) -> dict[str, Any]:
        return {"backend": self.kind, "file": str(self.path), "sha256": self.sha256, "threshold": self.threshold,
                "rule": "similarity > threshold",
                "preprocessing": {"clip": [-1.0, 1.0], "scale": "(x + 1) / 2 to [0, 1]", "resize": self.resize,
                                  "interpolation": self.interpolation, "mean": list(self.mean),
                                  "std": list(self.std), "l2_normalize": True},
                "similarity": "dot product of L2-normalised features", "dtype": "float32 model, float64 scores"}


class RelativeDistance(Similarity):
    """Vectors (MoLRG samples): similarity ``1 - relative_distance(a, b)``, matched above ``threshold =
    1 - max_distance`` (the relative distance below ``max_distance``)."""

    name = "relative-distance"

    def __init__(self, max_distance: float = RELATIVE_DISTANCE_MAX) -> None:
        self.max_distance = _check_threshold(max_distance, low=0.0, high=2.0)
        self.threshold = 1.0 - self.max_distance

    def similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return 1.0 - relative_distance(a, b)

    def max_similarity(self, queries: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = queries.reshape(queries.shape[0], -1).to(torch.float64)
        y = reference.reshape(reference.shape[0], -1).to(device=x.device, dtype=torch.float64)
        ysq = (y * y).sum(dim=1)
        best = torch.full((x.shape[0],), -math.inf, dtype=torch.float64, device=x.device)
        where = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        step = max(1, _BLOCK // max(1, x.shape[0]))
        xsq = (x * x).sum(dim=1, keepdim=True)
        for j0 in range(0, y.shape[0], step):
            dist = torch.cdist(x, y[j0:j0 + step], compute_mode="donot_use_mm_for_euclid_dist")
            den = torch.sqrt(0.5 * (xsq + ysq[j0:j0 + step]))
            sim = 1.0 - torch.where(den > 0, dist / den.clamp_min(1e-300), torch.zeros_like(dist))
            val, idx = sim.max(dim=1)
            better = val > best
            best = torch.where(better, val, best)
            where = torch.where(better, idx + j0, where)
        return best, where

    def record(self) -> dict[str, Any]:
        return {"backend": self.name, "threshold": self.threshold, "max_distance": self.max_distance,
                "rule": "||a - b|| / sqrt((|a|^2 + |b|^2) / 2) < max_distance",
                "similarity": "1 - relative distance", "dtype": "float64"}


def make_similarity(spec: str | Path | Similarity = "pixel", *, threshold: float | None = None,
                    device: str | torch.device = "cpu", **options: Any) -> Similarity:
    """A backend from a CLI-style spec: ``"pixel"`` (:class:`PixelCorrelation`), a path to a TorchScript or ONNX
    file (:class:`LearnedEmbedding`, ``options`` = its preprocessing), or a backend (returned as is).
    ``threshold`` replaces the backend's default."""
    if isinstance(spec, Similarity):
        return spec
    if str(spec).strip().lower() == "pixel":
        if options:
            raise InputError(f"the pixel similarity takes no options ({', '.join(options)})")
        return PixelCorrelation(PIXEL_THRESHOLD if threshold is None else threshold)
    return LearnedEmbedding(spec, threshold=SSCD_THRESHOLD if threshold is None else threshold, device=device,
                            **options)


# --- loading ----------------------------------------------------------------------------------------------------

def _check_threshold(value: float, *, low: float, high: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"threshold {value!r} is not a number") from None
    if not (low <= v <= high) or not math.isfinite(v):
        raise InputError(f"threshold {value!r} is outside [{low:g}, {high:g}]")
    return v


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else "no message"


def _model_kind(path: Path, kind: str) -> str:
    if not path.is_file():
        raise InputError(f"--similarity {path}: no such file; pass a TorchScript (.pt) or ONNX (.onnx) embedding "
                         "model, or 'pixel'")
    key = str(kind).strip().lower()
    if key == "auto":
        return "onnx" if path.suffix.lower() == ".onnx" else "torchscript"
    if key not in ("torchscript", "onnx"):
        raise InputError(f"kind={kind!r}; choose auto, torchscript or onnx")
    return key


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _load_torchscript(path: Path, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    try:
        with warnings.catch_warnings():  # TorchScript is deprecated in torch, but it is how SSCD is distributed
            warnings.simplefilter("ignore", DeprecationWarning)
            model = torch.jit.load(str(path), map_location=device).eval()
    except Exception as exc:  # noqa: BLE001 - torch raises many types for foreign files
        raise InputError(f"--similarity {path}: cannot be loaded as TorchScript ({type(exc).__name__}: "
                         f"{_first_line(exc)}); save it with torch.jit.save, or pass an .onnx file") from None

    def run(x: torch.Tensor) -> torch.Tensor:
        out = model(x)
        if not isinstance(out, torch.Tensor):
            raise InputError(f"the model returned a {type(out).__name__}, not a tensor of features (B, F)")
        return out

    return run


def _load_onnx(path: Path, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    try:
        import onnxruntime as ort
    except ImportError:
        raise InputError(f"--similarity {path}: reading ONNX files needs onnxruntime; pip install "
                         "'mogsim[onnx]'") from None
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        session = ort.InferenceSession(str(path), providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise InputError(f"--similarity {path}: cannot be loaded by onnxruntime ({type(exc).__name__}: "
                         f"{_first_line(exc)}); export it with torch.onnx.export, or pass a TorchScript file") \
            from None
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise InputError(f"--similarity {path}: the ONNX model takes {len(inputs)} inputs; it must take one image "
                         "batch (B, C, H, W)")
    name, fixed = inputs[0].name, inputs[0].shape[0] if inputs[0].shape else None

    def run(x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        if not isinstance(fixed, int):  # a dynamic batch axis
            return torch.from_numpy(np.asarray(session.run(None, {name: arr})[0])).to(device)
        outs = []  # a model exported with a fixed batch: feed it that many images at a time, padding the last
        for i0 in range(0, arr.shape[0], fixed):
            part = arr[i0:i0 + fixed]
            padded = np.concatenate([part, np.repeat(part[-1:], fixed - part.shape[0], axis=0)])
            outs.append(np.asarray(session.run(None, {name: padded})[0])[:part.shape[0]])
        return torch.from_numpy(np.concatenate(outs)).to(device)

    return run

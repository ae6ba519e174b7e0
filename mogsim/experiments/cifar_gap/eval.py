"""Evaluate one cell of ``mogsim cifar-optimal-gap``: a denoiser trained on a subset of N images, at one training
time, against the empirical optimum of that subset (paper 1, Figs. 2 and 4; Li, Dai, Qu 2024).

:func:`evaluate_cell` measures, from the same per-seed noise (``mogsim.noise_for_seeds``; default seeds
100000..100999, disjoint from data seeds) and the deterministic EDM sampler (Heun, 18 levels, 35 calls):

* **RP to the optimum**: the fraction of seeds on which the net's sample and the ``EmpiricalDenoiser`` sampler's
  sample are the same image (similarity backend, :mod:`mogsim.metrics.similarity`), with a bootstrap interval;
* **copy fraction**: samples with nearest-neighbour ratio ``d1/d2 < 1/3`` against the subset, with a bootstrap
  interval; **GL** = 1 - the fraction whose best similarity to the subset is above the backend's threshold;
* **per-sigma distances** ``E||D_net - D_ref||^2 / E||D_ref - x||^2`` on noisy training and noisy held-out images,
  on the 18 EDM levels, to the empirical optimum and to the Gaussian with the subset's mean and covariance;
* **loss over its floor**: the training loss on a fixed seeded batch over the empirical optimum's on that batch.

Every metric is computed on samples clipped to [-1, 1] (as saved images are). The net runs on ``net_dtype``
inputs (float32) in the arithmetic ``net_precision`` names: ``fp32`` (full float32 products, the library default),
``tf32`` (TF32 products on CUDA) or ``bf16`` (bfloat16 autocast); the references, the optimum's sampler and the
nearest-neighbour distances run in float64 whatever it is. Everything that depends only on the subset and the
settings, not on the net, is computed once and cached in memory on :class:`CellReferences` and on disk in
``cache_dir``: the optimum's samples (``optimum-<key>.npz``: subset, seeds, sampler) and the references' answers on
the fixed distance queries and the optimum's loss on the fixed loss batch (``references-<key>.npz``: subset,
held-out images, query count and seed, levels, loss and its batch and seed). A key is the SHA-256 of everything the
file depends on, so a changed setting computes a new file and never reads a stale one; a damaged file is recomputed.
Build one :class:`CellReferences` per subset and pass it to every evaluation of that subset (widths, seeds,
evaluation points): later evaluations then pay only the net's calls.
``settings.loss`` must be the net's training loss (``vp`` or ``edm``). RP between two cells (widths, training
seeds) is ``mogsim.metrics.reproducibility.agreement(samples_a, samples_b, backend)`` on their stored samples.

Cost (CIFAR-10, N = 32,768, 1,000 seeds): the net makes 35,000 + 9,216 + 4,096 calls (sampler, 256 distance
queries x 18 levels x 2 sets, loss); the float64 closed forms about 2e13 flops (4 N d per query: the optimum's
sampler, the distances, the loss floor), once per subset; the nearest-neighbour and similarity searches 4e11 per evaluation. The reference cache holds
8 bytes per coordinate of every distance query and of both references' answers: at the command's 256 queries per
level 0.7 GB on the device and 0.45 GB on disk per subset (the queries are regenerated from their seed), 28 MB
for the CPU profile.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from ...closed_forms import EmpiricalDenoiser, GaussianDenoiser
from ...data import images_to_tensor
from ...devices import resolve_device, resolve_dtype
from ...errors import InputError
from ...io import write_json, write_npz
from ...metrics.copies import COPY_RATIO, fraction_ci, generalizability, nearest_two, ratio_of
from ...metrics.denoiser_distance import (DISTANCE_QUERIES, LOSS_BATCH, Denoise, DistanceReferences, LossFloor,
                                          distance_references, distances_to, loss_floor, loss_ratio_to)
from ...metrics.reproducibility import agreement
from ...metrics.similarity import EmbeddingSimilarity, Similarity, best_dot, make_similarity
from ...provenance import provenance
from ...runs import config_key, write_csv
from ...sampling import _check_seeds as check_seeds
from ...sampling import edm_sigmas, noise_for_seeds, sample
from ...training.losses import Loss, loss_record, make_loss
from ...training.loop import float32_mode
from ...training.run import data_fingerprint

#: Sampler seeds of every cell: 1,000 seeds from 100000, disjoint from the seeds that pick data or initialise nets.
DEFAULT_SAMPLE_SEEDS = range(100_000, 101_000)
CACHE_FORMAT = 1
#: The net's arithmetic at evaluation (``CellEvalSettings.net_precision``).
NET_PRECISIONS = ("fp32", "tf32", "bf16")
#: The references the per-sigma distances compare the net with (names of :class:`CellReferences` attributes).
DISTANCE_REFERENCES = ("empirical", "gaussian")


@dataclass(frozen=True)
class CellEvalSettings:
    """What an evaluation computes beyond the net, the subset and the seeds (all recorded with the metrics).

    Sampler: ``sampler_steps`` EDM levels (80 .. 0.002, rho 7) with ``solver``, ``sample_batch`` seeds per batch.
    Copies: ``copy_ratio``. Distances: ``distance_queries`` per level and query set, from ``distance_seed``. Loss:
    the engine's ``loss`` (``vp`` or ``edm`` with ``sigma_data``; use the net's training preconditioning) on
    ``loss_batch`` items from ``loss_seed``. Intervals: percentile bootstrap at ``ci_level`` with
    ``bootstrap_resamples`` from ``bootstrap_seed``. Precision: the net gets ``net_dtype`` inputs and runs in
    ``net_precision`` (``fp32``, ``tf32`` or ``bf16`` autocast; see the module docs).
    """

    sampler_steps: int = 18
    solver: str = "heun"
    sample_batch: int = 1000
    copy_ratio: float = COPY_RATIO
    distance_queries: int = DISTANCE_QUERIES
    distance_seed: int = 1
    loss: str = "vp"
    sigma_data: float = 0.5
    loss_batch: int = LOSS_BATCH
    loss_seed: int = 2
    ci_level: float = 0.95
    bootstrap_resamples: int = 2000
    bootstrap_seed: int = 0
    net_dtype: str = "float32"
    net_precision: str = "fp32"
    chunk: int = 512

    def check(self) -> None:
        """Raise :class:`InputError` for a value no evaluation can use."""
        for name in ("sampler_steps", "sample_batch", "distance_queries", "loss_batch", "bootstrap_resamples",
                     "chunk"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise InputError(f"{name}={value!r}; pass a positive integer")
        if self.solver not in ("heun", "euler"):
            raise InputError(f"solver={self.solver!r}; choose heun or euler")
        if not 0 < self.copy_ratio < 1:
            raise InputError(f"copy_ratio={self.copy_ratio!r}; pass a ratio in (0, 1) (Carlini et al.: 1/3)")
        if not 0 < self.ci_level < 1:
            raise InputError(f"ci_level={self.ci_level!r}; pass a level in (0, 1), e.g. 0.95")
        if self.net_precision not in NET_PRECISIONS:
            raise InputError(f"net_precision={self.net_precision!r}; choose fp32, tf32 or bf16")
        make_loss(self.loss, sigma_data=self.sigma_data)
        resolve_dtype(self.net_dtype)

    def record(self) -> dict[str, Any]:
        return asdict(self)


def as_images(images: Any, name: str) -> torch.Tensor:
    """uint8 pixels (mapped to [-1, 1]) or floats already in [-1, 1], as a float tensor (N, C, H, W)."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] == 0:
        raise InputError(f"{name} must be images (N, C, H, W) with N >= 1, uint8 pixels or floats in [-1, 1]")
    if images.dtype == torch.uint8:
        return images_to_tensor(images, device=images.device)
    if not images.is_floating_point():
        raise InputError(f"{name} has dtype {images.dtype}; pass uint8 pixels or floats in [-1, 1]")
    return images


def moment_matched_gaussian(images: torch.Tensor) -> GaussianDenoiser:
    """The Gaussian denoiser with the mean and covariance (divided by N) of ``images`` (N, ...): the Gaussian that
    matches the empirical distribution's first two moments (Li, Dai, Qu 2024). Built from the thin SVD of the
    centred data when N <= d (rank < N), from the d x d covariance otherwise; float64, on the images' device."""
    n = images.shape[0]
    flat = images.reshape(n, -1).to(torch.float64)
    mean = flat.mean(dim=0)
    centred = flat - mean
    shape = tuple(images.shape[1:])
    if n <= flat.shape[1]:
        return GaussianDenoiser.from_factor(mean, centred.T / math.sqrt(n), sample_shape=shape)
    cov = centred.T @ centred / n
    return GaussianDenoiser(mean, 0.5 * (cov + cov.T), sample_shape=shape)


def _fingerprint(images: torch.Tensor) -> str:
    """SHA-256 of the images as float32 in [-1, 1], so uint8 pixels and their float copies key alike."""
    return data_fingerprint(images.to(torch.float32))


def _seed_list(seeds: Iterable[int]) -> list[int]:
    out = check_seeds(seeds)
    if not out:
        raise InputError("sample_seeds is empty; pass at least one seed (default 100000..100999)")
    return out


class CellReferences:
    """The closed-form references of one training subset on one device: the empirical optimum, the moment-matched
    Gaussian, the optimum's samples and the references' answers on the fixed distance queries and loss batch (memory
    and disk cache), and the subset's similarity features (memory)."""

    def __init__(self, subset_images: Any, device: str | torch.device = "cpu") -> None:
        self.device = resolve_device(device)
        images = as_images(subset_images, "subset_images")
        self.source = subset_images
        self.fingerprint = _fingerprint(images)
        self.images = images.to(device=self.device, dtype=torch.float64)
        self.sample_shape = tuple(self.images.shape[1:])
        self.empirical = EmpiricalDenoiser(self.images)
        self.gaussian = moment_matched_gaussian(self.images)
        self._features: dict[str, torch.Tensor] = {}
        self._optimum: dict[str, torch.Tensor] = {}
        self._fixed: dict[str, tuple[DistanceReferences, LossFloor]] = {}

    @property
    def n(self) -> int:
        return int(self.images.shape[0])

    def matches(self, subset_images: Any) -> bool:
        """True when ``subset_images`` are the images these references were built from."""
        return subset_images is self.source or _fingerprint(as_images(subset_images, "subset_images")) \
            == self.fingerprint

    def features(self, backend: EmbeddingSimilarity) -> torch.Tensor:
        """The subset's features under an embedding backend (computed once per backend)."""
        key = json.dumps(backend.record(), sort_keys=True)
        if key not in self._features:
            self._features[key] = backend.embed(self.images)
        return self._features[key]

    def optimum_key(self, seeds: list[int], settings: CellEvalSettings) -> str:
        """Cache key of the optimum's samples: everything they depend on."""
        seed_hash = hashlib.sha256(np.asarray(seeds, dtype=np.int64).tobytes()).hexdigest()
        return config_key({"what": "empirical-optimum-samples", "format": CACHE_FORMAT,
                           "subset_sha256": self.fingerprint, "seeds_sha256": seed_hash, "num_seeds": len(seeds),
                           "sampler_steps": settings.sampler_steps, "solver": settings.solver,
                           "sigma_min": 0.002, "sigma_max": 80.0, "rho": 7.0, "dtype": "float64"})

    def optimum_samples(self, seeds: list[int], settings: CellEvalSettings, cache_dir: str | os.PathLike | None,
                        progress: Callable[[int], None] | None = None) -> tuple[torch.Tensor, str]:
        """(samples of the empirical optimum's sampler, float64 on the device; where they came from: ``memory``,
        ``disk`` or ``computed``)."""
        key = self.optimum_key(seeds, settings)
        if key in self._optimum:
            return self._optimum[key], "memory"
        path = Path(cache_dir) / f"optimum-{key}.npz" if cache_dir is not None else None
        loaded = _read_optimum(path, seeds, self.sample_shape) if path is not None else None
        if loaded is not None:
            samples, source = loaded.to(self.device), "disk"
        else:
            noise = noise_for_seeds(seeds, self.sample_shape, dtype=torch.float64)
            samples = sample_in_batches(self.empirical, noise, settings, self.device, torch.float64, progress)
            source = "computed"
            if path is not None:
                write_npz(path, samples=samples.cpu().numpy(), seeds=np.asarray(seeds, dtype=np.int64),
                          subset_sha256=np.asarray(self.fingerprint), key=np.asarray(key))
        self._optimum[key] = samples
        return samples, source

    def references_key(self, test: torch.Tensor, settings: CellEvalSettings) -> str:
        """Cache key of the references' answers on the distance queries and of the loss floor."""
        return config_key({"what": "evaluation-references", "format": CACHE_FORMAT,
                           "subset_sha256": self.fingerprint, "held_out_sha256": _fingerprint(test),
                           "references": list(DISTANCE_REFERENCES), "sigmas": _levels(settings),
                           "distance_queries": settings.distance_queries, "distance_seed": settings.distance_seed,
                           "loss": loss_record(_loss(settings)), "loss_batch": settings.loss_batch,
                           "loss_seed": settings.loss_seed, "dtype": "float64"})

    def fixed_references(self, test: torch.Tensor, settings: CellEvalSettings,
                         cache_dir: str | os.PathLike | None) -> tuple[DistanceReferences, LossFloor, str]:
        """(the distance queries with both references' answers, the loss batch with the optimum's loss, where they
        came from: ``memory``, ``disk`` or ``computed``), float64 on the device."""
        key = self.references_key(test, settings)
        if key in self._fixed:
            return (*self._fixed[key], "memory")
        path = Path(cache_dir) / f"references-{key}.npz" if cache_dir is not None else None
        stored = _read_references(path, key) if path is not None else None
        refs = {name: getattr(self, name) for name in DISTANCE_REFERENCES}

        def build(arrays: dict[str, np.ndarray] | None) -> tuple[DistanceReferences, LossFloor]:
            common = dict(device=self.device, chunk=settings.chunk)
            distance = distance_references(refs, {"train": self.images, "test": test}, _levels(settings),
                                           queries=settings.distance_queries, seed=settings.distance_seed,
                                           answers=arrays, **common)
            floor = loss_floor(self.empirical, self.images, _loss(settings), batch=settings.loss_batch,
                               seed=settings.loss_seed, per_sample=None if arrays is None else arrays["loss_floor"],
                               **common)
            return distance, floor

        source = "computed" if stored is None else "disk"
        try:
            distance, floor = build(stored)
        except (KeyError, ValueError, RuntimeError):  # a file of this key with other content: recompute
            (distance, floor), source = build(None), "computed"
        if source == "computed" and path is not None:
            write_npz(path, **distance.arrays(), loss_floor=floor.per_sample, key=np.asarray(key))
        self._fixed[key] = (distance, floor)
        return distance, floor, source

    def drop_fixed_references(self) -> None:
        """Forget the in-memory answers on the fixed queries (benchmarks measure the uncached cost with it)."""
        self._fixed.clear()


def _levels(settings: CellEvalSettings) -> list[float]:
    """The noise levels of the per-sigma distances: the sampler's grid without its final 0."""
    return edm_sigmas(settings.sampler_steps)[:-1].tolist()


def _loss(settings: CellEvalSettings) -> Loss:
    return make_loss(settings.loss, sigma_data=settings.sigma_data)


def _read_references(path: Path, key: str) -> dict[str, np.ndarray] | None:
    """The stored answers and loss floor of ``key``, or None when the file is absent, unreadable or another
    key's (then recomputed)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
    except Exception:  # noqa: BLE001 - a damaged cache file is recomputed, never trusted
        return None
    return arrays if str(arrays.get("key")) == key else None


def _read_optimum(path: Path, seeds: list[int], shape: tuple[int, ...]) -> torch.Tensor | None:
    """The cached samples, or None when the file is absent, unreadable or not for these seeds (then recomputed)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            stored_seeds, samples = z["seeds"], z["samples"]
    except Exception:  # noqa: BLE001 - a damaged cache file is recomputed, never trusted
        return None
    if not np.array_equal(stored_seeds, np.asarray(seeds)) or samples.shape != (len(seeds), *shape):
        return None
    return torch.from_numpy(samples.astype(np.float64))


def sample_in_batches(denoiser: Denoise, noise: torch.Tensor, settings: CellEvalSettings, device: torch.device,
                      dtype: torch.dtype, progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """Samples (on ``device``, ``dtype``) from CPU noise, ``settings.sample_batch`` seeds at a time."""
    grid = edm_sigmas(settings.sampler_steps)
    parts = [sample(denoiser, noise[i0:i0 + settings.sample_batch].to(device=device, dtype=dtype), grid,
                    settings.solver, progress=progress)
             for i0 in range(0, noise.shape[0], settings.sample_batch)]
    return torch.cat(parts)


#: Files of an evaluation point: every per-seed array with the samples, and the per-seed arrays alone.
PER_SAMPLE_FILE, PER_SEED_FILE = "per_sample.npz", "per_seed.npz"


@dataclass
class CellEvaluation:
    """What :func:`evaluate_cell` returns: JSON-ready ``metrics`` (every number a report prints), per-seed arrays
    ``per_sample``, the per-sigma rows, and the raw (unclipped) samples of the net and of the optimum."""

    metrics: dict[str, Any]
    per_sample: dict[str, np.ndarray]
    per_sigma: list[dict[str, Any]]
    samples: np.ndarray
    optimum_samples: np.ndarray
    loss_batch: dict[str, np.ndarray] = field(default_factory=dict)

    def save(self, folder: str | os.PathLike, *, optimum_rows: int | None = None) -> list[Path]:
        """Write ``per_sample.npz`` (per-seed arrays, samples, loss batch), ``per_seed.npz`` (the same without the
        samples: a few KiB that travel with the results where the samples do not, so that cells from several
        machines can be merged), ``per_sigma.csv`` and, last, ``metrics.json`` into ``folder``, each atomically, so a
        folder holding ``metrics.json`` is complete; returns the paths. ``optimum_rows`` keeps only the optimum's
        first samples (they are cached per subset anyway)."""
        out = Path(folder)
        optimum = self.optimum_samples if optimum_rows is None else self.optimum_samples[:optimum_rows]
        per_seed = {**self.per_sample, **{f"loss_batch_{k}": v for k, v in self.loss_batch.items()}}
        return [write_npz(out / PER_SAMPLE_FILE, **per_seed, samples=self.samples, optimum_samples=optimum),
                write_npz(out / PER_SEED_FILE, **per_seed),
                write_csv(out / "per_sigma.csv", self.per_sigma),
                write_json(out / "metrics.json", self.metrics)]


class _Clock:
    """Stage timings (synchronising CUDA so that each stage's time is its own)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.times = device, {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self._sync()
        t0 = time.perf_counter()
        yield
        self._sync()
        self.times[name] = time.perf_counter() - t0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def at_precision(denoiser: Denoise, precision: str, device: torch.device) -> Denoise:
    """``denoiser`` run under bfloat16 autocast for ``bf16`` (float64 inputs stay float64: autocast leaves them
    alone), as it is otherwise (``fp32`` and ``tf32`` are set by :func:`float32_mode` around the evaluation)."""
    if precision != "bf16":
        return denoiser

    def in_bf16(x: torch.Tensor, sigma: Any) -> torch.Tensor:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            return denoiser(x, sigma).to(x.dtype)

    return in_bf16


@torch.no_grad()
def evaluate_cell(denoiser: Denoise, subset_images: Any, *, test_images: Any,
                  sample_seeds: Iterable[int] = DEFAULT_SAMPLE_SEEDS, references: CellReferences | None = None,
                  similarity: str | Path | Similarity = "pixel", device: str | torch.device = "cpu",
                  settings: CellEvalSettings | None = None, cache_dir: str | os.PathLike | None = None,
                  progress: Callable[[int], None] | None = None) -> CellEvaluation:
    """Evaluate ``denoiser`` (any ``D(x, sigma)``, e.g. a trained net from ``load_trained_denoiser``) trained on
    ``subset_images`` (uint8 or [-1, 1] floats, (N, C, H, W)) against the subset's closed-form references; see the
    module docs. ``test_images`` are held-out images of the same shape; ``references`` (built from the subset) are
    reused when given; ``similarity`` is ``"pixel"``, a TorchScript/ONNX file or a backend; ``progress`` is called
    with 1 after each sampler step."""
    settings = settings or CellEvalSettings()
    settings.check()
    device = resolve_device(device)
    seeds = _seed_list(sample_seeds)
    backend = make_similarity(similarity, device=device)
    if references is None:
        references = CellReferences(subset_images, device)
    elif references.device != device or not references.matches(subset_images):
        raise InputError("references were built from another subset or device; build CellReferences(subset_images, "
                         "device) for this one")
    test = as_images(test_images, "test_images")
    if tuple(test.shape[1:]) != references.sample_shape:
        raise InputError(f"test_images have shape {tuple(test.shape[1:])} per image, the subset "
                         f"{references.sample_shape}; pass held-out images of the subset's shape")
    net_dtype = resolve_dtype(settings.net_dtype)
    net = at_precision(denoiser, settings.net_precision, device)
    clock = _Clock(device)
    with float32_mode(device, settings.net_precision == "tf32"):
        with clock.stage("sample_net"):
            noise = noise_for_seeds(seeds, references.sample_shape, dtype=torch.float64)
            net_samples = sample_in_batches(net, noise, settings, device, net_dtype, progress)
        with clock.stage("sample_optimum"):
            opt_samples, opt_source = references.optimum_samples(seeds, settings, cache_dir, progress)
        with clock.stage("sample_metrics"):
            metrics, per_sample = _sample_metrics(net_samples, opt_samples, references, backend, settings)
        with clock.stage("fixed_references"):
            fixed, floor, fixed_source = references.fixed_references(test, settings, cache_dir)
        with clock.stage("distances"):
            dist = distances_to(net, fixed, net_dtype=net_dtype, chunk=settings.chunk)
        with clock.stage("loss"):
            loss = loss_ratio_to(net, floor, net_dtype=net_dtype, chunk=settings.chunk)
    metrics.update(loss.to_dict())
    metrics["per_sigma"] = dist.to_dict()
    metrics.update({
        "n": references.n, "image_shape": list(references.sample_shape), "num_seeds": len(seeds),
        "seed_first": seeds[0], "seed_last": seeds[-1], "subset_sha256": references.fingerprint,
        "test_images": int(test.shape[0]), "similarity": backend.record(), "settings": settings.record(),
        "samples_clipped_to": [-1.0, 1.0], "optimum_samples_source": opt_source,
        "fixed_references_source": fixed_source,
        "dtypes": {"net_input": settings.net_dtype, "net_precision": settings.net_precision,
                   "net_autocast": "bfloat16" if settings.net_precision == "bf16"
                   else str(getattr(denoiser, "autocast_dtype", None)),
                   "tf32": settings.net_precision == "tf32", "references": "float64", "optimum_sampler": "float64",
                   "nearest_neighbour": "float64"},
        "timing_s": {**clock.times, "total": sum(clock.times.values())},
        "provenance": provenance(device),
    })
    per_sample["seeds"] = np.asarray(seeds, dtype=np.int64)
    batch = {"sigma": loss.sigma, "loss": loss.per_sample_loss, "loss_floor": loss.per_sample_floor}
    return CellEvaluation(metrics, per_sample, dist.rows(), net_samples.float().cpu().numpy(),
                          opt_samples.float().cpu().numpy(), batch)


def _sample_metrics(net_samples: torch.Tensor, opt_samples: torch.Tensor, refs: CellReferences, backend: Similarity,
                    settings: CellEvalSettings) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """RP to the optimum, copies and GL (with intervals) and their per-seed values; copies and GL also for the
    optimum's own samples, as a check (Proposition 1: every one is a training image)."""
    ci = dict(level=settings.ci_level, resamples=settings.bootstrap_resamples, seed=settings.bootstrap_seed)
    net = net_samples.clamp(-1.0, 1.0)
    opt = opt_samples.to(device=net.device, dtype=net.dtype).clamp(-1.0, 1.0)
    rp = agreement(net, opt, backend, **ci)
    metrics: dict[str, Any] = {**rp.summary("rp_optimum"), "copy_ratio_threshold": settings.copy_ratio,
                               "similarity_threshold": backend.threshold}
    per_sample: dict[str, np.ndarray] = {"similarity_to_optimum": rp.similarity, "reproduced": rp.reproduced}
    for suffix, prefix, xs in (("", "", net), ("_optimum", "optimum_", opt)):
        d1, d2, nearest = nearest_two(xs, refs.images)
        ratio = ratio_of(d1, d2)
        copies = ratio < settings.copy_ratio
        if isinstance(backend, EmbeddingSimilarity):  # the subset's features are computed once per subset
            feats = refs.features(backend)
            best, best_index = best_dot(backend.embed(xs).to(feats.device), feats)
        else:
            best, best_index = backend.max_similarity(xs, refs.images)
        memorized = backend.is_match(best)
        metrics.update({
            f"copy_fraction{suffix}": float(copies.double().mean()),
            f"copy_fraction{suffix}_ci": list(fraction_ci(copies, **ci)),
            f"memorized_fraction{suffix}": float(memorized.double().mean()),
            f"memorized_fraction{suffix}_ci": list(fraction_ci(memorized, **ci)),
            f"gl{suffix}": generalizability(best, backend.threshold),
            f"median_nn_ratio{suffix}": float(ratio.median()),
            f"median_nn_distance{suffix}": float(d1.median()),
            f"median_max_similarity{suffix}": float(best.median())})
        arrays = {"nn_ratio": ratio, "nn_distance": d1, "nn_second_distance": d2, "nearest_index": nearest,
                  "is_copy": copies, "max_similarity": best, "max_similarity_index": best_index}
        per_sample.update({prefix + k: v.cpu().numpy() for k, v in arrays.items()})
    return metrics, per_sample

"""How far a denoiser is from closed-form references per noise level, and its training loss against the floor.

**Distance per noise level** (paper-notes section 4), for every reference at once::

    distance(ref; sigma) = E ||D(x) - D_ref(x)||^2 / E ||D_ref(x) - x||^2,    x = x0 + sigma eps,

with x0 drawn from a query set (noisy training images, noisy held-out images). 0 means the denoiser is the
reference at that level; the identity ``x -> x`` scores exactly 1 against every reference. By Tweedie the ratio is
``E ||sigma (s - s_ref)||^2 / E ||sigma s_ref||^2``, mogsim's per-level L_score (:mod:`.score_error`, which fixes
the MoLRG pair of references; this module takes any named references and query sets).

Queries: for query set ``name`` and level i, the rows of x0 (uniform, with replacement) and eps come from numpy's
PCG64 seeded with ``(seed, crc32(name), i)``, in float64 on the CPU, so every model evaluated with one seed sees the
same queries on any device, whatever the other sets are. The references get the float64 queries (EmpiricalDenoiser
is exact in float64; GaussianDenoiser computes in float64 anyway), the denoiser under test gets them rounded to
``net_dtype`` (the float32 a network runs in); errors are accumulated in float64.

**References once, nets many times.** The queries and the references' answers on them depend only on the query sets,
the levels, the count and the seed: :func:`distance_references` computes them once (float64, on the device) and
:func:`distances_to` compares any number of denoisers with them; :func:`denoiser_distances` is the two in one call.
Likewise :func:`loss_floor` fixes the seeded batch and the optimum's loss on it and :func:`loss_ratio_to` measures a
denoiser against it. Memory on the device: 8 bytes per coordinate of every query and of every reference's answer
(CIFAR-10, 512 queries x 18 levels x 2 sets, two references: 1.4 GB).

**Standard error per level.** ``distance = mean(e) / mean(s)`` over the queries (e: squared error to the reference,
s: the reference's squared step ``||D_ref - x||^2``); its delta-method standard error is
``std(e - distance * s) / sqrt(queries) / mean(s)``, reported beside every distance; the loss ratio carries the same
standard error over its batch.

Cost on CIFAR-10 (d = 3,072): the empirical reference costs about 4 N d flops per query (distances and weighted sum
as matrix products): N = 32,768, 512 queries x 18 levels x 2 sets is 7e12 float64 flops, about 0.2 s at the
50 TFLOP/s an H100 reaches in float64 products, minutes on a 2-core CPU. The Gaussian reference costs 4 d^2 flops
per query after one decomposition (``eigh`` of the d x d covariance, or a thin SVD of the d x N data when N < d).

**Loss against its floor**: the training loss (:func:`mogsim.training.losses.per_sample_loss` with the engine's
weighting, e.g. VP: ``t ~ U(1e-5, 1)``, weight ``1 / sigma^2``, mean over coordinates) of the denoiser on a fixed,
seeded evaluation batch, divided by that of the empirical optimum on the same batch. Because ``D_emp(x) = E[x0 | x]``
minimises the loss pointwise, ``E loss(D) = E loss(D_emp) + E w ||D - D_emp||^2 / d``: the ratio is >= 1 in
expectation and 1 only for the optimum.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ..errors import InputError
from ..parsing import whole_number
from ..training.losses import Loss, loss_record, make_loss, per_sample_loss

Denoise = Callable[[torch.Tensor, Any], torch.Tensor]

#: Default queries per level and query set, and evaluation-batch size of the loss.
DISTANCE_QUERIES = 512
LOSS_BATCH = 4096
_LOSS_TAG = 0x6C6F_7373


@dataclass
class DenoiserDistances:
    """Per-level float64 arrays, indexed ``[query_set][reference]``: ``error = E||D - D_ref||^2``,
    ``spread = E||D_ref - x||^2`` (means over the queries), ``distance = error / spread`` and its standard error
    ``distance_se`` (module docs)."""

    sigmas: np.ndarray
    error: dict[str, dict[str, np.ndarray]]
    spread: dict[str, dict[str, np.ndarray]]
    distance_se: dict[str, dict[str, np.ndarray]]
    queries: int
    seed: int
    net_dtype: str

    def distance(self, query_set: str, reference: str) -> np.ndarray:
        """``E||D - D_ref||^2 / E||D_ref - x||^2`` per level."""
        return self.error[query_set][reference] / self.spread[query_set][reference]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready arrays and the settings that determine them."""
        sets = list(self.error)
        return {
            "definition": "E||D_net - D_ref||^2 / E||D_ref - x||^2 on x = x0 + sigma eps, per sigma",
            "sigmas": self.sigmas.tolist(), "queries_per_level": self.queries, "seed": self.seed,
            "net_dtype": self.net_dtype, "reference_dtype": "float64",
            "distance": {s: {r: self.distance(s, r).tolist() for r in self.error[s]} for s in sets},
            "distance_se": {s: {r: v.tolist() for r, v in self.distance_se[s].items()} for s in sets},
            "error": {s: {r: v.tolist() for r, v in self.error[s].items()} for s in sets},
            "spread": {s: {r: v.tolist() for r, v in self.spread[s].items()} for s in sets},
        }

    def rows(self) -> list[dict[str, Any]]:
        """One row per (query set, reference, sigma), for a CSV."""
        return [{"query_set": s, "reference": r, "sigma": float(sig), "distance": float(d),
                 "distance_se": float(self.distance_se[s][r][i]),
                 "error": float(self.error[s][r][i]), "spread": float(self.spread[s][r][i])}
                for s in self.error for r in self.error[s]
                for i, (sig, d) in enumerate(zip(self.sigmas, self.distance(s, r)))]


def noisy_query_batch(x0: torch.Tensor, sigma: float, count: int, seed: int, name: str, level: int
                      ) -> torch.Tensor:
    """``count`` queries ``x0[row] + sigma eps`` (float64, CPU, x0's sample shape), seeded as the module docs say."""
    rng = np.random.Generator(np.random.PCG64([int(seed), zlib.crc32(name.encode()), int(level)]))
    rows = torch.from_numpy(rng.integers(0, x0.shape[0], size=count))
    eps = torch.from_numpy(rng.standard_normal((count, *x0.shape[1:])))
    return x0[rows].to(torch.float64) + float(sigma) * eps


def ratio_standard_error(a: np.ndarray, b: np.ndarray) -> float:
    """Delta-method standard error of ``mean(a) / mean(b)`` over paired samples: ``std(a - r b) / sqrt(n) /
    mean(b)`` (NaN for fewer than two samples or a zero denominator)."""
    n, mean_b = len(a), float(np.mean(b))
    if n < 2 or mean_b == 0:
        return math.nan
    return float(np.std(a - np.mean(a) / mean_b * b, ddof=1) / math.sqrt(n) / mean_b)


def _sq_norms(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row ``||a - b||^2`` in float64, on the CPU."""
    d = (a.to(torch.float64) - b.to(torch.float64)).reshape(a.shape[0], -1)
    return (d * d).sum(dim=1).cpu()


@dataclass
class DistanceReferences:
    """The seeded queries and every reference's float64 answers on them, on one device. Per query set ``s``, the
    levels' queries are stacked level after level: ``queries[s]`` (L Q, ...), their noise levels ``query_sigmas[s]``
    (L Q,), ``answers[s][r]`` (L Q, ...) and the squared steps ``steps[s][r]`` = ``||D_ref(x) - x||^2`` (L Q,) on the
    CPU. Denoisers are called on chunks of the stack with one sigma per query, so every call is a full chunk
    whatever the count per level."""

    sigmas: np.ndarray
    queries: dict[str, torch.Tensor]
    query_sigmas: dict[str, torch.Tensor]
    answers: dict[str, dict[str, torch.Tensor]]
    steps: dict[str, dict[str, np.ndarray]]
    count: int
    seed: int

    def arrays(self) -> dict[str, np.ndarray]:
        """The answers (the costly part; the queries are regenerated from the seed) as named arrays for a file."""
        return {f"answer__{s}__{r}": a.cpu().numpy() for s, per_ref in self.answers.items() for r, a in per_ref.items()}


def _query_sets(query_sets: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if not query_sets:
        raise InputError("pass at least one query set")
    out = {}
    for set_name, x0 in query_sets.items():
        if not isinstance(x0, torch.Tensor) or x0.ndim < 2 or x0.shape[0] == 0:
            raise InputError(f"query set {set_name!r} must be a tensor (M, ...) of clean samples with M >= 1")
        out[set_name] = x0.detach().cpu()
    return out


def _levels(sigmas: Sequence[float]) -> list[float]:
    levels = [float(s) for s in sigmas]
    if not levels or min(levels) <= 0:
        raise InputError("sigmas must be positive noise levels (the EDM grid without its final 0)")
    return levels


def _in_chunks(denoise: Denoise, x: torch.Tensor, sigma: torch.Tensor, chunk: int, dtype: torch.dtype
               ) -> torch.Tensor:
    """``denoise`` on ``x`` (rounded to ``dtype``) with per-row ``sigma``, ``chunk`` rows per call, as float64."""
    return torch.cat([denoise(x[j:j + chunk].to(dtype), sigma[j:j + chunk]).to(torch.float64)
                      for j in range(0, x.shape[0], chunk)])


@torch.no_grad()
def distance_references(references: Mapping[str, Denoise], query_sets: Mapping[str, torch.Tensor],
                        sigmas: Sequence[float], *, queries: int = DISTANCE_QUERIES, seed: int = 0,
                        device: torch.device | str = "cpu", chunk: int = 512,
                        answers: Mapping[str, np.ndarray] | None = None) -> DistanceReferences:
    """The queries of every query set (clean x0, float in [-1, 1], (M, ...)) at every sigma and the answers of every
    reference on them (see the module docs). ``answers`` (from :meth:`DistanceReferences.arrays` of the same
    settings, e.g. read back from a file) replaces computing them; one of the wrong shape is a ValueError."""
    if not references:
        raise InputError("pass at least one reference")
    sets, levels = _query_sets(query_sets), _levels(sigmas)
    queries, chunk = int(whole_number(queries, "queries", lo=1)), int(whole_number(chunk, "chunk", lo=1))
    dev = torch.device(device)
    xs = {s: torch.cat([noisy_query_batch(x0, sigma, queries, seed, s, i) for i, sigma in enumerate(levels)]).to(dev)
          for s, x0 in sets.items()}
    sig = torch.tensor(levels, dtype=torch.float64).repeat_interleave(queries).to(dev)
    out: dict[str, dict[str, torch.Tensor]] = {s: {} for s in sets}
    for s in sets:
        for r, ref in references.items():
            if answers is None:
                out[s][r] = _in_chunks(ref, xs[s], sig, chunk, torch.float64)
                continue
            stored = np.asarray(answers[f"answer__{s}__{r}"])
            if stored.shape != tuple(xs[s].shape):
                raise ValueError(f"stored answers of {s}/{r} have shape {stored.shape}, not {tuple(xs[s].shape)}")
            out[s][r] = torch.from_numpy(stored).to(device=dev, dtype=torch.float64)
    steps = {s: {r: _sq_norms(a, xs[s]).numpy() for r, a in out[s].items()} for s in sets}
    return DistanceReferences(np.asarray(levels), xs, {s: sig for s in sets}, out, steps, queries, int(seed))


@torch.no_grad()
def distances_to(net: Denoise, refs: DistanceReferences, *, net_dtype: torch.dtype = torch.float32,
                 chunk: int = 512) -> DenoiserDistances:
    """Distances of ``net`` to every reference of ``refs`` (its queries rounded to ``net_dtype``), with their
    standard errors; the net is called once per query, whatever the number of references."""
    chunk = int(whole_number(chunk, "chunk", lo=1))
    n, levels = refs.count, len(refs.sigmas)
    error: dict[str, dict[str, np.ndarray]] = {}
    spread: dict[str, dict[str, np.ndarray]] = {}
    se: dict[str, dict[str, np.ndarray]] = {}
    for s, x in refs.queries.items():
        d_net = _in_chunks(net, x, refs.query_sigmas[s], chunk, net_dtype)
        error[s], spread[s], se[s] = {}, {}, {}
        for r, answers in refs.answers[s].items():
            e = _sq_norms(d_net, answers).numpy().reshape(levels, n)
            step = refs.steps[s][r].reshape(levels, n)
            error[s][r], spread[s][r] = e.mean(axis=1), step.mean(axis=1)
            se[s][r] = np.array([ratio_standard_error(e[i], step[i]) for i in range(levels)])
    return DenoiserDistances(refs.sigmas.copy(), error, spread, se, n, refs.seed,
                             str(net_dtype).replace("torch.", ""))


def denoiser_distances(net: Denoise, references: Mapping[str, Denoise], query_sets: Mapping[str, torch.Tensor],
                       sigmas: Sequence[float], *, queries: int = DISTANCE_QUERIES, seed: int = 0,
                       device: torch.device | str = "cpu", net_dtype: torch.dtype = torch.float32,
                       chunk: int = 512) -> DenoiserDistances:
    """Distances of ``net`` to every reference on every query set (clean x0, float in [-1, 1], (M, ...)) at every
    sigma (see the module docs): :func:`distance_references` then :func:`distances_to`."""
    refs = distance_references(references, query_sets, sigmas, queries=queries, seed=seed, device=device,
                               chunk=chunk)
    return distances_to(net, refs, net_dtype=net_dtype, chunk=chunk)


@dataclass
class LossRatio:
    """The training loss of a denoiser and of the empirical optimum on one evaluation batch, and their ratio."""

    loss: float
    floor: float
    ratio: float
    ratio_se: float
    per_sample_loss: np.ndarray
    per_sample_floor: np.ndarray
    sigma: np.ndarray
    batch: int
    seed: int
    loss_record: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"loss": self.loss, "loss_floor": self.floor, "loss_ratio": self.ratio, "loss_ratio_se": self.ratio_se,
                "loss_batch": self.batch,
                "loss_seed": self.seed, "loss_definition": {**self.loss_record, "per_sample": "weight(sigma) * "
                                                            "mean over coordinates of (D(y + sigma n) - y)^2"}}


def evaluation_batch(data: torch.Tensor, loss: Loss, batch: int, seed: int
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(clean y float64, sigma float32, noise float32) on the CPU: rows uniform with replacement (numpy PCG64), sigma
    from the loss's distribution and standard normal noise (a CPU torch generator), all from ``seed``."""
    rng = np.random.Generator(np.random.PCG64([int(seed), _LOSS_TAG]))
    rows = torch.from_numpy(rng.integers(0, data.shape[0], size=batch))
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(rng.integers(0, 2**62)))
    sigma = loss.sample_sigma(batch, gen, torch.device("cpu"))
    noise = torch.randn((batch, *data.shape[1:]), generator=gen, dtype=torch.float32)
    return data.detach().cpu()[rows].to(torch.float64), sigma, noise


@dataclass
class LossFloor:
    """The seeded evaluation batch on one device (clean ``y`` float64, ``sigma`` and ``noise`` float32) and the
    optimum's per-sample loss on it (float64, CPU)."""

    y: torch.Tensor
    sigma: torch.Tensor
    noise: torch.Tensor
    per_sample: np.ndarray
    loss: Loss
    seed: int

    @property
    def batch(self) -> int:
        return int(self.y.shape[0])


@torch.no_grad()
def loss_floor(floor: Denoise, data: torch.Tensor, loss: str | Loss = "vp", *, batch: int = LOSS_BATCH,
               seed: int = 0, device: torch.device | str = "cpu", chunk: int = 512,
               per_sample: np.ndarray | None = None) -> LossFloor:
    """The seeded batch of ``data`` (clean training samples in [-1, 1]) and the loss of ``floor`` (the empirical
    optimum of ``data``) on it; ``per_sample`` (a stored :attr:`LossFloor.per_sample` of the same settings) replaces
    computing it."""
    loss_fn = make_loss(loss) if isinstance(loss, str) else loss
    if not isinstance(data, torch.Tensor) or not data.is_floating_point() or data.ndim < 2 or data.shape[0] == 0:
        raise InputError("data must be a float tensor (N, ...) of clean training samples in [-1, 1], N >= 1")
    batch, chunk = int(whole_number(batch, "batch", lo=1)), int(whole_number(chunk, "chunk", lo=1))
    y, sigma, noise = (t.to(device) for t in evaluation_batch(data, loss_fn, batch, seed))
    if per_sample is not None and np.shape(per_sample) != (batch,):
        raise ValueError(f"per_sample has shape {np.shape(per_sample)}; the batch has {batch} items")
    if per_sample is None:
        per_sample = torch.cat([per_sample_loss(floor, loss_fn, y[j:j + chunk], sigma[j:j + chunk].double(),
                                                noise[j:j + chunk].double()).double().cpu()
                                for j in range(0, batch, chunk)]).numpy()
    return LossFloor(y, sigma, noise, np.asarray(per_sample, dtype=np.float64), loss_fn, int(seed))


@torch.no_grad()
def loss_ratio_to(net: Denoise, floor: LossFloor, *, net_dtype: torch.dtype = torch.float32,
                  chunk: int = 512) -> LossRatio:
    """Loss of ``net`` on the floor's batch (inputs rounded to ``net_dtype``) over the floor's loss."""
    chunk = int(whole_number(chunk, "chunk", lo=1))
    y, sigma, noise = floor.y, floor.sigma, floor.noise
    per_net = torch.cat([per_sample_loss(net, floor.loss, y[j:j + chunk].to(net_dtype), sigma[j:j + chunk],
                                         noise[j:j + chunk].to(net_dtype)).double().cpu()
                         for j in range(0, floor.batch, chunk)]).numpy()
    value, floor_value = float(per_net.mean()), float(floor.per_sample.mean())
    ratio = value / floor_value if floor_value > 0 else float("inf")
    return LossRatio(value, floor_value, ratio, ratio_standard_error(per_net, floor.per_sample), per_net,
                     floor.per_sample, sigma.double().cpu().numpy(),
                     floor.batch, floor.seed, loss_record(floor.loss))


def loss_ratio(net: Denoise, floor: Denoise, data: torch.Tensor, loss: str | Loss = "vp", *,
               batch: int = LOSS_BATCH, seed: int = 0, device: torch.device | str = "cpu",
               net_dtype: torch.dtype = torch.float32, chunk: int = 512) -> LossRatio:
    """Loss of ``net`` over loss of ``floor`` (the empirical optimum of ``data``) on the same seeded batch of
    ``data`` (clean training samples in [-1, 1]); ``loss`` is ``"vp"``, ``"edm"`` or a loss object of the engine:
    :func:`loss_floor` then :func:`loss_ratio_to`."""
    fixed = loss_floor(floor, data, loss, batch=batch, seed=seed, device=device, chunk=chunk)
    return loss_ratio_to(net, fixed, net_dtype=net_dtype, chunk=chunk)

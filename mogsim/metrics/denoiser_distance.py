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
    """Per-level float64 arrays, indexed ``[query_set][reference]``: ``error = E||D - D_ref||^2`` and
    ``spread = E||D_ref - x||^2``; ``distance = error / spread``."""

    sigmas: np.ndarray
    error: dict[str, dict[str, np.ndarray]]
    spread: dict[str, dict[str, np.ndarray]]
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
            "error": {s: {r: v.tolist() for r, v in self.error[s].items()} for s in sets},
            "spread": {s: {r: v.tolist() for r, v in self.spread[s].items()} for s in sets},
        }

    def rows(self) -> list[dict[str, Any]]:
        """One row per (query set, reference, sigma), for a CSV."""
        return [{"query_set": s, "reference": r, "sigma": float(sig), "distance": float(d),
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


def _sq_sum(a: torch.Tensor, b: torch.Tensor) -> float:
    d = (a - b).reshape(a.shape[0], -1)
    return float((d * d).sum())


@torch.no_grad()
def denoiser_distances(net: Denoise, references: Mapping[str, Denoise], query_sets: Mapping[str, torch.Tensor],
                       sigmas: Sequence[float], *, queries: int = DISTANCE_QUERIES, seed: int = 0,
                       device: torch.device | str = "cpu", net_dtype: torch.dtype = torch.float32,
                       chunk: int = 512) -> DenoiserDistances:
    """Distances of ``net`` to every reference on every query set (clean x0, float in [-1, 1], (M, ...)) at every
    sigma (see the module docs)."""
    if not references or not query_sets:
        raise InputError("pass at least one reference and one query set")
    queries, chunk = whole_number(queries, "queries", lo=1), whole_number(chunk, "chunk", lo=1)
    levels = [float(s) for s in sigmas]
    if not levels or min(levels) <= 0:
        raise InputError("sigmas must be positive noise levels (the EDM grid without its final 0)")
    error = {s: {r: np.zeros(len(levels)) for r in references} for s in query_sets}
    spread = {s: {r: np.zeros(len(levels)) for r in references} for s in query_sets}
    for set_name, x0 in query_sets.items():
        if not isinstance(x0, torch.Tensor) or x0.ndim < 2 or x0.shape[0] == 0:
            raise InputError(f"query set {set_name!r} must be a tensor (M, ...) of clean samples with M >= 1")
        x0_cpu = x0.detach().cpu()
        for i, sigma in enumerate(levels):
            batch = noisy_query_batch(x0_cpu, sigma, int(queries), seed, set_name, i)
            for j0 in range(0, batch.shape[0], int(chunk)):
                x = batch[j0:j0 + int(chunk)].to(device)
                d_net = net(x.to(net_dtype), sigma).to(torch.float64)
                for ref_name, ref in references.items():
                    d_ref = ref(x, sigma).to(torch.float64)
                    error[set_name][ref_name][i] += _sq_sum(d_net, d_ref)
                    spread[set_name][ref_name][i] += _sq_sum(d_ref, x)
    for table in (error, spread):
        for per_ref in table.values():
            for values in per_ref.values():
                values /= int(queries)
    return DenoiserDistances(np.asarray(levels), error, spread, int(queries), int(seed),
                             str(net_dtype).replace("torch.", ""))


@dataclass
class LossRatio:
    """The training loss of a denoiser and of the empirical optimum on one evaluation batch, and their ratio."""

    loss: float
    floor: float
    ratio: float
    per_sample_loss: np.ndarray
    per_sample_floor: np.ndarray
    sigma: np.ndarray
    batch: int
    seed: int
    loss_record: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"loss": self.loss, "loss_floor": self.floor, "loss_ratio": self.ratio, "loss_batch": self.batch,
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


@torch.no_grad()
def loss_ratio(net: Denoise, floor: Denoise, data: torch.Tensor, loss: str | Loss = "vp", *,
               batch: int = LOSS_BATCH, seed: int = 0, device: torch.device | str = "cpu",
               net_dtype: torch.dtype = torch.float32, chunk: int = 512) -> LossRatio:
    """Loss of ``net`` over loss of ``floor`` (the empirical optimum of ``data``) on the same seeded batch of
    ``data`` (clean training samples in [-1, 1]); ``loss`` is ``"vp"``, ``"edm"`` or a loss object of the engine."""
    loss_fn = make_loss(loss) if isinstance(loss, str) else loss
    if not isinstance(data, torch.Tensor) or not data.is_floating_point() or data.ndim < 2 or data.shape[0] == 0:
        raise InputError("data must be a float tensor (N, ...) of clean training samples in [-1, 1], N >= 1")
    batch, chunk = whole_number(batch, "batch", lo=1), whole_number(chunk, "chunk", lo=1)
    y, sigma, noise = evaluation_batch(data, loss_fn, int(batch), seed)
    net_parts, floor_parts = [], []
    for j0 in range(0, int(batch), int(chunk)):
        part = slice(j0, j0 + int(chunk))
        yj, sj, nj = y[part].to(device), sigma[part].to(device), noise[part].to(device)
        net_parts.append(per_sample_loss(net, loss_fn, yj.to(net_dtype), sj, nj.to(net_dtype)).double().cpu())
        floor_parts.append(per_sample_loss(floor, loss_fn, yj, sj.double(), nj.double()).double().cpu())
    per_net, per_floor = torch.cat(net_parts).numpy(), torch.cat(floor_parts).numpy()
    value, floor_value = float(per_net.mean()), float(per_floor.mean())
    ratio = value / floor_value if floor_value > 0 else float("inf")
    return LossRatio(value, floor_value, ratio, per_net, per_floor, sigma.double().numpy(), int(batch), int(seed),
                     loss_record(loss_fn))

"""The Jacobian rank of a denoiser along sampler trajectories (paper 2, Fig. 3), in a resumable run folder.

Paper 2 (Wang et al., arXiv 2409.02426) observes that the Jacobian ``dD(x; sigma)/dx`` of a trained denoiser is
low-rank over most noise levels: for the MoLRG closed form its numerical rank (99% of the Frobenius norm) is d at
high SNR and K d at low SNR; a UNet trained on MoLRG is nearly full rank at high SNR; on real images the rank stays
far below n over most of the range. This experiment measures it for one model:

* ``model = "molrg"``: the closed-form posterior mean of a random MoLRG (``rank`` d, ``components`` K, ``dim`` n,
  ``mix_seed``), in float64;
* ``model = "net"``: the EMA network of a run folder (``run``): a ``mogsim score-match`` run or a sweep's cell folder
  (``<sweep>/cells/<cell>``, one member of its training group's model) -- a net trained on MoLRG samples, whose d
  and K are the reference -- or a ``mogsim train`` run (e.g. a UNet on CIFAR-10), in the network's dtype (float32)
  with TF32 off by default; ``precision`` tf32 or bf16 trades exactness for speed (on an H200, 32 s and 26 s per
  CIFAR sample against 67 s: BENCHMARKS.md).

For every sampler seed the deterministic EDM sampler runs from that seed's noise; at each of its levels (18 by
default, sigma = 80 .. 0.002) the Jacobian is built from forward-mode JVPs and its numerical rank taken
(:func:`mogsim.metrics.jacobian.iter_trajectory_ranks`). The rank over n is plotted against the SNR 1/sigma.

Run folder ``<out>/jacobian-rank-<what>-<key>/`` (:class:`mogsim.runs.RunFolder`; the key hashes the configuration,
the checkpoint's SHA-256 and the device type, not the run folder's path): ``config.json``, ``ranks.csv`` (one row per
level and sample, rewritten atomically after every level; a stopped run resumes at the first missing level),
``metrics.json`` (per-level summaries, the paper's claims judged by stated rules, timing, provenance; written last),
``violin.png``/``violin.pdf``, and ``report.pdf`` with ``report``.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..closed_forms import MoLRG
from ..denoiser import Denoiser, ProgressFactory
from ..devices import float32_precision, resolve_device
from ..errors import InputError
from ..metrics.jacobian import MAX_BATCH, RANK_ENERGY, iter_trajectory_ranks
from ..params import check_params, param
from ..parsing import parse_seeds
from ..progress import silent
from ..provenance import provenance
from ..runs import RunFolder, jsonable, read_config, read_csv, write_csv
from ..sampling import SOLVERS, edm_sigmas, noise_for_seeds
from ..training.config import PRECISIONS
from .command_options import CommandOptions, CommandResult

RUN_KIND = "mogsim-jacobian-rank"
RANKS_FILE = "ranks.csv"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.pdf"
MODELS = ("molrg", "net")
#: At most this many sampler seeds per run: each costs n JVPs per level.
MAX_SAMPLES = 4096
#: A level counts as low-rank when its median rank / n is at most this (our rule for "low-rank", stated in the files).
LOW_RANK = 0.5
TRAIN_FORMAT, SCORE_MATCH_FORMAT = "mogsim-train-run", "mogsim-score-match"


def _parse_seeds(text: str) -> tuple[int, ...]:
    return tuple(parse_seeds(text, option="seeds"))


@dataclass(frozen=True)
class JacobianConfig:
    """What a Jacobian-rank run measures (hashed into the run folder's key, with the checkpoint's SHA-256)."""

    model: str | None = param(None, "molrg (the MoLRG closed form) or net (the EMA network of --run).",
                              choices=MODELS, shown="net with --run, else molrg")
    run: str | None = param(None, "A run folder of mogsim score-match (a run or a sweep's cell) or mogsim train: its "
                            "EMA network is analysed.")
    member: int = param(0, "The member of a batched run.", min=0, max=10**6)
    rank: int = param(4, "MoLRG: d, the rank of every subspace.", min=1, max=16384)
    components: int = param(2, "MoLRG: K, the number of subspaces.", min=1, max=16384)
    dim: int = param(48, "MoLRG: n, the ambient dimension.", min=1, max=16384)
    mix_seed: int = param(0, "MoLRG: the seed of its subspaces.", min=0, max=2**63 - 1)
    seeds: tuple[int, ...] = param(tuple(range(16)), "Sampler seeds, one trajectory each, e.g. 0-15.", min=0,
                                   max=2**63 - 1, parse=_parse_seeds, shown="0-15")
    sampler_steps: int = param(18, "EDM noise levels of the sampler (the Jacobian is taken at each).", min=2,
                               max=1000)
    sigma_min: float = param(0.002, "Smallest noise level.", positive=True, max=1e6)
    sigma_max: float = param(80.0, "Largest noise level.", positive=True, max=1e6)
    rho: float = param(7.0, "EDM's grid exponent.", positive=True, max=1e3)
    solver: str = param("heun", "Sampler: heun or euler.", choices=SOLVERS)
    energy: float = param(RANK_ENERGY, "Numerical rank: the fewest singular values that hold this fraction of the "
                          "Frobenius norm (the paper's 0.99).", positive=True, max=1.0)
    precision: str = param("fp32", "A network's arithmetic: fp32 (float32, TF32 off), tf32 (float32 products on TF32 "
                           "units) or bf16 (bfloat16 autocast); faster on a GPU, less exact.", choices=PRECISIONS)

    def __post_init__(self) -> None:
        if self.model is None:
            object.__setattr__(self, "model", "net" if self.run is not None else "molrg")
        self.check()

    def check(self) -> None:
        """Raise :class:`InputError` naming the parameter and the fix for any value no run can use."""
        check_params(self)
        if self.model == "net" and self.run is None:
            raise InputError("model=net: needs run, a run folder of mogsim score-match or mogsim train",
                             parameter=("model", "run"))
        if self.model == "molrg" and self.run is not None:
            raise InputError("run: applies to model net; leave it out for the MoLRG closed form",
                             parameter=("run", "model"))
        if self.model == "molrg" and self.precision != "fp32":
            raise InputError(f"precision={self.precision}: applies to model net; the MoLRG closed form runs in "
                             "float64, leave it out", parameter=("precision", "model"))
        if self.model == "molrg" and self.rank > self.dim:
            raise InputError(f"rank={self.rank} exceeds dim={self.dim}; a subspace needs d <= n",
                             parameter=("rank", "dim"))
        if self.model == "molrg" and self.components * self.rank > self.dim:
            raise InputError(f"components * rank = {self.components} * {self.rank} = {self.components * self.rank} "
                             f"exceeds dim={self.dim}; mutually orthogonal subspaces need K d <= n",
                             parameter=("components", "rank", "dim"))
        if len(self.seeds) > MAX_SAMPLES:
            raise InputError(f"seeds: {len(self.seeds):,} trajectories; at most {MAX_SAMPLES:,} per run (each costs n "
                             "JVPs per level)", parameter="seeds")
        if self.sigma_min >= self.sigma_max:
            raise InputError(f"sigma_min={self.sigma_min} >= sigma_max={self.sigma_max}: the grid needs min < max",
                             parameter=("sigma_min", "sigma_max"))
        self.sigmas()  # levels too close for float64 are refused here

    def sigmas(self) -> torch.Tensor:
        """The sampler's levels (and a final 0), float64."""
        return edm_sigmas(self.sampler_steps, self.sigma_min, self.sigma_max, self.rho)


@dataclass(frozen=True)
class JacobianRunOptions(CommandOptions):
    """How the command runs (not hashed): the device and the JVP batch."""

    device: str | None = param(None, "auto, cpu or cuda.", shown="auto")
    max_batch: int = param(MAX_BATCH, "(sample, direction) pairs per forward-mode call; lower it if memory runs "
                           "out.", min=1, max=2**24)


@dataclass
class Model:
    """A denoiser to analyse: its sample shape and dtype, what it is (JSON-ready, part of the run's key) and, for
    models of an MoLRG, the mixture's d and K (the closed form's ranks at high and low SNR)."""

    denoiser: Denoiser
    sample_shape: tuple[int, ...]
    dtype: torch.dtype
    record: dict[str, Any]
    reference: dict[str, int] | None


def _sweep_group(cell: Path, key: str) -> tuple[Path, int] | None:
    """For a cell folder of a ``mogsim score-match`` sweep (``<sweep>/cells/<cell>``): the training group that holds
    its network (``<sweep>/groups/<g>``, whose config lists its cells' keys in member order) and its member there."""
    for config in sorted((cell.parent.parent / "groups").glob("*/config.json")):
        cells = (read_config(config) or {}).get("cells", [])
        if key in cells:
            return config.parent, cells.index(key)
    return None


def load_model(cfg: JacobianConfig, device: torch.device) -> Model:
    """The closed form, or the EMA network of the run folder ``cfg.run``, on ``device``."""
    if cfg.model == "molrg":
        mol = MoLRG.random(cfg.dim, cfg.components, cfg.rank, seed=cfg.mix_seed)
        return Model(mol, (cfg.dim,), torch.float64, {"kind": "molrg closed form", **mol.config()},
                     {"rank": cfg.rank, "components": cfg.components})
    from ..training.checkpoint import load_trained_denoiser, resolve_checkpoint

    folder = Path(str(cfg.run))
    stored = read_config(folder / "config.json") if folder.is_dir() else None
    kind = (stored or {}).get("format")
    if kind == TRAIN_FORMAT:
        net = stored["train"]["net"]  # type: ignore[index]
        shape = tuple(net["sample_shape"])
        kwargs = net.get("kwargs", {})
        reference = ({"rank": int(kwargs["rank"]), "components": int(kwargs["components"])}
                     if net.get("family") == "lowrank" else None)
    elif kind == SCORE_MATCH_FORMAT:
        sm = stored["config"]  # type: ignore[index]
        shape, reference = (int(sm["dim"]),), {"rank": int(sm["rank"]), "components": int(sm["components"])}
    else:
        raise InputError(f"run={str(folder)!r}: not a folder written by mogsim train or mogsim score-match (no "
                         "config.json in their format); pass one of those, or use model molrg", parameter="run")
    source, member = folder, cfg.member
    key = str((stored or {}).get("key"))
    group = _sweep_group(folder, key) if kind == SCORE_MATCH_FORMAT else None
    if group is not None:  # a cell of a score-match sweep: one member of its training group's model
        if cfg.member:
            raise InputError(f"member={cfg.member}: a sweep cell is network {group[1]} of its training group "
                             f"{group[0].name} already; leave member out", parameter="member")
        source, member = group
    checkpoint = resolve_checkpoint(source)
    den = load_trained_denoiser(checkpoint, device=device,
                                autocast_dtype=torch.bfloat16 if cfg.precision == "bf16" else None)
    if not 0 <= member < den.members:
        raise InputError(f"member={member}: the network holds {den.members} (0..{den.members - 1})",
                         parameter="member")
    den = den.member(member)
    record = {"kind": f"{'trained' if kind == TRAIN_FORMAT else 'score-match'} network (EMA weights)",
              "run_format": kind, "checkpoint": checkpoint.name, "member": member,
              "checkpoint_sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
              "precond": den.name, "parameters": sum(p.numel() for p in den.net.parameters())}
    return Model(den, shape, next(den.net.parameters()).dtype, record, reference)


# -- running -----------------------------------------------------------------------------------------------------------
def _slug(cfg: JacobianConfig) -> str:
    if cfg.model == "molrg":
        return f"jacobian-rank-molrg-d{cfg.rank}-K{cfg.components}-n{cfg.dim}"
    return f"jacobian-rank-{Path(str(cfg.run)).resolve().name}-m{cfg.member}"


def run_jacobian_rank(cfg: JacobianConfig, out: Any, *, device: str | torch.device = "auto",
                      max_batch: int = MAX_BATCH, progress: ProgressFactory = silent, deadline: float | None = None,
                      report: bool = False) -> CommandResult:
    """Measure (or resume, or reuse) the Jacobian ranks of ``cfg``'s model under ``out``; write the run folder.

    ``deadline`` (a ``time.monotonic()`` value) stops cleanly after the current level; the next call resumes.
    """
    t_start = time.monotonic()
    dev = resolve_device(device)
    model = load_model(cfg, dev)
    key = {**asdict(cfg), "run": None, "model_record": model.record, "device_type": dev.type,
           "experiment": "jacobian-rank", "version": 1}
    folder = RunFolder.keyed(out, _slug(cfg), key, kind=RUN_KIND)
    levels = cfg.sigmas()
    total = len(levels) - 1
    if folder.has(METRICS_FILE):
        metrics = folder.read_json(METRICS_FILE)
        result = CommandResult(folder.path, metrics, True, True, total, total, "levels")
    else:
        record = {"config": {**key, "run": cfg.run, "dtype": str(model.dtype).removeprefix("torch."),
                             "sample_shape": list(model.sample_shape), "reference": model.reference},
                  "provenance": provenance(dev)}
        with folder.session(record):
            result = _measure(cfg, model, folder, dev, int(max_batch), progress, deadline, t_start)
    if report and result.complete and not folder.has(REPORT_FILE):
        from ..report import write_report  # reportlab and matplotlib, only for reports

        write_report([folder.path], folder.file(REPORT_FILE))
    return result


def _measure(cfg: JacobianConfig, model: Model, folder: RunFolder, device: torch.device, max_batch: int,
             progress: ProgressFactory, deadline: float | None, t_start: float) -> CommandResult:
    """The levels still missing from ``ranks.csv``, then the summary, the figure and ``metrics.json``."""
    path = folder.file(RANKS_FILE)
    rows: list[dict[str, Any]] = [dict(r) for r in read_csv(path)] if path.exists() else []
    done = {int(r["level"]) for r in rows}
    levels = cfg.sigmas()
    total = len(levels) - 1
    n = math.prod(model.sample_shape)
    advance = progress("jacobian rank", total)
    advance(len(done))
    complete, seconds = True, 0.0
    if len(done) < total:
        noise = noise_for_seeds(cfg.seeds, model.sample_shape, dtype=model.dtype, device=device)
        t0 = time.monotonic()
        with float32_precision(cfg.precision == "tf32"):
            for i, sigma, ranks in iter_trajectory_ranks(model.denoiser, noise, levels, solver=cfg.solver,
                                                         energy=cfg.energy, max_batch=max_batch, skip=done):
                now = time.monotonic()
                rows += [{"level": i, "sigma": sigma, "snr": 1.0 / sigma, "seed": seed, "rank": int(r),
                          "rank_over_n": int(r) / n, "level_seconds": now - t0}
                         for seed, r in zip(cfg.seeds, ranks.tolist())]
                seconds += now - t0
                t0 = now
                rows.sort(key=lambda r: int(r["level"]))
                write_csv(path, rows)
                advance(1)
                if deadline is not None and time.monotonic() >= deadline and len({r["level"] for r in rows}) < total:
                    complete = False
                    break
    timing = {"this_call_seconds": time.monotonic() - t_start, "jacobian_seconds_this_call": seconds}
    levels_done = len({int(r["level"]) for r in rows})
    if not complete:
        return CommandResult(folder.path, {}, False, False, levels_done, total, "levels", timing)
    metrics = summarize(cfg, model, rows, n)
    metrics.update(timing=timing, provenance=provenance(device))
    metrics["figures"] = draw_violins(folder.path, metrics, rows)
    folder.write_json(METRICS_FILE, metrics)
    return CommandResult(folder.path, metrics, True, False, levels_done, total, "levels", timing)


# -- summarising -------------------------------------------------------------------------------------------------------
def arithmetic(cfg: JacobianConfig, model: Model) -> str:
    """In words, the arithmetic the Jacobians were taken in (the closed form is float64 whatever ``precision``)."""
    if model.dtype != torch.float32:
        return str(model.dtype).removeprefix("torch.")
    return {"fp32": "float32, TF32 off", "tf32": "float32, TF32 on", "bf16": "bfloat16 autocast"}[cfg.precision]


def summarize(cfg: JacobianConfig, model: Model, rows: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """Per-level statistics of the ranks, and the paper's claims judged by the stated rules."""
    by_level: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        by_level.setdefault(int(r["level"]), []).append(r)
    levels = []
    for i in sorted(by_level):
        ranks = np.array([int(r["rank"]) for r in by_level[i]])
        sigma = float(by_level[i][0]["sigma"])
        q25, median, q75 = np.quantile(ranks, [0.25, 0.5, 0.75])
        levels.append({"level": i, "sigma": sigma, "snr": 1.0 / sigma, "samples": int(ranks.size),
                       "rank_min": int(ranks.min()), "rank_q25": float(q25), "rank_median": float(median),
                       "rank_q75": float(q75), "rank_max": int(ranks.max()), "rank_mean": float(ranks.mean()),
                       "rank_over_n_median": float(median) / n, "rank_over_n_mean": float(ranks.mean()) / n,
                       "seconds": float(by_level[i][0].get("level_seconds") or 0.0)})
    low = sum(lv["rank_over_n_median"] <= LOW_RANK for lv in levels)
    high_snr, low_snr = levels[-1], levels[0]  # the smallest sigma, the largest
    out: dict[str, Any] = {
        "dim": n, "samples": len(cfg.seeds), "energy": cfg.energy, "model": model.record,
        "dtype": str(model.dtype).removeprefix("torch."), "precision": cfg.precision,
        "arithmetic": arithmetic(cfg, model), "reference": model.reference, "levels": levels,
        "low_rank_levels": low, "levels_total": len(levels),
        "rules": {
            "rank": f"numerical rank: the fewest singular values of dD/dx holding {cfg.energy:g} of its Frobenius "
                    "norm (a fraction of the norm, not of its square)",
            "trajectory": f"the deterministic EDM sampler ({cfg.solver}, {cfg.sampler_steps} levels from "
                          f"{cfg.sigma_max:g} to {cfg.sigma_min:g}, rho {cfg.rho:g}) from each seed's noise; the "
                          "Jacobian at the state where the sampler evaluates each level",
            "low_rank": f"a level is low-rank when its median rank / n <= {LOW_RANK:g}; the claim holds (yes) when "
                        "more than half of the levels are, partly when at least a quarter are, no otherwise",
        },
        "config": jsonable({**asdict(cfg), "sigmas": cfg.sigmas().tolist()}),
    }
    claims = []
    if model.reference is not None:
        d, k = model.reference["rank"], model.reference["components"]
        hits = [high_snr["rank_median"] == d, low_snr["rank_median"] == k * d]
        out["reference_ranks"] = {"high_snr": d, "low_snr": k * d,
                                  "fraction_equal_at_high_snr": _fraction(by_level[high_snr["level"]], d),
                                  "fraction_equal_at_low_snr": _fraction(by_level[low_snr["level"]], k * d)}
        out["rules"]["reference"] = ("the MoLRG closed form's rank is d at high SNR and K d at low SNR; the claim "
                                     "holds (yes) when the median rank at the smallest sigma is d and at the largest "
                                     "K d, partly when one of them is, no otherwise")
        if cfg.model == "molrg":
            claims.append({
                "paper": "The MoLRG closed form's Jacobian has numerical rank d at high SNR and K d at low SNR "
                         "(Wang et al., Fig. 3).",
                "measured": f"median rank {high_snr['rank_median']:g} at sigma = {high_snr['sigma']:.3g} (d = {d}) and "
                            f"{low_snr['rank_median']:g} at sigma = {low_snr['sigma']:.3g} (K d = {k * d})",
                "agrees": "yes" if all(hits) else "partly" if any(hits) else "no",
                "basis": "rule 'reference' in metrics.json"})
    claims.append({
        "paper": "The denoiser's Jacobian is low-rank over most noise levels (Wang et al., Fig. 3).",
        "measured": f"{low} of {len(levels)} levels have median rank / n <= {LOW_RANK:g}; median rank / n from "
                    f"{min(lv['rank_over_n_median'] for lv in levels):.3g} to "
                    f"{max(lv['rank_over_n_median'] for lv in levels):.3g}",
        "agrees": "yes" if 2 * low > len(levels) else "partly" if 4 * low >= len(levels) else "no",
        "basis": "rule 'low_rank' in metrics.json"})
    out["paper_claims"] = claims
    return out


def _fraction(rows: list[dict[str, Any]], value: int) -> float:
    return float(np.mean([int(r["rank"]) == value for r in rows]))


# -- figure ------------------------------------------------------------------------------------------------------------
def draw_violins(folder: Path, metrics: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """Write ``violin.png`` and ``violin.pdf`` (:func:`mogsim.report.figures.jacobian_rank_figure`)."""
    try:
        from ..report.figures import jacobian_rank_figure  # matplotlib, only when drawing
    except ImportError as exc:
        return f"not drawn ({exc})"
    from ..io import atomic_path

    title = (f"{metrics['model']['kind']}: n = {metrics['dim']:,}, {metrics['samples']} trajectories, "
             f"{metrics['arithmetic']}")
    fig = jacobian_rank_figure(rows, metrics["dim"], metrics.get("reference"), title, metrics["energy"])
    for suffix in ("png", "pdf"):
        with atomic_path(Path(folder) / f"violin.{suffix}") as tmp:
            fig.savefig(tmp, format=suffix, dpi=150)
    return "drawn"

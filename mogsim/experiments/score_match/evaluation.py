"""How a trained denoiser is judged: the verdict of :mod:`mogsim.metrics.molrg_verdict` (accuracy against both
references at levels set by the training set's geometry, copies net of chance, reproduction of the true sampler)
and, beside it, the per-sigma errors on the EDM grid (mogsim's L_score, the net's position between the references).

Everything in float64 with TF32 off. The verdict's plan (queries with the references' answers, sampler noise, the
references' samples) is built once per training set (:func:`build_plan`) and judges the net at every point of the
training-time axis; the per-sigma table is computed once, for the final weights. Each rule is stated beside the
code that computes it and recorded with every result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ...closed_forms import EmpiricalDenoiser, MoLRG
from ...denoiser import Advance, Denoiser
from ...devices import exact_float32_matmul
from ...metrics.molrg_verdict import RULE as VERDICT_RULE
from ...metrics.molrg_verdict import Judgement, VerdictPlan, judge_denoiser, plan_verdict
from ...metrics.score_error import SigmaErrors, noisy_queries, sigma_errors
from ...progress import ignore
from ...sampling import edm_sigmas
from .config import ScoreMatchConfig

#: units of work :func:`evaluate` reports: two query sets and the verdict
EVALUATION_UNITS = 3
#: The verdict's seed for every run: the same queries' noise streams and sampler seeds 0..S-1 (shared noise).
VERDICT_SEED = 0


@dataclass
class Evaluation:
    """Everything :func:`evaluate` measured for one trained denoiser."""

    metrics: dict[str, Any]
    per_sigma: list[dict[str, Any]]
    per_sample: dict[str, np.ndarray]
    errors: dict[str, SigmaErrors] = field(repr=False, default_factory=dict)


def eval_sigmas(cfg: ScoreMatchConfig) -> list[float]:
    """The EDM grid (Karras et al.: 80 .. 0.002, rho 7) without its final 0."""
    return [float(s) for s in edm_sigmas(cfg.sampler_steps)[:-1]]


# -- L_score and the position between the references ------------------------------------------------------------------
def l_score_rule(cfg: ScoreMatchConfig) -> str:
    return ("L_score(ref) = sum_sigma E||sigma (s_net - s_ref)||^2 / sum_sigma E||sigma s_ref||^2 over the EDM grid "
            "(mogsim's definition); per sigma it equals E||D_net - D_ref||^2 / E||D_ref - x||^2. l_score_true / "
            "l_score_empirical use x from the noisy true distribution; *_train_queries use noisy training points; "
            f"*_band sums only the levels with {cfg.band_sigma_min:g} <= sigma <= {cfg.band_sigma_max:g} (the same "
            "levels for every run, where the references separate and small nets are accurate); the grid total is "
            "dominated by the smallest sigma.")


def reference_errors(net: Denoiser, mol: MoLRG, emp: EmpiricalDenoiser, train: torch.Tensor, cfg: ScoreMatchConfig,
                     device: torch.device, advance: Advance) -> dict[str, SigmaErrors]:
    """Per-sigma errors of ``net`` against both references, on noisy fresh data (``true``) and noisy training
    points (``train``)."""
    sigmas = eval_sigmas(cfg)
    seeds = cfg.seeds()
    fresh, _ = mol.sample(cfg.eval_queries, seed=seeds["fresh_queries"], balanced=True)
    errors = {}
    for name, x0, seed in (("true", fresh, seeds["fresh_query_noise"]), ("train", train, seeds["train_query_noise"])):
        queries = noisy_queries(x0, sigmas, cfg.eval_queries, seed)
        errors[name] = sigma_errors(net, mol, emp, queries, sigmas, device=device)
        advance(1)
    return errors


def l_score_metrics(errors: dict[str, SigmaErrors], cfg: ScoreMatchConfig) -> dict[str, Any]:
    """The L_score totals (grid and band, both query sets)."""
    sigmas = eval_sigmas(cfg)
    band = np.array([cfg.band_sigma_min <= s <= cfg.band_sigma_max for s in sigmas], dtype=np.float64)
    return {"l_score_true": errors["true"].total("true"),
            "l_score_empirical": errors["true"].total("empirical"),
            "l_score_true_train_queries": errors["train"].total("true"),
            "l_score_empirical_train_queries": errors["train"].total("empirical"),
            "l_score_true_band": errors["true"].total("true", band),
            "l_score_empirical_band": errors["true"].total("empirical", band),
            "band_sigmas": [s for s, b in zip(sigmas, band) if b]}


# -- the verdict ----------------------------------------------------------------------------------------------------
def build_plan(cfg: ScoreMatchConfig, mol: MoLRG, train: torch.Tensor, device: torch.device) -> VerdictPlan:
    """The verdict's net-independent part for one run: ``eval_queries`` queries per band level and query set,
    ``sample_seeds`` sampler seeds (0..S-1, shared by all runs)."""
    return plan_verdict(mol, train, seed=VERDICT_SEED, device=device, queries=cfg.eval_queries,
                        sample_seeds=cfg.sample_seeds)


def verdict_numbers(detail: dict[str, Any]) -> dict[str, Any]:
    """The verdict's key numbers as flat table columns (``copy_fraction_true`` is the true sampler's copy rate:
    the chance level)."""
    s, acc = detail["samples"], detail["accuracy"]
    return {"verdict": detail["verdict"], "kappa": s["copy_excess_normalised"],
            "copy_fraction_net": s["copy_fraction_net"], "copy_fraction_true": s["copy_fraction_true_sampler"],
            "copy_fraction_empirical": s["copy_fraction_empirical_sampler"],
            "on_subspace_fraction_net": s["on_subspace_fraction_net"],
            "on_subspace_fraction_true": s["on_subspace_fraction_true_sampler"],
            "on_subspace_fraction_empirical": s["on_subspace_fraction_empirical_sampler"],
            "rp_net_true": s["rp_net_true"], "rp_net_empirical": s["rp_net_empirical"],
            "rp_empirical_true": s["rp_empirical_true"],
            "median_rel_distance_net_true": s["median_rel_distance_net_true"],
            "median_rel_distance_net_empirical": s["median_rel_distance_net_empirical"],
            "worst_rel_true_fresh": acc["true_fresh"], "worst_rel_true_train": acc["true_train"],
            "worst_rel_empirical_train": acc["empirical_train"], "worst_rel_empirical_fresh": acc["empirical_fresh"]}


def rules(cfg: ScoreMatchConfig) -> dict[str, str]:
    """The stated definitions and thresholds behind the metrics (recorded with every result)."""
    return {"verdict": VERDICT_RULE, "l_score": l_score_rule(cfg),
            "position": "t = (e_emp - e_true + gap) / (2 gap) per level: the projection of D_net on the segment from "
                        "D_emp (0) to D_true (1); offset = the RMS distance from the line through them",
            "samples": f"verdict samples: seeds 0..{cfg.sample_seeds - 1}, the EDM grid (18 levels, Heun), float64"}


# -- everything ------------------------------------------------------------------------------------------------------
@torch.no_grad()
def per_sigma_rows(errors: dict[str, SigmaErrors]) -> list[dict[str, Any]]:
    """One row per query set and level of the EDM grid."""
    rows = []
    for name, err in errors.items():
        for i, s in enumerate(err.sigmas):
            rows.append({"queries": name, "sigma": float(s), "l_score_true": err.l_score_true[i],
                         "l_score_empirical": err.l_score_emp[i], "e_true": err.e_true[i], "e_empirical": err.e_emp[i],
                         "reference_gap": err.gap[i], "position": err.position[i], "offset": err.offset[i]})
    return rows


@torch.no_grad()
def evaluate(net: Denoiser, mol: MoLRG, train: torch.Tensor, cfg: ScoreMatchConfig, device: torch.device,
             progress: Advance = ignore, judgement: Judgement | None = None) -> Evaluation:
    """Judge ``net`` trained on ``train`` (see the module docs): the verdict (``judgement`` when the caller already
    judged the net on :func:`build_plan`'s plan, as the training-time axis does) and the per-sigma table.
    ``progress`` advances by :data:`EVALUATION_UNITS` in all."""
    train_dev = train.to(device=device, dtype=torch.float64)
    emp = EmpiricalDenoiser(train_dev, compute_dtype=torch.float64)
    with exact_float32_matmul():
        errors = reference_errors(net, mol, emp, train, cfg, device, progress)
    if judgement is None:
        judgement = judge_denoiser(build_plan(cfg, mol, train, device), net)
    progress(1)
    metrics = {**l_score_metrics(errors, cfg), **verdict_numbers(judgement.detail),
               "verdict_detail": judgement.detail}
    return Evaluation(metrics, per_sigma_rows(errors), judgement.per_sample, errors)

"""How a trained denoiser is judged: per-sigma errors against the true MoLRG denoiser and the empirical optimum,
samples from shared seeds, and the verdict; each metric's stated rule stands beside the code that computes it.

In float64, on the EDM grid: queries ``x0 + sigma eps`` with x0 fresh from the MoLRG ("noisy true data") and x0 a
training point ("noisy training points"); mogsim's L_score and the net's position between the references
(:mod:`mogsim.metrics.score_error`); samples of the net, the empirical optimum and the true denoiser from the same
seeds, with copies, subspace membership and RP; the verdict of :func:`mogsim.metrics.verdict.decide`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ...closed_forms import EmpiricalDenoiser, MoLRG
from ...denoiser import Advance, Denoiser
from ...devices import exact_float32_matmul
from ...metrics.copies import nearest_two
from ...metrics.reproducibility import relative_distance
from ...metrics.score_error import SigmaErrors, noisy_queries, sigma_errors
from ...metrics.verdict import decide
from ...progress import ignore
from ...sampling import edm_sigmas, noise_for_seeds, sample
from .config import ScoreMatchConfig

#: units of work :func:`evaluate` reports: two query sets and three samplers
EVALUATION_UNITS = 5


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


# -- samples: copies, subspace membership, reproducibility --------------------------------------------------------------
def copy_rule(cfg: ScoreMatchConfig) -> str:
    return (f"a sample copies a training point when d1/d2 < {cfg.copy_ratio:.4g} (nearest / second-nearest Euclidean "
            "distance to the training set)")


def subspace_rule(cfg: ScoreMatchConfig) -> str:
    return f"a sample lies on a true subspace when min_k ||x - P_k x|| / ||x|| < {cfg.subspace_tol:g}"


def rp_rule(cfg: ScoreMatchConfig) -> str:
    return (f"RP(net, ref) = fraction of seeds whose two samples have relative distance ||a - b|| / "
            f"sqrt((||a||^2 + ||b||^2)/2) < {cfg.rp_threshold:.4g} (similarity 1 - distance > "
            f"{1 - cfg.rp_threshold:.4g})")


def sample_statistics(samples: dict[str, torch.Tensor], mol: MoLRG, train: torch.Tensor, cfg: ScoreMatchConfig
                      ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Copy and on-subspace fractions of each sampler, and RP of the net against each reference (summary, and the
    per-sample values behind it)."""
    per_sample: dict[str, np.ndarray] = {}
    summary: dict[str, Any] = {}
    for name, xs in samples.items():
        d1, d2, nearest = nearest_two(xs, train)
        ratio = torch.where(d1 == 0, torch.zeros_like(d1), d1 / d2)
        resid = mol.subspace_residual(xs)
        per_sample[f"{name}_nn_ratio"] = ratio.cpu().numpy()
        per_sample[f"{name}_nn_distance"] = d1.cpu().numpy()
        per_sample[f"{name}_nearest"] = nearest.cpu().numpy()
        per_sample[f"{name}_subspace_residual"] = resid.cpu().numpy()
        summary[f"copy_fraction_{name}"] = float((ratio < cfg.copy_ratio).double().mean())
        summary[f"on_subspace_fraction_{name}"] = float((resid < cfg.subspace_tol).double().mean())
    for ref in ("empirical", "true"):
        rel = relative_distance(samples["net"], samples[ref])
        per_sample[f"rel_distance_net_{ref}"] = rel.cpu().numpy()
        summary[f"rp_net_{ref}"] = float((rel < cfg.rp_threshold).double().mean())
        summary[f"median_rel_distance_net_{ref}"] = float(rel.median())
    rel_refs = relative_distance(samples["empirical"], samples["true"])
    summary["rp_empirical_true"] = float((rel_refs < cfg.rp_threshold).double().mean())
    per_sample["samples_net"] = samples["net"].cpu().numpy()
    return summary, per_sample


def rules(cfg: ScoreMatchConfig) -> dict[str, str]:
    """The stated definitions and thresholds behind the metrics (recorded with every result)."""
    return {"l_score": l_score_rule(cfg), "copy": copy_rule(cfg), "subspace": subspace_rule(cfg), "rp": rp_rule(cfg)}


# -- everything ------------------------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(net: Denoiser, mol: MoLRG, train: torch.Tensor, cfg: ScoreMatchConfig, device: torch.device,
             progress: Advance = ignore) -> Evaluation:
    """Compare ``net`` with the true MoLRG denoiser and the empirical optimum of ``train`` (see module docs);
    ``progress`` advances by :data:`EVALUATION_UNITS` in all."""
    train_dev = train.to(device=device, dtype=torch.float64)
    emp = EmpiricalDenoiser(train_dev, compute_dtype=torch.float64)
    with exact_float32_matmul():
        errors = reference_errors(net, mol, emp, train, cfg, device, progress)
        noise = noise_for_seeds(range(cfg.sample_seeds), (cfg.dim,), dtype=torch.float64, device=device)
        grid = edm_sigmas(cfg.sampler_steps)
        samples = {}
        for name, d in (("net", net), ("empirical", emp), ("true", mol)):
            samples[name] = sample(d, noise, grid, cfg.solver)
            progress(1)
    summary, per_sample = sample_statistics(samples, mol, train_dev, cfg)
    verdict = decide(errors["true"], errors["train"])
    per_sigma = []
    for name, err in errors.items():
        for i, s in enumerate(eval_sigmas(cfg)):
            per_sigma.append({
                "queries": name, "sigma": s, "l_score_true": err.l_score_true[i],
                "l_score_empirical": err.l_score_emp[i], "e_true": err.e_true[i], "e_empirical": err.e_emp[i],
                "reference_gap": err.gap[i], "position": err.position[i], "offset": err.offset[i],
                "decisive": bool(verdict.decisive[name][i])})
    metrics = {**l_score_metrics(errors, cfg), "generalization_index": verdict.generalization_index, **summary,
               "verdict": verdict.label, "verdict_detail": verdict.as_dict()}
    return Evaluation(metrics, per_sigma, per_sample, errors)

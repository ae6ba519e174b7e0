"""One score-matching run in its content-addressed run folder: draw the problem, train (or resume) on the training
engine with the training-time axis, evaluate, record; sweeps share :func:`finish_cell`.

Run folder (:class:`mogsim.runs.RunFolder`, ``<out>/<slug>-<key>/``): ``config.json`` (resolved config, seeds,
budget, provenance, launches), ``checkpoints/`` (training state at every point of the time axis, every 10% of the
steps, at Ctrl-C and at the time limit; the next launch resumes from it exactly), ``log.csv``, ``time.csv`` and
``time_axis.json`` (the verdict's numbers at each evaluated step, the cost record), ``per_sigma.csv``,
``per_sigma.png``, ``samples.npz``, and ``metrics.json`` last (re-running a finished configuration reuses it), plus
``report.pdf`` with ``report``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...analysis.training_time import cell_events
from ...closed_forms import MoLRG
from ...denoiser import Denoiser, ProgressFactory
from ...devices import float32_precision, resolve_device
from ...metrics.molrg_verdict import Judgement
from ...progress import silent
from ...provenance import provenance
from ...runs import RunFolder, read_csv
from .config import ScoreMatchConfig
from .evaluation import EVALUATION_UNITS, build_plan, evaluate, rules
from .timeline import TIME_FILE, train_members

RUN_KIND = "mogsim-score-match"
METRICS_FILE = "metrics.json"


def make_problem(cfg: ScoreMatchConfig) -> tuple[MoLRG, torch.Tensor]:
    """The MoLRG and its N training points (float64, (N, n)), exactly N/K per component."""
    seeds = cfg.seeds()
    mol = MoLRG.random(cfg.dim, cfg.components, cfg.rank, seed=seeds["subspaces"])
    train, _ = mol.sample(cfg.num_train, seed=seeds["training_set"], balanced=True)
    return mol, train


def launch_record(device: torch.device) -> dict[str, Any]:
    """What ``config.json`` records about each launch."""
    prov = provenance(device)
    return {"started_utc": prov["created_utc"], "command": prov["command"], "git_commit": prov["git_commit"],
            "device": str(device)}


def finish_cell(folder: RunFolder, cfg: ScoreMatchConfig, net: Denoiser, mol: MoLRG, train: torch.Tensor,
                device: torch.device, training: dict[str, Any], judgement: Judgement,
                time_rows: list[dict[str, Any]], time_axis: dict[str, Any], *, report: bool, figure: bool = True,
                progress: ProgressFactory = silent, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate a trained denoiser (its verdict: ``judgement``, from the time axis's last point) and write the run
    folder's result files, ``metrics.json`` last; returns the metrics. ``figure=False`` skips ``per_sigma.png``
    (sweeps draw combined figures instead)."""
    t0 = time.monotonic()
    with float32_precision(False):  # cuDNN convolutions (the UNet's) default to TF32 on CUDA
        ev = evaluate(net, mol, train, cfg, device, progress=progress("evaluating", EVALUATION_UNITS),
                      judgement=judgement)
    eval_seconds = time.monotonic() - t0
    folder.write_csv("per_sigma.csv", ev.per_sigma)
    folder.write_csv(TIME_FILE, time_rows)
    folder.write_npz("samples.npz", **ev.per_sample)
    if figure:
        try:
            from ...report.figures import per_sigma_figure  # matplotlib, only when drawing
        except ImportError:
            pass
        else:
            title = (f"r={cfg.rank}, N={cfg.num_train}, K={cfg.components}, n={cfg.dim}, {cfg.arch} w{cfg.width}, "
                     f"{cfg.steps} steps")
            per_sigma_figure(ev.per_sigma, title, band=judgement.detail["levels"]["sigmas"]).savefig(
                folder.file("per_sigma.png"), dpi=100)
    metrics = {**ev.metrics, "budget": cfg.budget(),
               "time_axis": {**time_axis, "events": cell_events(time_rows)},
               "training": {k: v for k, v in training.items() if k != "loss_history"},
               "loss_history": training.get("loss_history", []),
               "eval_seconds": eval_seconds, "rules": rules(cfg), "provenance": provenance(device), **(extra or {})}
    folder.write_json(METRICS_FILE, metrics)
    if report:
        write_report(folder.path)
    return metrics


def write_report(path: str | Path, name: str = "report.pdf") -> Path:
    """Write ``<path>/<name>`` from the folder's stored files with :func:`mogsim.report.write_report`."""
    from ...report import write_report as build  # reportlab and matplotlib, only for reports

    return build([path], Path(path) / name).path


@dataclass
class RunResult:
    """The outcome of :func:`run_score_match`."""

    path: Path
    metrics: dict[str, Any]
    per_sigma: list[dict[str, Any]]
    reused: bool
    complete: bool = True
    resumed_at_step: int | None = None


def run_score_match(cfg: ScoreMatchConfig, out: Any, *, device: str | torch.device = "auto", report: bool = False,
                    progress: ProgressFactory = silent, deadline: float | None = None) -> RunResult:
    """Train (or resume), evaluate and record one run under ``out/<slug>-<key>/``; reuse it if finished."""
    cfg.check()
    dev = resolve_device(device)
    folder = RunFolder.keyed(out, cfg.slug(), cfg.resolved(dev), kind=RUN_KIND)
    if not folder.has(METRICS_FILE):
        with folder.session({"config": cfg.resolved(dev), "provenance": provenance(dev)},
                            launch=launch_record(dev)) as resume:
            mol, train = make_problem(cfg)
            plan = build_plan(cfg, mol, train, dev)
            training = train_members([cfg], [train], folder, resume, dev, plans=[plan], progress=progress,
                                     deadline=deadline)
            if not training.complete or training.final is None:
                return RunResult(folder.path, {}, [], reused=False, complete=False,
                                 resumed_at_step=training.resumed_at_step)
            metrics = finish_cell(folder, cfg, training.denoiser.member(0), mol, train, dev,
                                  training.member_record(0), training.final[0], training.member_rows(0),
                                  training.time_axis, report=report, progress=progress)
        return RunResult(folder.path, metrics, read_csv(folder.file("per_sigma.csv")), reused=False,
                         resumed_at_step=training.resumed_at_step)
    if report and not folder.has("report.pdf"):
        write_report(folder.path)
    return RunResult(folder.path, folder.read_json(METRICS_FILE),
                     read_csv(folder.file("per_sigma.csv")), reused=True)

"""One score-matching run in its content-addressed run folder: draw the problem, train (or resume) on the training
engine, evaluate, record; and the training of a group of cells as the members of one model, which sweeps share.

Run folder (:class:`mogsim.runs.RunFolder`, ``<out>/<slug>-<key>/``): ``config.json`` (resolved config, seeds,
budget, provenance, launches), ``checkpoints/`` (training state every 10% of the steps, at Ctrl-C and at the time
limit; the next launch resumes from it exactly), ``log.csv``, ``per_sigma.csv``, ``per_sigma.png``, ``samples.npz``,
and ``metrics.json`` last (re-running a finished configuration reuses it), plus ``report.pdf`` with ``report``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ...closed_forms import MoLRG
from ...denoiser import Denoiser, ProgressFactory
from ...devices import resolve_device
from ...nets import PreconditionedDenoiser
from ...progress import silent
from ...provenance import provenance
from ...runs import RunFolder, read_csv
from ...training import DistContext, RuntimeOptions, Trainer
from .config import ScoreMatchConfig, training_config
from .evaluation import EVALUATION_UNITS, evaluate, rules

RUN_KIND = "mogsim-score-match"
METRICS_FILE = "metrics.json"
#: loss rows per run (every LOG_EVERY steps) and checkpoints per run (every 10% of the steps)
LOG_EVERY = 50
CHECKPOINTS_PER_RUN = 10


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


# -- training ----------------------------------------------------------------------------------------------------------
@dataclass
class Training:
    """The EMA denoiser of a trained (or partly trained) group of members and what its training recorded."""

    denoiser: PreconditionedDenoiser
    complete: bool
    resumed_at_step: int | None
    summary: dict[str, Any]
    history: list[list[float]]

    def member_record(self, m: int) -> dict[str, Any]:
        """Member ``m``'s training record: steps, seconds, first and last logged loss, loss history."""
        rows = [[row[0], row[1 + m]] for row in self.history]
        return {"steps_done": self.summary["steps"], "seconds": self.summary["wall_s"],
                "resumed_at_step": self.resumed_at_step, "members": self.denoiser.members,
                "loss_first": rows[0][1] if rows else float("nan"),
                "loss_last": rows[-1][1] if rows else float("nan"), "loss_history": rows}


def train_members(cfgs: Sequence[ScoreMatchConfig], sets: Sequence[torch.Tensor], folder: RunFolder,
                  resume: Path | None, device: torch.device, *, progress: ProgressFactory = silent,
                  deadline: float | None = None, description: str = "training") -> Training:
    """Train ``cfgs`` on their training ``sets`` as the members of one model in ``folder`` (resuming from
    ``resume``), to the budget or the ``deadline``."""
    steps = cfgs[0].steps
    runtime = RuntimeOptions(checkpoint_every=max(1, steps // CHECKPOINTS_PER_RUN), keep_checkpoints=1,
                             log_every=LOG_EVERY, progress="none")
    trainer = Trainer(training_config(cfgs), [s.to(torch.float32) for s in sets], runtime=runtime,
                      ctx=DistContext(device=device))
    resumed = None
    if resume is not None:
        trainer.resume(resume)
        resumed = trainer.step
        description += f" (resumed at step {resumed})"
    summary = trainer.fit(steps, folder.path, progress=progress, deadline=deadline, description=description)
    return Training(trainer.ema_denoiser(), summary["complete"], resumed, summary, trainer.history)


# -- evaluation and results --------------------------------------------------------------------------------------------
def finish_cell(folder: RunFolder, cfg: ScoreMatchConfig, net: Denoiser, mol: MoLRG, train: torch.Tensor,
                device: torch.device, training: dict[str, Any], *, report: bool, figure: bool = True,
                progress: ProgressFactory = silent, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate a trained denoiser and write the run folder's result files, ``metrics.json`` last; returns the
    metrics. ``figure=False`` skips ``per_sigma.png`` (sweeps draw one combined figure instead)."""
    t0 = time.monotonic()
    ev = evaluate(net, mol, train, cfg, device, progress=progress("evaluating", EVALUATION_UNITS))
    eval_seconds = time.monotonic() - t0
    folder.write_csv("per_sigma.csv", ev.per_sigma)
    folder.write_npz("samples.npz", **ev.per_sample)
    if figure:
        from ...report.figures import per_sigma_figure  # matplotlib, only when drawing

        title = (f"r={cfg.rank}, N={cfg.num_train}, K={cfg.components}, n={cfg.dim}, {cfg.arch} w{cfg.width}, "
                 f"{cfg.steps} steps")
        per_sigma_figure(ev.per_sigma, title).savefig(folder.file("per_sigma.png"), dpi=100)
    metrics = {**ev.metrics, "budget": cfg.budget(),
               "training": {k: v for k, v in training.items() if k != "loss_history"},
               "loss_history": training.get("loss_history", []),
               "eval_seconds": eval_seconds, "rules": rules(cfg), "provenance": provenance(device), **(extra or {})}
    folder.write_json(METRICS_FILE, metrics)
    if report:
        write_report(folder.path)
    return metrics


def write_report(path: str | Path) -> Path:
    """Write ``report.pdf`` of a finished run folder from its stored files (the one ``--report`` call)."""
    from ...report.pdf import write_run_report  # matplotlib, only for reports

    folder = RunFolder(path)
    config = folder.read_config()["config"]
    metrics = folder.read_json(METRICS_FILE)
    with np.load(folder.file("samples.npz")) as z:
        per_sample = {k: z[k] for k in z.files}
    short = {k: v for k, v in metrics.items() if k not in ("loss_history", "provenance", "rules")}
    return write_run_report(folder.file("report.pdf"), {**config, "n": config["num_train"]}, short,
                            metrics.get("provenance", {}), read_csv(folder.file("per_sigma.csv")), per_sample)


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
            training = train_members([cfg], [train], folder, resume, dev, progress=progress, deadline=deadline)
            if not training.complete:
                return RunResult(folder.path, {}, [], reused=False, complete=False,
                                 resumed_at_step=training.resumed_at_step)
            metrics = finish_cell(folder, cfg, training.denoiser.member(0), mol, train, dev,
                                  training.member_record(0), report=report, progress=progress)
        return RunResult(folder.path, metrics, read_csv(folder.file("per_sigma.csv")), reused=False,
                         resumed_at_step=training.resumed_at_step)
    if report and not folder.has("report.pdf"):
        write_report(folder.path)
    return RunResult(folder.path, folder.read_json(METRICS_FILE),
                     read_csv(folder.file("per_sigma.csv")), reused=True)

"""Training a group of cells as the members of one model, with the training-time axis.

The group trains in segments that end at the steps of :meth:`~.config.ScoreMatchConfig.eval_schedule`. At the end
of each segment every member's EMA weights are judged at once on its verdict plan
(:func:`mogsim.metrics.molrg_verdict.judge_members`: net forward passes only, all members in one batch), and the
key numbers go into ``time_axis.csv`` of the group folder, one row per (member, step). The last point is the budget:
its judgement is each cell's verdict. Intermediate points are evaluated only while their measured cost stays within
``eval_cost_cap`` of the (projected) training time: the first is always measured, a later one is skipped when
evaluating it would push the total past the cap; evaluated and skipped steps and every cost are recorded in
``time_axis.json``. A checkpoint is written at the end of every segment (and every 10% of the steps), so a run
stopped anywhere resumes where it stopped, with the rows already written, and ends as an uninterrupted run would.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from ...denoiser import Advance, ProgressFactory
from ...devices import float32_precision
from ...metrics.molrg_verdict import Judgement, VerdictPlan, judge_members
from ...nets import PreconditionedDenoiser
from ...progress import silent
from ...runs import RunFolder, read_csv
from ...training import DistContext, RuntimeOptions, Trainer
from .config import ScoreMatchConfig, training_config
from .evaluation import verdict_numbers

#: the group's rows (all members, column ``member``) and its cost record; each cell gets ``time.csv`` (its rows)
GROUP_TIME_FILE = "time_axis.csv"
TIME_STATE_FILE = "time_axis.json"
TIME_FILE = "time.csv"
#: loss rows per run (every LOG_EVERY steps) and periodic checkpoints per run (every 10% of the steps)
LOG_EVERY = 50
CHECKPOINTS_PER_RUN = 10
#: The verdict numbers each time row keeps.
TIME_KEYS = ("verdict", "kappa", "copy_fraction_net", "copy_fraction_true", "rp_net_true", "rp_net_empirical",
             "on_subspace_fraction_net", "worst_rel_true_fresh", "worst_rel_true_train", "worst_rel_empirical_train")


def time_row(cfg: ScoreMatchConfig, step: int, detail: dict[str, Any]) -> dict[str, Any]:
    """One row of the training-time axis: the cell, the step and the verdict's key numbers there."""
    numbers = verdict_numbers(detail)
    return {"width": cfg.width, "rank": cfg.rank, "n": cfg.num_train, "seed": cfg.seed, "step": step,
            **{k: numbers[k] for k in TIME_KEYS}}


@dataclass
class Training:
    """The EMA denoiser of a trained (or partly trained) group, what its training recorded and its time axis."""

    denoiser: PreconditionedDenoiser
    complete: bool
    resumed_at_step: int | None
    summary: dict[str, Any]
    history: list[list[float]]
    #: time-axis rows of every member (column ``member``), oldest step first
    rows: list[dict[str, Any]] = field(default_factory=list)
    #: the schedule, what was evaluated or skipped, and the costs
    time_axis: dict[str, Any] = field(default_factory=dict)
    #: each member's judgement at the budget (None without plans or while incomplete)
    final: list[Judgement] | None = None

    def member_record(self, m: int) -> dict[str, Any]:
        """Member ``m``'s training record: steps, seconds, first and last logged loss, loss history."""
        rows = [[row[0], row[1 + m]] for row in self.history]
        return {"steps_done": self.summary["steps"], "seconds": self.summary["wall_s"],
                "resumed_at_step": self.resumed_at_step, "members": self.denoiser.members,
                "loss_first": rows[0][1] if rows else float("nan"),
                "loss_last": rows[-1][1] if rows else float("nan"), "loss_history": rows}

    def member_rows(self, m: int) -> list[dict[str, Any]]:
        """Member ``m``'s time-axis rows (without the ``member`` column)."""
        return [{k: v for k, v in r.items() if k != "member"} for r in self.rows if int(r["member"]) == m]


class _OneBar:
    """One progress task for all segments of a training (the trainer starts a task per :meth:`Trainer.fit`)."""

    def __init__(self, progress: ProgressFactory, description: str, total: int, done: int) -> None:
        self.advance = progress(description, total)
        self.done = done
        if done:
            self.advance(done)

    def factory(self, start: int) -> ProgressFactory:
        def make(description: str, total: int) -> Advance:
            catch_up = start > 0  # Trainer.fit first reports the steps already done

            def advance(steps: int, /, note: str | None = None) -> None:
                nonlocal catch_up
                if catch_up:
                    catch_up = False
                    steps = max(0, steps - self.done)
                self.done += steps
                if steps or note is not None:
                    self.advance(steps, note)
            return advance
        return make


def _batched(denoiser: PreconditionedDenoiser):  # -> BatchedDenoise
    """The EMA denoiser as ``(x (M, B, n), sigma (M, B)) -> (M, B, n)`` for any number of members."""
    if denoiser.members > 1:
        return denoiser.denoise
    return lambda x, sigma: denoiser.denoise(x[0], sigma[0])[None]


class _TimeAxis:
    """The rows and the cost record of a group's time axis, kept in its folder (rewritten atomically)."""

    def __init__(self, folder: RunFolder, cfgs: Sequence[ScoreMatchConfig], resumed_step: int | None,
                 plan_seconds: float) -> None:
        self.folder, self.cfgs = folder, cfgs
        first = cfgs[0]
        self.state: dict[str, Any] = {"schedule": first.eval_schedule(), "cap": first.eval_cost_cap,
                                      "evaluated": [], "skipped": [], "missed": [], "point_seconds": [],
                                      "train_seconds": 0.0, "trained_steps": 0, "plan_seconds": 0.0,
                                      "final_seconds": None}
        self.rows: list[dict[str, Any]] = []
        if resumed_step is not None and folder.has(TIME_STATE_FILE) and folder.has(GROUP_TIME_FILE):
            self.state.update(folder.read_json(TIME_STATE_FILE))
            self.rows = [r for r in read_csv(folder.file(GROUP_TIME_FILE)) if int(r["step"]) <= resumed_step]
            self.state["evaluated"] = [s for s in self.state["evaluated"] if s <= resumed_step]
        self.state["plan_seconds"] += plan_seconds

    def done(self, step: int) -> bool:
        return step in self.state["evaluated"]

    def trained(self, summary: dict[str, Any]) -> None:
        self.state["train_seconds"] += float(summary["wall_s"])
        self.state["trained_steps"] += int(summary["steps_this_launch"])

    def affordable(self) -> bool:
        """Whether one more intermediate point keeps the evaluation cost within the cap (the first is measured)."""
        costs = self.state["point_seconds"]
        if not costs:
            return True
        steps = max(self.state["trained_steps"], 1)
        projected = self.state["train_seconds"] / steps * self.cfgs[0].steps
        return sum(costs) + sum(costs) / len(costs) <= self.state["cap"] * projected

    def add(self, step: int, judged: Sequence[Judgement], seconds: float, *, final: bool = False) -> None:
        self.rows += [{"member": m, **time_row(cfg, step, j.detail)} for m, (cfg, j) in
                      enumerate(zip(self.cfgs, judged, strict=True))]
        self.state["evaluated"].append(step)
        if final:
            self.state["final_seconds"] = seconds
        else:
            self.state["point_seconds"].append(seconds)
        self.save()

    def save(self) -> None:
        self.folder.write_csv(GROUP_TIME_FILE, self.rows)
        self.folder.write_json(TIME_STATE_FILE, self.state)

    def record(self) -> dict[str, Any]:
        """The time axis's record: schedule, steps evaluated / skipped for the cap / missed, costs, the rule."""
        s = self.state
        extra = sum(s["point_seconds"])
        return {**s, "intermediate_seconds": extra,
                "extra_fraction": extra / s["train_seconds"] if s["train_seconds"] > 0 else None,
                "rule": (f"EMA weights judged at the scheduled steps (eval_steps log-spaced from steps/1000 to the "
                         f"budget); an intermediate step is skipped when its evaluation would bring the evaluations' "
                         f"time above {s['cap']:g} x the projected training time (the first is always measured); "
                         "the budget's point is the run's verdict")}


def make_trainer(cfgs: Sequence[ScoreMatchConfig], sets: Sequence[torch.Tensor], device: torch.device,
                 resume: Path | None) -> tuple[Trainer, int | None]:
    """The engine for ``cfgs`` as the members of one model, resumed from ``resume`` when given."""
    steps = cfgs[0].steps
    runtime = RuntimeOptions(checkpoint_every=max(1, steps // CHECKPOINTS_PER_RUN), keep_checkpoints=1,
                             log_every=LOG_EVERY, progress="none")
    trainer = Trainer(training_config(cfgs), [s.to(torch.float32) for s in sets], runtime=runtime,
                      ctx=DistContext(device=device))
    if resume is None:
        return trainer, None
    trainer.resume(resume)
    return trainer, trainer.step


def train_members(cfgs: Sequence[ScoreMatchConfig], sets: Sequence[torch.Tensor], folder: RunFolder,
                  resume: Path | None, device: torch.device, *, plans: Sequence[VerdictPlan] | None = None,
                  progress: ProgressFactory = silent, deadline: float | None = None,
                  description: str = "training") -> Training:
    """Train ``cfgs`` on their training ``sets`` as the members of one model in ``folder`` (resuming from
    ``resume``), to the budget or the ``deadline``. With ``plans`` (one verdict plan per member) the members are
    judged along the training-time axis, and at the budget (:attr:`Training.final`)."""
    trainer, resumed = make_trainer(cfgs, sets, device, resume)
    total = cfgs[0].steps
    if resumed is not None:
        description += f" (resumed at step {resumed})"
    bar = _OneBar(progress, description, total, trainer.step)
    axis = _TimeAxis(folder, cfgs, resumed, sum(p.seconds for p in plans) if plans else 0.0)
    schedule = axis.state["schedule"] if plans else [total]
    start, launch_seconds = trainer.step, 0.0
    summary: dict[str, Any] = {}

    def result(complete: bool, final: list[Judgement] | None = None) -> Training:
        totals = {**summary, "wall_s": launch_seconds, "steps_this_launch": trainer.step - start}
        return Training(trainer.ema_denoiser(), complete, resumed, totals, trainer.history, axis.rows,
                        axis.record() if plans else {}, final)

    for step in schedule:
        final = step == total
        if not final and (axis.done(step) or not plans):
            continue
        if step < trainer.step:  # passed while the axis was not being recorded (resumed from a later checkpoint)
            axis.state["missed"].append(step)
            continue
        if deadline is not None and time.monotonic() >= deadline and trainer.step > start:
            return result(False)  # out of time at a segment's end: its checkpoint and rows are written
        summary = trainer.fit(step, folder.path, progress=bar.factory(trainer.step), deadline=deadline,
                              description=description)
        axis.trained(summary)
        launch_seconds += summary["wall_s"]
        if not summary["complete"]:
            if plans:
                axis.save()
            return result(False)
        if not plans:
            continue
        if not final and not axis.affordable():
            axis.state["skipped"].append(step)
            axis.save()
            continue
        t0 = time.monotonic()
        with float32_precision(False):  # cuDNN convolutions (the UNet's) default to TF32 on CUDA
            judged = judge_members(plans, _batched(trainer.ema_denoiser()))
        if final:
            axis.rows = [r for r in axis.rows if int(r["step"]) != step]
            axis.state["evaluated"] = [s for s in axis.state["evaluated"] if s != step]
        axis.add(step, judged, time.monotonic() - t0, final=final)
        if final:
            return result(True, judged)
    return result(True)

"""A sweep of score-matching runs over the width, the rank r and the training-set size N: the phase diagram of
paper 1, Fig. 5, along training time too.

The cells (width, r, N, seed) share every other setting of a base :class:`ScoreMatchConfig`. The cells of one
training recipe (width, steps) are trained together as the members of one model (up to ``group_size`` members each;
0 = all of them), which keeps a GPU busy: a batched MLP, or a MemberList of UNets (one CUDA graph per member, on its
own stream). Each member trains exactly as a model alone would (own data, own loss, own gradient clipping,
element-wise Adam) but draws its random numbers and initial weights from the group's shared generator. Every group
is judged along training time (:mod:`.timeline`).

**Shards.** ``shard = (i, M)`` makes this process train only the groups g with ``g % M == i``: M processes (one
per GPU, say) share the grid without talking to each other. Groups never depend on M, so the cells come out exactly
as one process would train them; whoever finishes last (or any later call) merges every finished cell into the
combined results.

Layout under ``<out>/<sweep slug>-<key>/`` (each folder a :class:`mogsim.runs.RunFolder`): ``config.json``;
``groups/gNN/`` (the group's training: checkpoints, ``log.csv``, ``time_axis.csv``, ``time_axis.json``,
``training.json``); ``cells/<cell slug>-<key>/`` (each a run folder with ``metrics.json``, ``per_sigma.csv``,
``time.csv``, ``samples.npz``); and the combined results ``sweep_table.csv``, ``sweep_per_sigma.csv``,
``sweep_time.csv``, ``sweep_metrics.json`` (N*(r) under every measure and the time-axis events, with intervals and
fits, and the paper's claims judged by stated rules), ``sweep_fig5.png``, ``sweep_time.png`` and
``sweep_report.pdf``. Re-running the same sweep skips finished groups and cells and resumes an interrupted group.
:func:`export_compact` copies the combined results (at most 11 files) into one flat folder. A sweep over ``nk_over_d``
also writes paper 2's collapse (:mod:`mogsim.analysis.collapse`): ``sweep_collapse.json`` (GL and the on-subspace
fraction against N_k / d per d and pooled, the N_k / d where GL reaches 0.9, the same at every evaluated step),
``sweep_collapse.csv`` and the figure ``sweep_collapse.png`` / ``.pdf``.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from ...analysis import (DEFAULT_MEASURES, VERDICT_MEASURES, analyse, analyse_time, collapse, collapse_over_time,
                         collapse_table, with_fixed_position)
from ...denoiser import ProgressFactory
from ...devices import resolve_device
from ...errors import InputError
from ...metrics.molrg_verdict import RULE as VERDICT_RULE
from ...progress import silent
from ...provenance import provenance
from ...io import write_json
from ...runs import RunFolder, make_folder, read_csv, write_csv
from .claims import collapse_claims, paper_claims
from .config import ScoreMatchConfig, SweepConfig, training_config
from .evaluation import build_plan
from .run import METRICS_FILE, RUN_KIND, finish_cell, launch_record, make_problem, write_report
from .timeline import GROUP_TIME_FILE, TIME_FILE, train_members

SWEEP_KIND = "mogsim-score-match-sweep"
GROUP_KIND = "mogsim-score-match-group"
TRAINING_FILE = "training.json"
SWEEP_METRICS = "sweep_metrics.json"
SWEEP_REPORT = "sweep_report.pdf"
#: paper 2's collapse (sweeps over ``nk_over_d``): crossings and curves, final and along training time
COLLAPSE_JSON, COLLAPSE_CSV, COLLAPSE_FIGURES = "sweep_collapse.json", "sweep_collapse.csv", ("sweep_collapse.png",
                                                                                             "sweep_collapse.pdf")
#: Files :func:`export_compact` copies.
COMPACT_FILES = ("sweep_table.csv", "sweep_per_sigma.csv", "sweep_time.csv", SWEEP_METRICS, "sweep_fig5.png",
                 "sweep_time.png", SWEEP_REPORT, COLLAPSE_JSON, COLLAPSE_CSV, *COLLAPSE_FIGURES)
#: Columns of the sweep table (besides width, rank, n = N and seed): the verdict's numbers, then L_score.
TABLE_KEYS = ("verdict", "kappa", "copy_fraction_net", "copy_fraction_true", "copy_fraction_empirical",
              "on_subspace_fraction_net", "rp_net_true", "rp_net_empirical", "worst_rel_true_fresh",
              "worst_rel_true_train", "worst_rel_empirical_train", "median_rel_distance_net_true",
              "median_rel_distance_net_empirical", "l_score_true_band", "l_score_empirical_band", "l_score_true",
              "l_score_empirical", "l_score_true_train_queries", "l_score_empirical_train_queries")
#: Bootstrap resamples of the stored analyses.
RESAMPLES = 1000
#: Seconds a call waits for another process to finish writing the combined results.
COMBINE_WAIT_S = 120.0


@dataclass
class SweepResult:
    """What :func:`run_sweep` returns."""

    path: Path
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    complete: bool
    cells_done: int = 0
    cells_total: int = 0
    reused_cells: int = 0
    timing: dict[str, float] = field(default_factory=dict)
    #: this call finished every group it was given (all of them, or its shard's)
    own_groups_done: bool = True


def _cell_folder(root: Path, cfg: ScoreMatchConfig, device: torch.device) -> RunFolder:
    return RunFolder.keyed(root / "cells", cfg.slug(), cfg.resolved(device), kind=RUN_KIND)


def _out_of_time(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def shard_groups(count: int, shard: tuple[int, int] | None) -> list[int]:
    """The indices of the training groups shard ``(i, M)`` trains: every M-th, starting at i (all without one)."""
    if shard is None:
        return list(range(count))
    index, shards = shard
    if shards > count:
        raise InputError(f"shard={index}/{shards}: the sweep has {count} training group(s), fewer than {shards} "
                         "shards; lower group_size so that every shard gets a group", parameter=("shard", "group_size"))
    return list(range(index, count, shards))


def run_sweep(sweep: SweepConfig, out: Any, *, device: str | torch.device = "auto", report: bool = True,
              progress: ProgressFactory = silent, deadline: float | None = None,
              shard: tuple[int, int] | None = None) -> SweepResult:
    """Train and evaluate every cell of this shard's groups (resuming), then write the combined table, time axis,
    analyses, figures and report from every finished cell."""
    sweep.check()
    dev = resolve_device(device)
    root = RunFolder.keyed(out, sweep.slug(), sweep.resolved(dev), kind=SWEEP_KIND)
    groups = sweep.groups()
    mine = shard_groups(len(groups), shard)
    t_start = time.monotonic()
    train_s = eval_s = 0.0
    reused, complete, worked = 0, True, False
    launch = {**launch_record(dev), "shard": list(shard) if shard else None}
    with root.session({"config": sweep.resolved(dev), "provenance": provenance(dev)}, launch=launch):
        pass  # config.json and this launch are recorded; groups and cells hold their own locks
    for gi in mine:
        group = groups[gi]
        cells = [_cell_folder(root.path, c, dev) for c in group]
        if all(c.has(METRICS_FILE) for c in cells):
            reused += len(group)
            continue
        worked = True
        t0 = time.monotonic()
        problems = [make_problem(c) for c in group]
        folder = RunFolder(root.path / "groups" / f"g{gi:02d}", kind=GROUP_KIND)
        record = {"cells": [c.key for c in cells], "train": training_config(group).to_dict()}
        with folder.session(record, compared=("cells", "train"), launch=launch_record(dev)) as resume:
            plans = [build_plan(c, mol, train, dev) for c, (mol, train) in zip(group, problems)]
            training = train_members(group, [p[1] for p in problems], folder, resume, dev, plans=plans,
                                     progress=progress, deadline=deadline,
                                     description=f"training group {gi + 1}/{len(groups)} ({len(group)} models)")
            if training.complete and training.summary["steps_this_launch"]:
                folder.write_json(TRAINING_FILE, {**training.summary, "members": len(group),
                                                  "time_axis": training.time_axis})
            train_s += time.monotonic() - t0
            if not training.complete or training.final is None:
                complete = False
                break
            t0 = time.monotonic()
            advance = progress(f"evaluating group {gi + 1}/{len(groups)}", len(group))
            for m, (cfg, cell, (mol, train)) in enumerate(zip(group, cells, problems)):
                if cell.has(METRICS_FILE):
                    reused += 1
                else:  # even past the deadline: a trained group's cells cost seconds, its training minutes
                    with cell.session({"config": cfg.resolved(dev), "provenance": provenance(dev)},
                                      launch=launch_record(dev)):
                        finish_cell(cell, cfg, training.denoiser.member(m), mol, train, dev,
                                    training.member_record(m), training.final[m], training.member_rows(m),
                                    training.time_axis, report=False, figure=False,
                                    extra={"sweep_group": gi, "sweep_member": m, "sweep_key": root.key})
                advance(1)
            eval_s += time.monotonic() - t0
        if not complete or (_out_of_time(deadline) and gi != mine[-1]):
            complete = False
            break
    with _combining(root):
        metrics_path = root.file(SWEEP_METRICS)
        if not worked and metrics_path.exists() and (not report or root.has(SWEEP_REPORT)):
            summary = json.loads(metrics_path.read_text())  # nothing new: keep the combined results as they are
            if summary.get("cells_done") == len(sweep.cells()):
                rows = summary.get("table", [])
                return SweepResult(root.path, rows, summary, True, cells_done=len(rows),
                                   cells_total=len(sweep.cells()), reused_cells=reused,
                                   timing={"this_call_seconds": time.monotonic() - t_start}, own_groups_done=complete)
        rows, per_sigma, time_rows = collect(sweep, root.path, dev)
        timing = {"this_call_seconds": time.monotonic() - t_start, "train_seconds_this_call": train_s,
                  "eval_seconds_this_call": eval_s}
        summary = write_combined(sweep, root, dev, rows, per_sigma, time_rows, timing, report=report)
    return SweepResult(root.path, rows, summary, complete and summary["complete"], cells_done=len(rows),
                       cells_total=len(sweep.cells()), reused_cells=reused, timing=timing, own_groups_done=complete)


class _combining:
    """Hold the sweep folder's lock while writing the combined results, waiting for a shard that is writing."""

    def __init__(self, root: RunFolder) -> None:
        self.root = root
        self._cm: Any = None

    def __enter__(self) -> None:
        waited_until = time.monotonic() + COMBINE_WAIT_S
        while True:
            self._cm = self.root.locked()
            try:
                self._cm.__enter__()
                return
            except InputError:
                if time.monotonic() >= waited_until:
                    raise
                time.sleep(0.5)

    def __exit__(self, *exc: Any) -> None:
        self._cm.__exit__(*exc)


# -- combining ---------------------------------------------------------------------------------------------------------
def collect(sweep: SweepConfig, root: Path, device: torch.device
            ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The finished cells' table rows, per-sigma rows and time-axis rows (column ``n`` is N)."""
    rows, per_sigma, time_rows = [], [], []
    for cfg in sweep.cells():
        folder = _cell_folder(root, cfg, device)
        if not folder.has(METRICS_FILE):
            continue
        m = folder.read_json(METRICS_FILE)
        cell = {"width": cfg.width, "rank": cfg.rank, "n": cfg.num_train, "seed": cfg.seed}
        row: dict[str, Any] = {**cell, **{k: m.get(k) for k in TABLE_KEYS}}
        row["steps"] = cfg.steps
        row["train_loss_last"] = m.get("training", {}).get("loss_last")
        row["epochs"] = m.get("budget", {}).get("epochs")
        rows.append(row)
        per_sigma += [{**cell, **r} for r in read_csv(folder.file("per_sigma.csv"))]
        time_rows += read_csv(folder.file(TIME_FILE))
    return with_fixed_position(rows, per_sigma), per_sigma, time_rows


def analyses(rows: Sequence[dict[str, Any]], time_rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per width: N*(r) under every measure (:func:`mogsim.analysis.analyse`) and the time-axis events
    (:func:`mogsim.analysis.analyse_time`), with intervals and fits; JSON-ready."""
    out: dict[str, Any] = {}
    for width in sorted({int(r["width"]) for r in rows}):
        mine = [r for r in rows if int(r["width"]) == width]
        times = [r for r in time_rows if int(float(r["width"])) == width]
        out[str(width)] = {"n_star": analyse(mine, (*DEFAULT_MEASURES, *VERDICT_MEASURES), resamples=RESAMPLES),
                           "time": analyse_time(times, resamples=RESAMPLES) if times else None}
    return {"by_width": out}


def write_combined(sweep: SweepConfig, root: RunFolder, device: torch.device, rows: list[dict[str, Any]],
                   per_sigma: list[dict[str, Any]], time_rows: list[dict[str, Any]], timing: dict[str, float], *,
                   report: bool) -> dict[str, Any]:
    """Write the tables, the metrics JSON (analyses, claims), the figures and (optionally) the PDF report."""
    stored = root.read_config() or {}
    records = [RunFolder(g).read_json(TRAINING_FILE) for g in sorted((root.path / "groups").glob("g*"))
               if (g / TRAINING_FILE).exists()]
    axis = [r.get("time_axis", {}) for r in records]
    base = sweep.base
    found = analyses(rows, time_rows) if rows else {"by_width": {}}
    summary = {
        "complete": len(rows) == len(sweep.cells()),
        "cells_done": len(rows), "cells_total": len(sweep.cells()),
        "config": sweep.resolved(device),
        "budget": {"steps": base.steps if base.budget_per_sample is None else None, "batch": base.batch,
                   "budget_per_sample": base.budget_per_sample,
                   "samples_seen_per_model": base.steps * base.batch if base.budget_per_sample is None else None,
                   "convention": base.budget()["convention"]},
        "analysis": found,
        "paper_claims": paper_claims(rows, found),
        "timing": {**timing, "train_seconds_total": float(sum(a.get("train_seconds", 0.0) for a in axis)),
                   "time_axis_seconds_total": float(sum(a.get("intermediate_seconds", 0.0) for a in axis)),
                   "time_axis_extra_fraction": [a.get("extra_fraction") for a in axis],
                   "time_axis_skipped_steps": [a.get("skipped", []) for a in axis],
                   "groups": len(sweep.groups())},
        "rules": {"verdict": VERDICT_RULE, "n_star": _stored_rule(found, "n_star"),
                  "time": _stored_rule(found, "time")},
        "provenance_first_call": stored.get("provenance"),
        "provenance": provenance(device),
        "notes": [
            f"Budget: {base.budget()['convention']}; a longer budget moves the transition to larger N. Column n is N "
            "(num_train); copy_fraction_true is the true sampler's own copy rate (chance), kappa the net's copies "
            "net of it. The verdict and the time axis judge the EMA weights.",
        ],
        "table": rows,
    }
    write_csv(root.file("sweep_table.csv"), rows)
    write_csv(root.file("sweep_per_sigma.csv"), per_sigma)
    write_csv(root.file("sweep_time.csv"), time_rows)
    if sweep.nk_over_d is not None:
        final = write_collapse(root.path, summary, [*time_rows, *_unfinished_time_rows(root.path, rows)])["final"]
        summary["paper_claims"] += collapse_claims(final, summary["budget"]["samples_seen_per_model"])
        summary["collapse"] = {"file": COLLAPSE_JSON, "level": final["level"],
                               "crossing_per_d": {d: c["crossing"] for d, c in final["per_d"].items()},
                               "crossing_pooled": (final["pooled"] or {}).get("crossing")}
    summary["figures"] = draw_sweep(root.path, summary, time_rows) if rows else "no finished cells yet"
    root.write_json(SWEEP_METRICS, summary)
    if report and rows:
        summary["report"] = _report(root.path)
    return summary


def _cell_key(row: dict[str, Any]) -> tuple[int, int, int, int]:
    """(width, rank, N, seed) of a table or time-axis row (CSV strings or numbers)."""
    return int(float(row["width"])), int(float(row["rank"])), int(float(row["n"])), int(float(row["seed"]))


def _unfinished_time_rows(root: Path, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Time-axis rows of cells whose group stopped before the budget (from the groups' ``time_axis.csv``), so that
    a sweep stopped by its time limit still shows them along training time."""
    done = {_cell_key(r) for r in rows}
    out = []
    for path in sorted(Path(root).glob(f"groups/g*/{GROUP_TIME_FILE}")):
        for r in read_csv(path):
            if _cell_key(r) not in done:
                out.append({k: v for k, v in r.items() if k != "member"})
    return out


def write_collapse(folder: Path, summary: dict[str, Any], time_rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Write paper 2's collapse (:func:`mogsim.analysis.collapse` of the sweep table, and along training time from
    ``time_rows``) as ``sweep_collapse.json`` and ``sweep_collapse.csv`` in ``folder``; returns what it wrote."""
    base = summary.get("config", {}).get("base", {})
    components, batch = int(base.get("components", 2)), int(base.get("batch", 1))
    finished = {_cell_key(r) for r in summary.get("table", [])}
    result = {"final": collapse(summary.get("table", []), components),
              "over_time": collapse_over_time(time_rows, components, batch),
              "cells_finished": len(finished),
              "cells_only_on_the_time_axis": len({_cell_key(r) for r in time_rows} - finished),
              "copy_ratio": base.get("copy_ratio"), "subspace_tol": base.get("subspace_tol"),
              "nk_over_d": summary.get("config", {}).get("nk_over_d"), "budget": summary.get("budget")}
    write_json(Path(folder) / COLLAPSE_JSON, result)
    write_csv(Path(folder) / COLLAPSE_CSV, collapse_table(result["final"]))
    return result


def _stored_rule(found: dict[str, Any], key: str) -> str | None:
    """The rule text an analysis stored (the same for every width)."""
    for entry in found["by_width"].values():
        if entry.get(key):
            return entry[key]["rule"]
    return None


def _report(folder: Path) -> str:
    try:
        write_report(folder, SWEEP_REPORT)
    except ImportError as exc:
        return f"not written ({exc}); write it later with: mogsim report {folder} --out {folder / SWEEP_REPORT}"
    return "written"


def draw_sweep(folder: Path, summary: dict[str, Any], time_rows: Sequence[dict[str, Any]] = ()) -> str:
    """Write ``sweep_fig5.png`` (and ``sweep_time.png`` with time rows, the collapse figures when ``folder`` holds
    ``sweep_collapse.json``) into ``folder`` from a sweep summary (the contents of ``sweep_metrics.json``, whose
    ``table`` holds the rows). Without matplotlib (e.g. on a bare GPU
    image) it draws nothing and says how to draw later; returns that status line."""
    try:  # matplotlib is optional where sweeps run: import it only to draw
        from ...report.figures import collapse_figure, phase_figure, sweep_figure, verdict_panels
    except ImportError as exc:
        return (f"not drawn ({exc}); draw them later with: python scripts/score_match_sweep.py --redraw FOLDER "
                "(FOLDER holds sweep_metrics.json and sweep_time.csv)")
    rows = summary.get("table", [])
    base = summary.get("config", {}).get("base", {})
    width = str(min(int(float(r["width"])) for r in rows))  # one width per figure: the smallest
    title = (f"score matching on MoLRG: K={base.get('components')}, n={base.get('dim')}, {base.get('arch')} width "
             f"{width}; {summary.get('budget', {}).get('convention')}")
    mine = [r for r in rows if str(int(float(r["width"]))) == width]
    sweep_figure(mine, verdict_panels(summary.get("analysis"), width), title).savefig(
        Path(folder) / "sweep_fig5.png", dpi=120)
    if time_rows:
        phase_figure(time_rows, summary.get("analysis"), title).savefig(Path(folder) / "sweep_time.png", dpi=120)
    if (Path(folder) / COLLAPSE_JSON).exists():
        found = json.loads((Path(folder) / COLLAPSE_JSON).read_text())
        fig = collapse_figure(found["final"], found["over_time"], title)
        for name in COLLAPSE_FIGURES:
            fig.savefig(Path(folder) / name, dpi=200)
    return "drawn"


def export_compact(root: Path, dest: Any) -> list[Path]:
    """Copy the combined results (:data:`COMPACT_FILES` that exist) into ``dest`` (flat); return the copies."""
    dest_dir = make_folder(dest, parameter="export")
    out = []
    for name in COMPACT_FILES:
        src = Path(root) / name
        if src.exists():
            shutil.copyfile(src, dest_dir / name)
            out.append(dest_dir / name)
    return out

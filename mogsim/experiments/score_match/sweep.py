"""A sweep of score-matching runs over the rank r and the training-set size N: the phase diagram of paper 1, Fig. 5.

The cells (r, N, seed) share every other setting of a base :class:`ScoreMatchConfig`. With ``arch = mlp`` the cells
are trained together as the members of one batched MLP (up to ``group_size`` members each; 0 = all cells at once),
which keeps a GPU busy; each member trains exactly as a model alone would (own data, own loss, own gradient
clipping, element-wise Adam) but draws its random numbers from the group's shared generator. ``arch = unet`` trains
one cell at a time.

Layout under ``<out>/<sweep slug>-<key>/`` (each folder a :class:`mogsim.runs.RunFolder`): ``config.json``;
``groups/gNN/`` (the group's training: checkpoints, ``log.csv``, ``training.json``); ``cells/<cell slug>-<key>/``
(each a run folder with ``metrics.json``, ``per_sigma.csv``, ``samples.npz``); and the combined results
``sweep_table.csv``, ``sweep_per_sigma.csv``, ``sweep_metrics.json``, ``sweep_fig5.png`` / ``.pdf`` and
``sweep_report.pdf``. Re-running the same sweep skips finished groups and cells and resumes an interrupted group.
:func:`export_compact` copies the combined results (at most 6 files) into one flat folder.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ...denoiser import ProgressFactory
from ...devices import resolve_device
from ...progress import silent
from ...provenance import provenance
from ...runs import RunFolder, make_folder, read_csv, write_csv
from .config import ScoreMatchConfig, SweepConfig, training_config
from .run import METRICS_FILE, RUN_KIND, finish_cell, launch_record, make_problem, train_members

SWEEP_KIND = "mogsim-score-match-sweep"
GROUP_KIND = "mogsim-score-match-group"
TRAINING_FILE = "training.json"
#: Files :func:`export_compact` copies.
COMPACT_FILES = ("sweep_table.csv", "sweep_per_sigma.csv", "sweep_metrics.json", "sweep_fig5.png", "sweep_fig5.pdf",
                 "sweep_report.pdf")
#: Columns of the sweep table (besides rank, n = N and seed).
TABLE_KEYS = ("l_score_true", "l_score_empirical", "l_score_true_band", "l_score_empirical_band",
              "l_score_true_train_queries", "l_score_empirical_train_queries", "generalization_index",
              "decisive_levels", "copy_fraction_net", "copy_fraction_empirical", "copy_fraction_true",
              "on_subspace_fraction_net", "on_subspace_fraction_empirical", "on_subspace_fraction_true",
              "rp_net_empirical", "rp_net_true", "median_rel_distance_net_empirical", "median_rel_distance_net_true",
              "verdict")


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


def _cell_folder(root: Path, cfg: ScoreMatchConfig, device: torch.device) -> RunFolder:
    return RunFolder.keyed(root / "cells", cfg.slug(), cfg.resolved(device), kind=RUN_KIND)


def _out_of_time(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def run_sweep(sweep: SweepConfig, out: Any, *, device: str | torch.device = "auto", report: bool = True,
              progress: ProgressFactory = silent, deadline: float | None = None) -> SweepResult:
    """Train and evaluate every cell (resuming), then write the combined table, figure, transition and report."""
    sweep.check()
    dev = resolve_device(device)
    root = RunFolder.keyed(out, sweep.slug(), sweep.resolved(dev), kind=SWEEP_KIND)
    t_start = time.monotonic()
    train_s = eval_s = 0.0
    reused, complete = 0, True
    groups = sweep.groups()
    with root.session({"config": sweep.resolved(dev), "provenance": provenance(dev)}, launch=launch_record(dev)):
        for gi, group in enumerate(groups):
            cells = [_cell_folder(root.path, c, dev) for c in group]
            if all(c.has(METRICS_FILE) for c in cells):
                reused += len(group)
                continue
            t0 = time.monotonic()
            problems = [make_problem(c) for c in group]
            folder = RunFolder(root.path / "groups" / f"g{gi:02d}", kind=GROUP_KIND)
            record = {"cells": [c.key for c in cells], "train": training_config(group).to_dict()}
            with folder.session(record, compared=("cells", "train"), launch=launch_record(dev)) as resume:
                training = train_members(group, [p[1] for p in problems], folder, resume, dev, progress=progress,
                                         deadline=deadline,
                                         description=f"training group {gi + 1}/{len(groups)} ({len(group)} models)")
                if training.complete and training.summary["steps_this_launch"]:
                    folder.write_json(TRAINING_FILE, {**training.summary, "members": len(group)})
            train_s += time.monotonic() - t0
            if not training.complete:
                complete = False
                break
            t0 = time.monotonic()
            advance = progress(f"evaluating group {gi + 1}/{len(groups)}", len(group))
            for m, (cfg, cell, (mol, train)) in enumerate(zip(group, cells, problems)):
                if cell.has(METRICS_FILE):
                    reused += 1
                elif _out_of_time(deadline):
                    complete = False
                    break
                else:
                    with cell.session({"config": cfg.resolved(dev), "provenance": provenance(dev)},
                                      launch=launch_record(dev)):
                        finish_cell(cell, cfg, training.denoiser.member(m), mol, train, dev,
                                    training.member_record(m), report=False, figure=False,
                                    extra={"sweep_group": gi, "sweep_member": m, "sweep_key": root.key})
                advance(1)
            eval_s += time.monotonic() - t0
            if not complete or (_out_of_time(deadline) and gi + 1 < len(groups)):
                complete = False
                break
        metrics_path = root.file("sweep_metrics.json")
        if (complete and reused == len(sweep.cells()) and metrics_path.exists()
                and (not report or root.has("sweep_report.pdf"))):
            summary = json.loads(metrics_path.read_text())  # nothing new: keep the combined results as they are
            rows = summary.get("table", [])
            return SweepResult(root.path, rows, summary, True, cells_done=len(rows), cells_total=len(sweep.cells()),
                               reused_cells=reused, timing={"this_call_seconds": time.monotonic() - t_start})
        rows, per_sigma = collect(sweep, root.path, dev)
        timing = {"this_call_seconds": time.monotonic() - t_start, "train_seconds_this_call": train_s,
                  "eval_seconds_this_call": eval_s}
        summary = write_combined(sweep, root, dev, rows, per_sigma, timing, complete=complete, report=report)
    return SweepResult(root.path, rows, summary, complete, cells_done=len(rows), cells_total=len(sweep.cells()),
                       reused_cells=reused, timing=timing)


# -- combining ---------------------------------------------------------------------------------------------------------
def collect(sweep: SweepConfig, root: Path, device: torch.device) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The finished cells' table rows and per-sigma rows (column ``n`` is N)."""
    rows, per_sigma = [], []
    for cfg in sweep.cells():
        folder = _cell_folder(root, cfg, device)
        if not folder.has(METRICS_FILE):
            continue
        m = folder.read_json(METRICS_FILE)
        detail = m.get("verdict_detail", {})
        row: dict[str, Any] = {"rank": cfg.rank, "n": cfg.num_train, "seed": cfg.seed}
        for k in TABLE_KEYS:
            row[k] = m.get(k, detail.get(k))
        row["train_loss_last"] = m.get("training", {}).get("loss_last")
        row["epochs"] = m.get("budget", {}).get("epochs")
        rows.append(row)
        for r in read_csv(folder.file("per_sigma.csv")):
            per_sigma.append({"rank": cfg.rank, "n": cfg.num_train, "seed": cfg.seed, **r})
    return rows, per_sigma


def transitions(rows: Sequence[dict[str, Any]], components: int) -> dict[str, Any]:
    """N*(r): where the seed-averaged generalization index first crosses 0.5 going up in N (log-linear
    interpolation between neighbouring N); and the exponent b of a least-squares fit ``N* ~ r^b``."""
    by_rank: dict[int, dict[int, list[float]]] = {}
    for r in rows:
        v = r.get("generalization_index")
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        by_rank.setdefault(int(r["rank"]), {}).setdefault(int(r["n"]), []).append(float(v))
    n_star: dict[str, float | None] = {}
    for rank, by_n in sorted(by_rank.items()):
        ns = sorted(by_n)
        g = [float(np.mean(by_n[n])) for n in ns]
        found = None  # also when the smallest N already generalizes: N* is then below the range
        for (n0, g0), (n1, g1) in zip(zip(ns, g), zip(ns[1:], g[1:])):
            if g0 < 0.5 <= g1:
                frac = (0.5 - g0) / (g1 - g0)
                found = float(math.exp(math.log(n0) + frac * (math.log(n1) - math.log(n0))))
                break
        n_star[str(rank)] = found
    pts = [(int(k), v) for k, v in n_star.items() if v]
    slope = None
    if len(pts) >= 2:
        slope = float(np.polyfit(np.log([p[0] for p in pts]), np.log([p[1] for p in pts]), 1)[0])
    per_dim = {k: (v / (components * int(k)) if v else None) for k, v in n_star.items()}
    return {"n_star": n_star, "slope": slope, "n_star_per_component_per_rank": per_dim,
            "rule": "N*(r) = the N where the seed-averaged generalization index first crosses 0.5 from below "
                    "(log-linear interpolation); None: not crossed inside the N range (below it if the smallest N "
                    "already generalizes). b from a least-squares fit of log N* on log r."}


def write_combined(sweep: SweepConfig, root: RunFolder, device: torch.device, rows: list[dict[str, Any]],
                   per_sigma: list[dict[str, Any]], timing: dict[str, float], *, complete: bool,
                   report: bool) -> dict[str, Any]:
    """Write the table, per-sigma table, metrics JSON, Fig. 5-style figure and (optionally) the PDF report."""
    stored = root.read_config() or {}
    train_seconds = [RunFolder(g).read_json(TRAINING_FILE)["wall_s"]
                     for g in sorted((root.path / "groups").glob("g*")) if (g / TRAINING_FILE).exists()]
    summary = {
        "complete": complete and len(rows) == len(sweep.cells()),
        "cells_done": len(rows), "cells_total": len(sweep.cells()),
        "config": sweep.resolved(device),
        "budget": {"steps": sweep.base.steps, "batch": sweep.base.batch,
                   "samples_seen_per_model": sweep.base.steps * sweep.base.batch,
                   "convention": "fixed steps for every N (epochs = steps * batch / N)"},
        "transitions": transitions(rows, sweep.base.components),
        "timing": {**timing, "train_seconds_total": float(sum(train_seconds)), "groups": len(sweep.groups())},
        "rules": {"verdict": "see each cell's verdict_detail.rule; generalization_index = mean position over decisive "
                             "levels (0 = empirical optimum, 1 = true denoiser)"},
        "provenance_first_call": stored.get("provenance"),
        "provenance": provenance(device),
        "notes": [
            "Each cell trains one model for the same number of steps (fixed budget); a longer budget moves the "
            "transition to larger N. generalization_index and the verdict use only the decisive noise levels; "
            "l_score_*_band restricts L_score (noisy-true-data queries) to a fixed mid-sigma band, the same levels "
            "for every cell (band_sigma_min..band_sigma_max of the config); l_score_* sums the whole EDM grid "
            "(dominated by the smallest sigma). Column n of the tables is N (num_train).",
        ],
        "table": rows,
    }
    write_csv(root.file("sweep_table.csv"), rows)
    write_csv(root.file("sweep_per_sigma.csv"), per_sigma)
    summary["figures"] = draw_sweep(root.path, summary, report=report) if rows else "no finished cells yet"
    root.write_json("sweep_metrics.json", summary)
    return summary


def draw_sweep(folder: Path, summary: dict[str, Any], *, report: bool = True) -> str:
    """Write ``sweep_fig5.png`` / ``.pdf`` (and ``sweep_report.pdf``) into ``folder`` from a sweep summary (the
    contents of ``sweep_metrics.json``, whose ``table`` holds the rows). Without matplotlib (e.g. on a bare GPU
    image) it draws nothing and says how to draw later; returns that status line."""
    try:  # matplotlib is optional where sweeps run: import it only to draw
        from ...report.figures import sweep_figure
        from ...report.pdf import write_sweep_report
    except ImportError as exc:
        return (f"not drawn ({exc}); draw them later with: python scripts/score_match_sweep.py --redraw FOLDER "
                "(FOLDER holds sweep_metrics.json)")
    rows = summary.get("table", [])
    base = summary.get("config", {}).get("base", {})
    title = (f"score matching on MoLRG: K={base.get('components')}, n={base.get('dim')}, {base.get('arch')} width "
             f"{base.get('width')}, {base.get('steps')} steps x batch {base.get('batch')}")
    fig = sweep_figure(rows, summary.get("transitions"), title)
    fig.savefig(Path(folder) / "sweep_fig5.png", dpi=120)
    fig.savefig(Path(folder) / "sweep_fig5.pdf")
    if report:
        write_sweep_report(Path(folder) / "sweep_report.pdf", summary, rows)
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

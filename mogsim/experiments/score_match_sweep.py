"""A sweep of score-matching runs over the rank r and the training-set size N: the phase diagram of paper 1, Fig. 5.

The cells (r, N, seed) share every other setting of a base :class:`ScoreMatchConfig`. With ``arch = mlp`` the cells
are trained together as the members of batched ensembles (:class:`mogsim.nets.ensemble.EnsembleMLP`, up to
``group_size`` members each; 0 = all cells in one ensemble), which keeps a GPU busy; each member trains exactly as
a model alone would (own data, own loss, element-wise Adam) but draws its random numbers from the group's shared
generator. ``arch = unet`` trains one cell at a time.

Layout under ``<out>/sweep_<slug>-<key>/``: ``sweep_config.json``; ``groups/gNN.state.pt`` (training state, while
training) and ``groups/gNN.pt`` (trained EMA weights); ``cells/<cell slug>/`` (each a run folder with
``metrics.json``, ``per_sigma.csv``, ``samples.npz``); and the combined results
``sweep_table.csv``, ``sweep_per_sigma.csv``, ``sweep_metrics.json``, ``sweep_fig5.png`` / ``.pdf`` and
``sweep_report.pdf``. Re-running the same sweep skips finished groups and cells and resumes an interrupted group.
:func:`export_compact` copies the combined results (at most 6 files) into one flat folder.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..devices import resolve_device
from ..errors import InputError
from ..io import ensure_writable_dir, write_json
from ..runs import RunFolder, config_key, read_csv, write_csv
from .bank_training import train_bank
from .score_match import (ProgressFactory, ScoreMatchConfig, _silent, bank_seed, build_bank, finish_cell,
                          load_checkpoint, make_problem, save_checkpoint, training_summary)

#: Files :func:`export_compact` copies.
COMPACT_FILES = ("sweep_table.csv", "sweep_per_sigma.csv", "sweep_metrics.json", "sweep_fig5.png", "sweep_fig5.pdf",
                 "sweep_report.pdf")


@dataclass(frozen=True)
class SweepConfig:
    """A grid of cells (rank, N, seed) over a base configuration."""

    base: ScoreMatchConfig
    ranks: tuple[int, ...] = (2, 4, 6, 8)
    ns: tuple[int, ...] = tuple(2**k for k in range(4, 13))
    seeds: tuple[int, ...] = (0,)
    group_size: int = 0

    def check(self) -> None:
        """Raise :class:`InputError` for an unusable grid."""
        if not self.ranks or not self.ns or not self.seeds:
            raise InputError("--ranks, --ns and --seeds each need at least one value")
        for name, values in (("--ranks", self.ranks), ("--ns", self.ns), ("--seeds", self.seeds)):
            if len(set(values)) != len(values):
                raise InputError(f"{name} lists a value twice; give distinct values")
        if self.group_size < 0:
            raise InputError(f"--group-size {self.group_size}; pass 0 (all cells in one ensemble) or a positive size")
        for cell in self.cells():
            cell.check()

    def cells(self) -> list[ScoreMatchConfig]:
        """Every (rank, N, seed) configuration, ordered by rank, then N, then seed."""
        return [replace(self.base, rank=r, n=n, seed=s) for r in self.ranks for n in self.ns for s in self.seeds]

    def groups(self) -> list[list[ScoreMatchConfig]]:
        """The cells split into training groups (one ensemble each; one cell each for the UNet)."""
        cells = self.cells()
        size = 1 if self.base.arch != "mlp" else (self.group_size or len(cells))
        return [cells[i:i + size] for i in range(0, len(cells), size)]

    def resolved(self, device: torch.device) -> dict[str, Any]:
        """JSON-ready description (cache key material)."""
        base = {k: v for k, v in asdict(self.base).items() if k not in ("rank", "n", "seed")}
        return {"base": base, "ranks": list(self.ranks), "ns": list(self.ns), "seeds": list(self.seeds),
                "group_size": self.group_size, "device_type": device.type, "experiment": "score-match-sweep",
                "version": 1}

    def key(self, device: torch.device) -> str:
        return config_key(self.resolved(device))

    def slug(self) -> str:
        b = self.base
        return f"sweep_K{b.components}_d{b.dim}_{b.arch}{b.width}_s{b.steps}"


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
    return RunFolder(root / "cells", cfg.slug(), cfg.key(device))


def run_sweep(sweep: SweepConfig, out: Any, *, device: str | torch.device = "auto", report: bool = True,
              progress: ProgressFactory = _silent, deadline: float | None = None,
              checkpoint_every_s: float = 60.0) -> SweepResult:
    """Train and evaluate every cell (resuming), then write the combined table, figure, transition and report."""
    from ..provenance import provenance

    sweep.check()
    dev = resolve_device(device)
    root = ensure_writable_dir(out) / f"{sweep.slug()}-{sweep.key(dev)}"
    root.mkdir(parents=True, exist_ok=True)
    cfg_path = root / "sweep_config.json"
    if not cfg_path.exists():
        write_json(cfg_path, {"key": sweep.key(dev), "config": sweep.resolved(dev), "provenance": provenance(dev)})
    (root / "groups").mkdir(exist_ok=True)
    t_start = time.monotonic()
    train_s = eval_s = 0.0
    reused = 0
    complete = True
    groups = sweep.groups()
    for gi, group in enumerate(groups):
        folders = [_cell_folder(root, c, dev) for c in group]
        if all(f.is_done() for f in folders):
            reused += len(group)
            continue
        ckpt = root / "groups" / f"g{gi:02d}.pt"
        problems = [make_problem(c) for c in group]
        if ckpt.exists():
            bank, _, training = load_checkpoint(ckpt, dev)
        else:
            t0 = time.monotonic()
            bank = build_bank(group)
            outcome = train_bank(bank, [p[1] for p in problems], group[0].train_spec(), seed=bank_seed(group),
                                 device=dev, state_path=root / "groups" / f"g{gi:02d}.state.pt", deadline=deadline,
                                 checkpoint_every_s=checkpoint_every_s,
                                 progress=progress(f"training group {gi + 1}/{len(groups)} ({len(group)} models)",
                                                   group[0].steps))
            train_s += time.monotonic() - t0
            if not outcome.complete:
                complete = False
                break
            training = training_summary(outcome, len(group))
            training["members"] = len(group)
            bank = outcome.ema
            save_checkpoint(ckpt, bank, group, training)
            (root / "groups" / f"g{gi:02d}.state.pt").unlink(missing_ok=True)
        t0 = time.monotonic()
        advance = progress(f"evaluating group {gi + 1}/{len(groups)}", len(group))
        for m, (cfg, folder, (mol, train)) in enumerate(zip(group, folders, problems)):
            if folder.is_done():
                reused += 1
            else:
                if deadline is not None and time.monotonic() >= deadline:
                    complete = False
                    break
                folder.start(cfg.resolved(dev), provenance(dev))
                finish_cell(folder, cfg, bank.member(m), mol, train, dev, _member_training(training, m),
                            report=False, figure=False,
                            extra={"sweep_group": gi, "sweep_member": m, "sweep_key": sweep.key(dev)})
            advance(1)
        eval_s += time.monotonic() - t0
        if not complete or (deadline is not None and time.monotonic() >= deadline and gi + 1 < len(groups)):
            complete = False
            break
    metrics_path = root / "sweep_metrics.json"
    if (complete and reused == len(sweep.cells()) and metrics_path.exists()
            and (not report or (root / "sweep_report.pdf").exists())):
        summary = json.loads(metrics_path.read_text())  # nothing new: keep the combined results as they are
        rows = summary.get("table", [])
        return SweepResult(root, rows, summary, True, cells_done=len(rows), cells_total=len(sweep.cells()),
                           reused_cells=reused, timing={"this_call_seconds": time.monotonic() - t_start})
    rows, per_sigma = collect(sweep, root, dev)
    timing = {"this_call_seconds": time.monotonic() - t_start, "train_seconds_this_call": train_s,
              "eval_seconds_this_call": eval_s}
    summary = write_combined(sweep, root, dev, rows, per_sigma, timing, complete=complete, report=report)
    return SweepResult(root, rows, summary, complete, cells_done=len(rows), cells_total=len(sweep.cells()),
                       reused_cells=reused, timing=timing)


def _member_training(training: dict[str, Any], m: int) -> dict[str, Any]:
    """One member's slice of a group's training summary."""
    out = {k: v for k, v in training.items() if k not in ("loss_first", "loss_last", "loss_history")}
    out["loss_first"] = training["loss_first"][m]
    out["loss_last"] = training["loss_last"][m]
    out["loss_history"] = [[row[0], row[1 + m]] for row in training.get("loss_history", [])]
    out["ensemble_members"] = training.get("members", len(training["loss_last"]))
    return out


# -- combining ---------------------------------------------------------------------------------------------------------
TABLE_KEYS = ("l_score_true", "l_score_empirical", "l_score_true_band", "l_score_empirical_band",
              "l_score_true_train_queries", "l_score_empirical_train_queries", "generalization_index",
              "decisive_levels", "copy_fraction_net", "copy_fraction_empirical", "copy_fraction_true",
              "on_subspace_fraction_net", "on_subspace_fraction_empirical", "on_subspace_fraction_true",
              "rp_net_empirical", "rp_net_true", "median_rel_distance_net_empirical", "median_rel_distance_net_true",
              "verdict")


def collect(sweep: SweepConfig, root: Path, device: torch.device) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The finished cells' table rows and per-sigma rows."""
    rows, per_sigma = [], []
    for cfg in sweep.cells():
        folder = _cell_folder(root, cfg, device)
        if not folder.is_done():
            continue
        m = folder.load_metrics()
        detail = m.get("verdict_detail", {})
        row: dict[str, Any] = {"rank": cfg.rank, "n": cfg.n, "seed": cfg.seed}
        for k in TABLE_KEYS:
            row[k] = m.get(k, detail.get(k))
        row["train_loss_last"] = m.get("training", {}).get("loss_last")
        row["epochs"] = m.get("budget", {}).get("epochs")
        rows.append(row)
        for r in read_csv(folder.file("per_sigma.csv")):
            per_sigma.append({"rank": cfg.rank, "n": cfg.n, "seed": cfg.seed, **r})
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
        found = None
        if g and g[0] >= 0.5:
            found = None  # generalizing already at the smallest N: N* is below the range
        for (n0, g0), (n1, g1) in zip(zip(ns, g), zip(ns[1:], g[1:])):
            if g0 < 0.5 <= g1:
                frac = (0.5 - g0) / (g1 - g0)
                found = float(math.exp(math.log(n0) + frac * (math.log(n1) - math.log(n0))))
                break
        n_star[str(rank)] = found
    pts = [(int(k), v) for k, v in n_star.items() if v]
    slope = None
    if len(pts) >= 2:
        x = np.log([p[0] for p in pts])
        y = np.log([p[1] for p in pts])
        slope = float(np.polyfit(x, y, 1)[0])
    per_dim = {k: (v / (components * int(k)) if v else None) for k, v in n_star.items()}
    return {"n_star": n_star, "slope": slope, "n_star_per_component_per_rank": per_dim,
            "rule": "N*(r) = the N where the seed-averaged generalization index first crosses 0.5 from below "
                    "(log-linear interpolation); None: not crossed inside the N range (below it if the smallest N "
                    "already generalizes). b from a least-squares fit of log N* on log r."}


def write_combined(sweep: SweepConfig, root: Path, device: torch.device, rows: list[dict[str, Any]],
                   per_sigma: list[dict[str, Any]], timing: dict[str, float], *, complete: bool,
                   report: bool) -> dict[str, Any]:
    """Write the table, per-sigma table, metrics JSON, Fig. 5-style figure and (optionally) the PDF report."""
    from ..provenance import provenance

    tr = transitions(rows, sweep.base.components)
    stored = json.loads((root / "sweep_config.json").read_text())
    train_seconds = []
    for gi in range(len(sweep.groups())):
        ck = root / "groups" / f"g{gi:02d}.pt"
        if ck.exists():
            train_seconds.append(float(torch.load(ck, map_location="cpu", weights_only=False)["training"]["seconds"]))
    summary = {
        "complete": complete and len(rows) == len(sweep.cells()),
        "cells_done": len(rows), "cells_total": len(sweep.cells()),
        "config": sweep.resolved(device),
        "budget": {"steps": sweep.base.steps, "batch": sweep.base.batch,
                   "samples_seen_per_model": sweep.base.steps * sweep.base.batch,
                   "convention": "fixed steps for every N (epochs = steps * batch / N)"},
        "transitions": tr,
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
            "(dominated by the smallest sigma).",
        ],
        "table": rows,
    }
    write_csv(root / "sweep_table.csv", rows)
    write_csv(root / "sweep_per_sigma.csv", per_sigma)
    summary["figures"] = draw_sweep(root, summary, report=report) if rows else "no finished cells yet"
    write_json(root / "sweep_metrics.json", summary)
    return summary


def draw_sweep(folder: Path, summary: dict[str, Any], *, report: bool = True) -> str:
    """Write ``sweep_fig5.png`` / ``.pdf`` (and ``sweep_report.pdf``) into ``folder`` from a sweep summary (the
    contents of ``sweep_metrics.json``, whose ``table`` holds the rows). Without matplotlib (e.g. on a bare GPU
    image) it draws nothing and says how to draw later; returns that status line."""
    try:
        from ..report.figures import sweep_figure
        from ..report.pdf import write_sweep_report
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
    dest_dir = ensure_writable_dir(dest, option="--export")
    out = []
    for name in COMPACT_FILES:
        src = Path(root) / name
        if src.exists():
            shutil.copyfile(src, dest_dir / name)
            out.append(dest_dir / name)
    return out

"""Every GPU run of `mogsim cifar-optimal-gap` (issue 12) in one table, one figure and one cross table.

    python reports/cifar-optimal-gap/all_runs.py

Reads the committed run folders (their ``summary.json``: records, cross-cell RP and the training arithmetic) and
writes here ``all_runs.csv`` (one row per run, cell and evaluation point), ``all_cross.csv`` (RP between widths and
between training seeds, with the mismatched-seed control), ``all_runs.json`` (the same with provenance) and
``fig_all_runs.png``: Figs. 4 and 2 of paper 1 at the shared budget (each cell's point between :data:`BUDGET`
images), over every run that trained in bf16 (run 1's float32/TF32 cells are in the table, not the figure; cells
retrained under the same name are averaged there). A cell that two folders hold (the grid folder copies the widths run's
N = 4096 cells to merge them) is counted once, from the run that trained it; a cell retrained under the same name
(same configuration and seed: bf16 and cuDNN are not bitwise deterministic) is a separate row. CPU, a few seconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mogsim.io import write_json
from mogsim.provenance import provenance
from mogsim.report.figures import gap_vs_n_figure
from mogsim.runs import write_csv

HERE = Path(__file__).resolve().parent
REPORTS = HERE.parent
#: The run folders, oldest first (the first folder holding a cell is the one that trained it).
RUNS = ("cifar-optimal-gap", "cifar-optimal-gap-memorize", "cifar-optimal-gap-exponent", "cifar-optimal-gap-widths",
        "cifar-optimal-gap-grid", "cifar-optimal-gap-seeds")
#: The shared budget of Figs. 4 and 2 here: the grid's 98,304 images and the N = 16 cells' 110,080.
BUDGET = (98_304, 110_080)


def training_arithmetic(summary: dict[str, Any]) -> str:
    """How a run trained, from its configuration (run 1 predates the precision field: float32 with TF32)."""
    precision = summary.get("train", {}).get("precision") or "tf32"
    runtime = summary.get("runtime", {})
    step = "compiled" if runtime.get("compile") else "CUDA graph" if runtime.get("cuda_graph") else "eager"
    return f"{precision}, {step}"


def _ci(record: dict[str, Any], key: str) -> tuple[float | None, float | None]:
    ci = record.get(f"{key}_ci") or [None, None]
    return ci[0], ci[1]


def collect() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows, cross rows, figure records) over every run folder that exists."""
    rows, cross, records, seen = [], [], [], set()
    for run in RUNS:
        path = REPORTS / run / "summary.json"
        if not path.exists():
            continue
        summary = json.loads(path.read_text())
        arithmetic = training_arithmetic(summary)
        for r in summary["records"]:
            key = (r["cell"], r["images_seen"], r["loss"], r["rp_optimum"])  # a retrained cell differs in its loss
            if key in seen:
                continue
            seen.add(key)
            rp_lo, rp_hi = _ci(r, "rp_optimum")
            copy_lo, copy_hi = _ci(r, "copy_fraction")
            rows.append({"run": run, "n": r["n"], "net": r["net"], "seed": r["seed"], "images_seen": r["images_seen"],
                         "training": arithmetic, "eval_precision": r.get("eval_precision", "fp32"),
                         "rp_optimum": r["rp_optimum"], "rp_optimum_lo": rp_lo, "rp_optimum_hi": rp_hi,
                         "copy_fraction": r["copy_fraction"], "copy_fraction_lo": copy_lo,
                         "copy_fraction_hi": copy_hi, "gl": r["gl"], "loss_ratio": r["loss_ratio"],
                         "cell": r["cell"]})
            if BUDGET[0] <= r["images_seen"] <= BUDGET[1] and arithmetic.startswith("bf16"):
                records.append({**r, "is_last": True})
        for c in summary.get("cross", []):
            key = ("cross", c["kind"], c["n"], c["images_seen"], str(c["a"]), str(c["b"]), c.get("seed"),
                   c.get("net"))
            if key in seen:
                continue
            seen.add(key)
            lo, hi = c.get("rp_ci") or (c.get("rp_lo"), c.get("rp_hi"))
            cross.append({"run": run, "kind": c["kind"], "n": c["n"], "images_seen": c["images_seen"],
                          "a": c["a"], "b": c["b"], "seed": c.get("seed"), "net": c.get("net"), "rp": c["rp"],
                          "rp_lo": lo, "rp_hi": hi, "rp_mismatched": c.get("rp_mismatched"),
                          "median_similarity": c.get("median_similarity")})
    rows.sort(key=lambda r: (r["n"], r["net"], r["seed"], r["images_seen"], r["run"]))
    cross.sort(key=lambda c: (c["kind"], c["n"], c["images_seen"], c["run"]))
    return rows, cross, records


def main() -> None:
    rows, cross, records = collect()
    write_csv(HERE / "all_runs.csv", rows)
    write_csv(HERE / "all_cross.csv", cross)
    at_budget = [c for c in cross if BUDGET[0] <= c["images_seen"] <= BUDGET[1]]
    fig = gap_vs_n_figure(records, at_budget)
    fig.subplots_adjust(top=0.89)
    fig.suptitle(f"every bf16 run, each cell at {BUDGET[0]:,}-{BUDGET[1]:,} images seen", fontsize=8, y=0.995)
    fig.savefig(HERE / "fig_all_runs.png", dpi=200)
    write_json(HERE / "all_runs.json", {"runs": [r for r in RUNS if (REPORTS / r / "summary.json").exists()],
                                        "budget_of_figure": BUDGET, "rows": rows, "cross": cross,
                                        "provenance": provenance("cpu")})
    print(f"{len(rows)} rows, {len(cross)} cross rows, {len(records)} records in the figure")


if __name__ == "__main__":
    main()

"""``mogsim subspace-recovery``: the success rate of subspace recovery over a grid of (K, d, N_k) on noiseless MoLRG
data, the phase transition at N_k = d of paper 2 (Fig. 4), for the estimators and the trained low-rank denoiser.

The options are generated from :class:`~mogsim.experiments.subspace_recovery.RecoveryConfig` and
:class:`~mogsim.experiments.command_options.CommandOptions`.
"""

from __future__ import annotations

from typing import Any

import typer

from mogsim.experiments.command_options import EXIT_TIME_LIMIT, CommandOptions, resolve_command
from mogsim.experiments.subspace_recovery import RecoveryConfig, run_subspace_recovery
from mogsim.experiments.text import short_number as _num
from mogsim.params import flags
from mogsim.progress import progress_display

from .options import flag_errors, with_options

FLAGS = flags(RecoveryConfig, CommandOptions)


def result_lines(metrics: dict[str, Any]) -> list[str]:
    """Per (method, K): the success-rate grid in percent (rows d, columns N_k; * marks N_k >= d, where the theorem
    predicts recovery), the transition N_k*/d per d, and the agreement with the theorem. Everything printed is read
    from the stored metrics."""
    cfg = metrics["config"]
    cells = {(c["method"], c["components"], c["rank"], c["per_component"]): c for c in metrics["cells"]}
    trans = {(t["method"], t["components"], t["rank"]): t for t in metrics["transitions"]}
    out = []
    for s in metrics["summary"]:
        name, k = s["method"], s["components"]
        mine = [key for key in cells if key[:2] == (name, k)]
        ranks, nks = sorted({key[2] for key in mine}), sorted({key[3] for key in mine})
        lines = [f"{name}, K = {k}: success rate in % over {s['trials']} trials (error <= {cfg['threshold']:g}); "
                 "* marks N_k >= d",
                 "d \\ N_k |".rjust(10) + "".join(f"{nk:>4} " for nk in nks) + "| N_k*/d"]
        for d in ranks:
            row = ""
            for nk in nks:
                c = cells.get((name, k, d, nk))
                row += "     " if c is None else f"{round(100 * c['success_rate']):>4}{'*' if nk >= d else ' '}"
            lines.append(f"{d:>8} |{row} | {_num(trans[(name, k, d)]['ratio_star'])}")
        lines.append(f"transition N_k*/d = {_num(s['ratio_star_mean'])} on average (range {_num(s['ratio_star_min'])}.."
                     f"{_num(s['ratio_star_max'])}); {s['cells_agreeing_with_theorem']}/{s['cells']} cells agree with "
                     f"the theorem (recovery iff N_k >= d); below d, mean error / completion error = "
                     f"{_num(s['error_over_completion_error_below_d'])}")
        out.append("\n".join(lines) + "\n")
    seconds = metrics.get("timing", {}).get("compute_seconds_this_call_by_method", {})
    if seconds:
        out.append("compute seconds (this call): " + ", ".join(f"{m} {v:.0f}" for m, v in seconds.items()))
    return out


@with_options(RecoveryConfig, CommandOptions)
def subspace_recovery(**options: Any) -> None:
    """Estimate K subspaces of dimension d from N_k noiseless points each, over a grid, with the closed-form
    estimators and the trained low-rank denoiser, and measure the success rate: paper 2's phase transition at
    N_k = d (Fig. 4), with the phase diagram in phase.png."""
    with flag_errors(FLAGS):
        cfg, run = resolve_command(options, RecoveryConfig, CommandOptions)
        with progress_display("none" if run.quiet else "auto") as progress:
            res = run_subspace_recovery(cfg, run.out or "runs/subspace-recovery", progress=progress,
                                        deadline=run.deadline(), report=bool(run.report))
    for line in res.lines(result_lines):
        typer.echo(line)
    if not res.complete:
        raise typer.Exit(EXIT_TIME_LIMIT)

def register(app: typer.Typer) -> None:
    """Add the ``subspace-recovery`` command to ``app``."""
    app.command("subspace-recovery")(subspace_recovery)

"""``mogsim jacobian-rank``: the numerical rank of a denoiser's Jacobian along sampler trajectories, per noise level,
for the MoLRG closed form or a trained network (paper 2, Fig. 3).

The options are generated from :class:`~mogsim.experiments.jacobian_rank.JacobianConfig` and
:class:`~mogsim.experiments.jacobian_rank.JacobianRunOptions`.
"""

from __future__ import annotations

from typing import Any

import typer

from mogsim.experiments.command_options import EXIT_TIME_LIMIT, resolve_command
from mogsim.experiments.jacobian_rank import JacobianConfig, JacobianRunOptions, run_jacobian_rank
from mogsim.params import flags
from mogsim.progress import progress_display

from .options import flag_errors, with_options

FLAGS = flags(JacobianConfig, JacobianRunOptions)


def result_lines(metrics: dict[str, Any]) -> list[str]:
    """The per-level table (rank: median and range over the samples; rank / n: median) and the stored claims."""
    n = metrics["dim"]
    lines = [f"{metrics['model']['kind']}, n = {n}: numerical rank of dD/dx ({metrics['energy']:g} of the Frobenius "
             f"norm) over {metrics['samples']} trajectories ({metrics.get('arithmetic', metrics['dtype'])})",
             f"{'sigma':>9} {'SNR':>9}  {'rank: median':>12} {'[min, max]':>13}  {'rank/n':>7}"]
    for lv in metrics["levels"]:
        lines.append(f"{lv['sigma']:>9.4g} {lv['snr']:>9.4g}  {lv['rank_median']:>12g} "
                     f"{'[' + str(lv['rank_min']) + ', ' + str(lv['rank_max']) + ']':>13}  "
                     f"{lv['rank_over_n_median']:>7.3f}")
    ref = metrics.get("reference_ranks")
    if ref:
        lines.append(f"reference (the MoLRG closed form): d = {ref['high_snr']} at high SNR (here a fraction "
                     f"{ref['fraction_equal_at_high_snr']:.2f} of samples), K d = {ref['low_snr']} at low SNR "
                     f"({ref['fraction_equal_at_low_snr']:.2f})")
    for claim in metrics.get("paper_claims", []):
        lines.append(f"paper: {claim['paper']}  measured: {claim['measured']}  agrees: {claim['agrees']}")
    return lines


@with_options(JacobianConfig, JacobianRunOptions)
def jacobian_rank(**options: Any) -> None:
    """Take the numerical rank of a denoiser's Jacobian at every noise level along deterministic sampler
    trajectories, for the MoLRG closed form or the network of a score-match or train run folder; violin plots of
    rank / n against the SNR (paper 2, Fig. 3)."""
    with flag_errors(FLAGS):
        cfg, run = resolve_command(options, JacobianConfig, JacobianRunOptions)
        with progress_display("none" if run.quiet else "auto") as progress:
            res = run_jacobian_rank(cfg, run.out or "runs/jacobian-rank", device=run.device or "auto",
                                    max_batch=run.max_batch, progress=progress, deadline=run.deadline(),
                                    report=bool(run.report))
    for line in res.lines(result_lines):
        typer.echo(line)
    if not res.complete:
        raise typer.Exit(EXIT_TIME_LIMIT)

def register(app: typer.Typer) -> None:
    """Add the ``jacobian-rank`` command to ``app``."""
    app.command("jacobian-rank")(jacobian_rank)

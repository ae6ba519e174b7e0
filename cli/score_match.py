"""``mogsim score-match``: train a denoiser on N MoLRG samples and test whether it learned the empirical score
(memorization) or the true one (generalization); ``--sweep`` trains a grid over r and N (paper 1, Fig. 5).

The options are generated from :class:`~mogsim.experiments.score_match.ScoreMatchConfig`,
:class:`~mogsim.experiments.score_match.SweepConfig` and :class:`~mogsim.experiments.score_match.RunOptions`;
the command itself is :func:`mogsim.experiments.score_match.run_command`.
"""

from __future__ import annotations

from typing import Any

import typer

from mogsim.experiments.score_match import FLAGS, RunOptions, ScoreMatchConfig, SweepConfig, run_command

from .options import flag_errors, with_options


@with_options(ScoreMatchConfig, SweepConfig, RunOptions)
def score_match(**options: Any) -> None:
    """Train a denoiser on N samples of a mixture of low-rank Gaussians; compare it with the true and the
    empirical score per noise level, from shared seeds, and give a verdict (memorizing / generalizing /
    in transition)."""
    with flag_errors(FLAGS):
        code = run_command(options, echo=typer.echo)
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add the ``score-match`` command to ``app``."""
    app.command("score-match")(score_match)

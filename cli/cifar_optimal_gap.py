"""``mogsim cifar-optimal-gap``: train UNets on nested CIFAR-10 subsets over a grid of (N, width, training seed),
evaluate each along training against the empirical optimum of its subset, and combine the cells (paper 1, Figs. 2
and 4).

The options are generated from :class:`~mogsim.experiments.cifar_gap.config.GapConfig`,
:class:`~mogsim.experiments.cifar_gap.config.GapRunOptions` and the training engine's dataclasses; the command is
:func:`mogsim.experiments.cifar_gap.command.run_command`.
"""

from __future__ import annotations

from typing import Any

import typer

from mogsim.experiments.cifar_gap.command import CLASSES, FLAGS, SKIP, run_command

from .options import flag_errors, with_options


@with_options(*CLASSES, skip=SKIP)
def cifar_optimal_gap(**options: Any) -> None:
    """How far trained UNets are from the empirical-optimal denoiser on CIFAR-10, over N, width and training time:
    RP to the optimum, copies, GL, RP between widths and seeds, per-sigma distances, loss over its floor, and the
    memorization time against N."""
    with flag_errors(FLAGS):
        raise typer.Exit(run_command(options, echo=typer.echo))  # 0 done, 3 stopped at the time limit


def register(app: typer.Typer) -> None:
    """Add the ``cifar-optimal-gap`` command to ``app``."""
    app.command("cifar-optimal-gap")(cifar_optimal_gap)

"""``mogsim subspace-recovery``: the success rate of subspace recovery over a grid of (K, d, N_k) on noiseless MoLRG
data, the phase transition at N_k = d of paper 2 (Fig. 4)."""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from mogsim.errors import InputError
from mogsim.experiments.subspace_recovery import METHOD_NAMES, RecoveryConfig, run_subspace_recovery
from mogsim.parsing import parse_int_list

DEFAULTS = RecoveryConfig()


def _ints(text: Optional[str], default: tuple[int, ...], option: str) -> tuple[int, ...]:
    return default if text is None else parse_int_list(text, option=option)


def _methods(text: Optional[str]) -> tuple[str, ...]:
    if text is None:
        return DEFAULTS.methods
    names = tuple(p.strip().lower() for p in text.split(",") if p.strip())
    if not names:
        raise InputError(f"--methods is empty; choose from {', '.join(METHOD_NAMES)}")
    return names


@contextlib.contextmanager
def _bar(enabled: bool) -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    if not enabled:
        yield lambda description, total: (lambda k: None)
        return
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=False) as bar:
        def factory(description: str, total: int) -> Callable[[int], None]:
            task = bar.add_task(description, total=total)
            return lambda k: bar.advance(task, k)

        yield factory


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if math.isfinite(v) else str(v)
    return str(v)


def print_result(console: Console, metrics: dict[str, Any]) -> None:
    """Per (method, K): the success-rate grid (rows d, columns N_k), the transition N_k*/d per d, and the theorem check.
    Everything printed is read from the stored metrics."""
    cfg = metrics["config"]
    cells = {(c["method"], c["components"], c["rank"], c["per_component"]): c for c in metrics["cells"]}
    trans = {(t["method"], t["components"], t["rank"]): t for t in metrics["transitions"]}
    for s in metrics["summary"]:
        name, k = s["method"], s["components"]
        table = Table(title=f"{name}, K = {k}: success rate (error <= {cfg['threshold']:g}) over {cfg['trials']} trials; "
                            "* marks N_k >= d", title_style="bold")
        table.add_column("d \\ N_k", justify="right")
        for nk in cfg["per_component"]:
            table.add_column(str(nk), justify="right")
        table.add_column("N_k*/d", justify="right")
        for d in cfg["ranks"]:
            row = []
            for nk in cfg["per_component"]:
                c = cells.get((name, k, d, nk))
                row.append("" if c is None else f"{c['success_rate']:.2f}" + ("*" if nk >= d else " "))
            row.append(_fmt(trans[(name, k, d)]["ratio_star"]))
            table.add_row(str(d), *row)
        console.print(table)
        console.print(f"{name}, K = {k}: transition N_k*/d = {_fmt(s['ratio_star_mean'])} on average "
                      f"(range {_fmt(s['ratio_star_min'])}..{_fmt(s['ratio_star_max'])}); "
                      f"{s['cells_agreeing_with_theorem']}/{s['cells']} cells agree with the theorem "
                      f"(recovery iff N_k >= d); below d, mean error / completion error = "
                      f"{_fmt(s['error_over_completion_error_below_d'])}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add the ``subspace-recovery`` command to ``app``."""

    @app.command("subspace-recovery")
    def subspace_recovery(
        components: Optional[str] = typer.Option(None, "--components", help="K values: number of subspaces "
                                                                             "[default: 1,2,3]"),
        ranks: Optional[str] = typer.Option(None, "--ranks", help="d values: the paper's intrinsic dimension of "
                                                                  "each subspace (mogsim's rank r) [default: 2,...,8]"),
        nks: Optional[str] = typer.Option(None, "--nks", help="N_k values: noiseless training points per component "
                                                              "[default: 2,...,15]"),
        dim: int = typer.Option(DEFAULTS.dim, "--dim", help="n: ambient dimension"),
        trials: int = typer.Option(DEFAULTS.trials, "--trials", help="independent problems per (K, d, N_k)"),
        methods: Optional[str] = typer.Option(None, "--methods", help=f"estimators, of {', '.join(METHOD_NAMES)}; "
                                                                      "each runs on the K it applies to "
                                                                      "[default: pca,ksubspaces]"),
        threshold: float = typer.Option(DEFAULTS.threshold, "--threshold", help="success: every component's "
                                                                                "||P_hat - P*||_F <= this"),
        restarts: int = typer.Option(DEFAULTS.restarts, "--restarts", help="K-subspaces restarts per problem"),
        max_iter: int = typer.Option(DEFAULTS.max_iter, "--max-iter", help="K-subspaces steps per restart"),
        seed: int = typer.Option(DEFAULTS.seed, "--seed", help="master seed: subspaces, data, estimators"),
        out: Path = typer.Option(Path("runs/subspace-recovery"), "--out", help="folder for the run folder (one per "
                                                                               "configuration, reused when finished)"),
        time_limit: Optional[float] = typer.Option(None, "--time-limit", help="minutes; stop cleanly after this, "
                                                                              "re-run to resume"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
    ) -> None:
        """Estimate K subspaces of dimension d from N_k noiseless points each, over a grid, and measure the success
        rate: paper 2's phase transition at N_k = d (Fig. 4), with the phase diagram in phase.png."""
        cfg = RecoveryConfig(dim=dim, components=_ints(components, DEFAULTS.components, "--components"),
                             ranks=_ints(ranks, DEFAULTS.ranks, "--ranks"),
                             per_component=_ints(nks, DEFAULTS.per_component, "--nks"), trials=trials,
                             methods=_methods(methods), threshold=threshold, restarts=restarts, max_iter=max_iter,
                             seed=seed)
        cfg.check()
        if time_limit is not None and not time_limit > 0:
            raise InputError(f"--time-limit {time_limit}; pass a positive number of minutes")
        deadline = time.monotonic() + 60.0 * time_limit if time_limit is not None else None
        console = Console()
        with _bar(not quiet) as factory:
            res = run_subspace_recovery(cfg, out, progress=factory, deadline=deadline)
        if not res.complete:
            console.print(f"stopped at the time limit after {res.trials_done}/{res.trials_total} trials; results "
                          f"kept in {res.path}. Re-run the same command to resume.")
            raise typer.Exit(3)
        print_result(console, res.metrics)
        console.print(f"run folder: {res.path}" + (" (reused finished results)" if res.reused else ""),
                      highlight=False, soft_wrap=True)

"""``mogsim subspace-recovery``: the success rate of subspace recovery over a grid of (K, d, N_k) on noiseless MoLRG
data, the phase transition at N_k = d of paper 2 (Fig. 4)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from mogsim.errors import InputError
from mogsim.experiments.subspace_recovery import METHOD_NAMES, RecoveryConfig, make_methods, run_subspace_recovery
from mogsim.parsing import parse_int_list

from mogsim.experiments.text import short_number as _num
from mogsim.progress import progress_display

DEFAULTS = RecoveryConfig()


def _ints(text: Optional[str], default: tuple[int, ...], option: str) -> tuple[int, ...]:
    return default if text is None else parse_int_list(text, option=option)


def _methods(text: Optional[str], components: tuple[int, ...]) -> tuple[str, ...]:
    """The methods asked for, or the default ones that apply to some K of ``components``."""
    if text is None:
        return tuple(m.name for m in make_methods(DEFAULTS.methods) if any(m.applies(k) for k in components))
    names = tuple(p.strip().lower() for p in text.split(",") if p.strip())
    if not names:
        raise InputError(f"--methods is empty; choose from {', '.join(METHOD_NAMES)}")
    return names


def print_result(console: Console, metrics: dict[str, Any]) -> None:
    """Per (method, K): the success-rate grid in percent (rows d, columns N_k; * marks N_k >= d, where the theorem
    predicts recovery), the transition N_k*/d per d, and the agreement with the theorem. Everything printed is read
    from the stored metrics."""
    cfg = metrics["config"]
    cells = {(c["method"], c["components"], c["rank"], c["per_component"]): c for c in metrics["cells"]}
    trans = {(t["method"], t["components"], t["rank"]): t for t in metrics["transitions"]}
    nks = cfg["per_component"]
    for s in metrics["summary"]:
        name, k = s["method"], s["components"]
        lines = [f"{name}, K = {k}: success rate in % over {cfg['trials']} trials (error <= {cfg['threshold']:g}); "
                 "* marks N_k >= d",
                 "d \\ N_k |".rjust(10) + "".join(f"{nk:>4} " for nk in nks) + "| N_k*/d"]
        for d in cfg["ranks"]:
            row = ""
            for nk in nks:
                c = cells.get((name, k, d, nk))
                row += "     " if c is None else f"{round(100 * c['success_rate']):>4}{'*' if nk >= d else ' '}"
            lines.append(f"{d:>8} |{row} | {_num(trans[(name, k, d)]['ratio_star'])}")
        lines.append(f"transition N_k*/d = {_num(s['ratio_star_mean'])} on average (range {_num(s['ratio_star_min'])}.."
                     f"{_num(s['ratio_star_max'])}); {s['cells_agreeing_with_theorem']}/{s['cells']} cells agree with "
                     f"the theorem (recovery iff N_k >= d); below d, mean error / completion error = "
                     f"{_num(s['error_over_completion_error_below_d'])}")
        console.print("\n".join(lines) + "\n", highlight=False, soft_wrap=True)


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
                                                                      "[default: pca,ksubspaces where they apply]"),
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
        comps = _ints(components, DEFAULTS.components, "--components")
        cfg = RecoveryConfig(dim=dim, components=comps,
                             ranks=_ints(ranks, DEFAULTS.ranks, "--ranks"),
                             per_component=_ints(nks, DEFAULTS.per_component, "--nks"), trials=trials,
                             methods=_methods(methods, comps), threshold=threshold, restarts=restarts, max_iter=max_iter,
                             seed=seed)
        cfg.check()
        if time_limit is not None and not time_limit > 0:
            raise InputError(f"--time-limit {time_limit}; pass a positive number of minutes")
        deadline = time.monotonic() + 60.0 * time_limit if time_limit is not None else None
        console = Console()
        with progress_display("none" if quiet else "auto") as progress:
            res = run_subspace_recovery(cfg, out, progress=progress, deadline=deadline)
        if not res.complete:
            console.print(f"stopped at the time limit after {res.trials_done}/{res.trials_total} trials; results "
                          f"kept in {res.path}. Re-run the same command to resume.")
            raise typer.Exit(3)
        print_result(console, res.metrics)
        console.print(f"run folder: {res.path}" + (" (reused finished results)" if res.reused else ""),
                      highlight=False, soft_wrap=True)

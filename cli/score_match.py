"""``mogsim score-match``: train a denoiser on N MoLRG samples and test whether it learned the empirical score
(memorization) or the true one (generalization); ``--sweep`` trains a grid over r and N (paper 1, Fig. 5)."""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from mogsim.errors import InputError
from mogsim.experiments.score_match import ScoreMatchConfig, run_score_match
from mogsim.experiments.score_match_sweep import SweepConfig, export_compact, run_sweep
from mogsim.parsing import parse_int_list, parse_seeds

DEFAULTS = ScoreMatchConfig()
#: ``--width`` default for ``--arch unet`` (the DDPM++ ``model_channels``; 256 would be a 50M-parameter UNet).
UNET_WIDTH = 64


def _progress_factory(bar: Progress | None) -> Callable[[str, int], Callable[[int], None]]:
    def factory(description: str, total: int) -> Callable[[int], None]:
        if bar is None:
            return lambda k: None
        task = bar.add_task(description, total=total)
        return lambda k: bar.advance(task, k)

    return factory


@contextlib.contextmanager
def _bar(enabled: bool) -> Iterator[Progress | None]:
    if not enabled:
        yield None
        return
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=False) as bar:
        yield bar


def load_config_file(path: Optional[Path]) -> dict[str, Any]:
    """A JSON (or TOML, for a ``.toml`` name) file of option values: the config fields and ranks/ns/seeds."""
    if path is None:
        return {}
    if not path.exists():
        raise InputError(f"--config {path}: no such file; pass a JSON or TOML file of option values")
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(path.read_text())
        else:
            data = json.loads(path.read_text())
    except Exception as exc:  # json/toml decoding errors
        raise InputError(f"--config {path}: cannot parse it ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"--config {path}: must hold one object of option values")
    allowed = {f.name for f in fields(ScoreMatchConfig)} | {"ranks", "ns", "seeds", "group_size", "sweep", "device"}
    bad = sorted(set(data) - allowed)
    if bad:
        raise InputError(f"--config {path}: unknown key(s) {', '.join(bad)}; allowed: {', '.join(sorted(allowed))}")
    return data


def _pick(cli: Any, file: dict[str, Any], key: str) -> Any:
    if cli is not None:
        return cli
    if key in file:
        return file[key]
    return getattr(DEFAULTS, key)


def print_run(console: Console, result: Any) -> None:
    """The per-sigma table, the totals and sample statistics, and the one-line verdict of a run."""
    m = result.metrics
    detail = m.get("verdict_detail", {})
    by = {(r["queries"], float(r["sigma"])): r for r in result.per_sigma}
    sigmas = sorted({float(r["sigma"]) for r in result.per_sigma}, reverse=True)
    lines = ["Per-sigma L_score = E||D_net - D_ref||^2 / E||D_ref - x||^2 against the true (L_true) and empirical "
             "(L_emp) references;",
             "t = position between them (0 = empirical, 1 = true); * = decisive level (see the rule in metrics.json)",
             "",
             f"{'':>8} | {'x = noisy true data':^30} | {'x = noisy training points':^30}",
             f"{'sigma':>8} | {'L_true':>8} {'L_emp':>8} {'t':>6} {'':>4} | {'L_true':>8} {'L_emp':>8} {'t':>6} "
             f"{'':>4}",
             "-" * 75]
    for s in sigmas:
        cells = []
        for q in ("true", "train"):
            r = by[(q, s)]
            cells.append(f"{float(r['l_score_true']):>8.2g} {float(r['l_score_empirical']):>8.2g} "
                         f"{float(r['position']):>6.2f} {'*' if _yes(r['decisive']) else '':>4}")
        lines.append(f"{s:>8.4g} | {cells[0]} | {cells[1]}")
    console.print("\n".join(lines), highlight=False)
    table = Table(title="Totals and samples", title_style="bold", box=box.SIMPLE_HEAD)
    table.add_column("metric", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    rows = [("L_score vs true, grid total", m["l_score_true"]),
            ("L_score vs empirical, grid total", m["l_score_empirical"]),
            (f"L_score vs true, band sigma {_band(m)}", m.get("l_score_true_band")),
            (f"L_score vs empirical, band sigma {_band(m)}", m.get("l_score_empirical_band")),
            ("generalization index (0 emp .. 1 true)", detail.get("generalization_index")),
            ("copies: net / empirical / true", (m["copy_fraction_net"], m["copy_fraction_empirical"],
                                                m["copy_fraction_true"])),
            ("on a subspace: net / empirical / true", (m["on_subspace_fraction_net"],
                                                       m["on_subspace_fraction_empirical"],
                                                       m["on_subspace_fraction_true"])),
            ("RP net vs empirical / vs true", (m["rp_net_empirical"], m["rp_net_true"]))]
    for name, v in rows:
        table.add_row(name, " / ".join(_num(x) for x in v) if isinstance(v, tuple) else _num(v))
    console.print(table)
    b = m.get("budget", {})
    console.print(f"budget: {b.get('steps')} steps x batch {b.get('batch')} = {b.get('samples_seen')} samples seen "
                  f"({_num(b.get('epochs'))} epochs); the transition moves with the budget", highlight=False)
    console.print(f"verdict: {m['verdict'].upper()}: {detail.get('reason', '')}", highlight=False)


def _band(m: dict[str, Any]) -> str:
    s = m.get("band_sigmas") or []
    return f"{min(s):.3g}..{max(s):.3g}" if s else "(none)"


def _yes(v: Any) -> str:
    return "yes" if str(v).lower() in ("true", "1") else ""


def _num(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if math.isfinite(v) else str(v)
    return str(v)


def register(app: typer.Typer) -> None:
    """Add the ``score-match`` command to ``app``."""

    @app.command("score-match")
    def score_match(
        rank: Optional[int] = typer.Option(None, "--rank", help="r: rank of every subspace [default: 4]"),
        n: Optional[int] = typer.Option(None, "--n", help="N: training samples in total, balanced over components "
                                                          "[default: 512]"),
        components: Optional[int] = typer.Option(None, "--components", help="K: subspaces [default: 2]"),
        dim: Optional[int] = typer.Option(None, "--dim", help="n: ambient dimension [default: 48 = 3x4x4]"),
        arch: Optional[str] = typer.Option(None, "--arch", help="mlp (batched MLP ensemble) or unet (DDPM++ on "
                                                                "(n/16)x4x4 images) [default: mlp]"),
        width: Optional[int] = typer.Option(None, "--width", help="MLP width / UNet model_channels [default: 256 "
                                                                  "for mlp, 64 for unet]"),
        depth: Optional[int] = typer.Option(None, "--depth", help="MLP hidden layers [default: 3]"),
        steps: Optional[int] = typer.Option(None, "--steps", help="training budget: Adam steps, the same for every N "
                                                                  "[default: 3000]"),
        batch: Optional[int] = typer.Option(None, "--batch", help="batch size [default: 256]"),
        lr: Optional[float] = typer.Option(None, "--lr", help="Adam learning rate [default: 1e-3]"),
        seed: Optional[int] = typer.Option(None, "--seed", help="master seed: subspaces, training set, init, "
                                                                "noise [default: 0]"),
        eval_queries: Optional[int] = typer.Option(None, "--eval-queries", help="queries per sigma and query set "
                                                                                "[default: 512]"),
        sample_seeds: Optional[int] = typer.Option(None, "--sample-seeds", help="sampler seeds 0..S-1 shared by "
                                                                                "all models [default: 256]"),
        device: Optional[str] = typer.Option(None, "--device", help="auto, cpu or cuda [default: auto]"),
        out: Path = typer.Option(Path("runs/score-match"), "--out", help="folder for run folders (one per "
                                                                         "configuration, reused when finished)"),
        report: bool = typer.Option(False, "--report", help="also write report.pdf"),
        config: Optional[Path] = typer.Option(None, "--config", help="JSON/TOML file of option values (options "
                                                                     "given on the command line win)"),
        sweep: bool = typer.Option(False, "--sweep", help="train the grid --ranks x --ns x --seeds"),
        ranks: Optional[str] = typer.Option(None, "--ranks", help="sweep ranks [default: 2,4,6,8]"),
        ns: Optional[str] = typer.Option(None, "--ns", help="sweep N values [default: 16,32,...,4096]"),
        seeds: Optional[str] = typer.Option(None, "--seeds", help="sweep seeds, e.g. 0-2 [default: 0]"),
        group_size: Optional[int] = typer.Option(None, "--group-size", help="models per ensemble in a sweep; 0 = "
                                                                            "all at once [default: 0]"),
        time_limit: Optional[float] = typer.Option(None, "--time-limit", help="minutes; stop training cleanly "
                                                                              "after this, re-run to resume"),
        export: Optional[Path] = typer.Option(None, "--export", help="sweep: copy the combined results (<= 6 files) "
                                                                     "into this flat folder"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress bars"),
    ) -> None:
        """Train a denoiser on N samples of a mixture of low-rank Gaussians; compare it with the true and the
        empirical score per noise level, from shared seeds, and give a verdict (memorizing / generalizing /
        in transition)."""
        file = load_config_file(config)
        cli = dict(rank=rank, n=n, components=components, dim=dim, arch=arch, width=width, depth=depth, steps=steps,
                   batch=batch, lr=lr, seed=seed, eval_queries=eval_queries, sample_seeds=sample_seeds)
        values = {k: _pick(v, file, k) for k, v in cli.items()}
        if width is None and "width" not in file and str(values["arch"]).strip().lower() == "unet":
            values["width"] = UNET_WIDTH
        for extra in (f.name for f in fields(ScoreMatchConfig)):
            if extra not in values and extra in file:
                values[extra] = file[extra]
        if isinstance(values["arch"], str):
            values["arch"] = values["arch"].strip().lower()
        cfg = ScoreMatchConfig(**values)
        dev = device if device is not None else file.get("device", "auto")
        deadline = time.monotonic() + 60.0 * time_limit if time_limit is not None else None
        if time_limit is not None and not time_limit > 0:
            raise InputError(f"--time-limit {time_limit}; pass a positive number of minutes")
        console = Console()
        do_sweep = sweep or bool(file.get("sweep", False))
        if not do_sweep:
            if any(v is not None for v in (ranks, ns, seeds, group_size, export)):
                raise InputError("--ranks, --ns, --seeds, --group-size and --export need --sweep")
            cfg.check()
            with _bar(not quiet) as bar:
                result = run_score_match(cfg, out, device=dev, report=report, progress=_progress_factory(bar),
                                         deadline=deadline)
            if not result.complete:
                console.print(f"training stopped at the time limit; state saved in {result.path}. Re-run the same "
                              "command to resume.")
                raise typer.Exit(3)
            print_run(console, result)
            console.print(f"run folder: {result.path}" + (" (reused finished results)" if result.reused else ""))
            return
        sweep_cfg = SweepConfig(
            base=cfg,
            ranks=parse_int_list(ranks, option="--ranks") if ranks else tuple(file.get("ranks", (2, 4, 6, 8))),
            ns=parse_int_list(ns, option="--ns") if ns else tuple(file.get("ns", [2**k for k in range(4, 13)])),
            seeds=tuple(parse_seeds(seeds)) if seeds else tuple(file.get("seeds", (0,))),
            group_size=group_size if group_size is not None else int(file.get("group_size", 0)))
        sweep_cfg.check()
        with _bar(not quiet) as bar:
            res = run_sweep(sweep_cfg, out, device=dev, report=True, progress=_progress_factory(bar),
                            deadline=deadline)
        print_sweep(console, res)
        if export is not None:
            copied = export_compact(res.path, export)
            console.print(f"exported {len(copied)} files to {export}: {', '.join(p.name for p in copied)}")
        if not res.complete:
            console.print("sweep incomplete (time limit); re-run the same command to resume.")
            raise typer.Exit(3)


def print_sweep(console: Console, res: Any) -> None:
    """The sweep table, N*(r) and where the results are."""
    table = Table(title="Sweep: trained denoisers vs the empirical and the true MoLRG score", title_style="bold")
    cols = (("rank", "r"), ("n", "N"), ("seed", "seed"), ("l_score_true_band", "L true (band)"),
            ("l_score_empirical_band", "L emp (band)"), ("generalization_index", "gen. index"),
            ("copy_fraction_net", "copies"), ("rp_net_true", "RP true"), ("verdict", "verdict"))
    for _, h in cols:
        table.add_column(h, justify="right")
    for row in res.rows:
        table.add_row(*(_num(row.get(k)) for k, _ in cols))
    console.print(table)
    tr = res.summary.get("transitions", {})
    stars = ", ".join(f"r={k}: {_num(v) if v else 'not crossed'}" for k, v in tr.get("n_star", {}).items())
    console.print(f"N*(r) (generalization index crosses 0.5): {stars}")
    if tr.get("slope") is not None:
        console.print(f"fit N* ~ r^b: b = {tr['slope']:.3g} (1 = linear in r)")
    console.print(f"{res.cells_done}/{res.cells_total} cells done ({res.reused_cells} reused); results in {res.path}")

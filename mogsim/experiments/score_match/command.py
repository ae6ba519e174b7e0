"""``score-match`` as a command, whatever the front end: option values in, run folders and printed lines out.

``mogsim score-match`` (typer) and ``scripts/score_match_sweep.py`` (argparse, for machines with only torch and
numpy) generate their options from the same declared parameters (:class:`~.config.ScoreMatchConfig`,
:class:`~.config.SweepConfig`, :class:`RunOptions`) and call :func:`run_command`, which merges command line >
``--config`` file > defaults in one place (:func:`mogsim.params.resolve`). Exit codes: 0 done, 3 stopped at the
time limit (re-run to resume), 2 bad input (raised as :class:`~mogsim.errors.InputError`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ...errors import InputError
from ...params import add_arguments, check_params, flags, param, read_config_file, resolve, to_flags, unknown_keys
from ...progress import progress_display
from ...runs import read_csv
from .config import ScoreMatchConfig, SweepConfig, parse_shard
from .run import run_score_match
from .summary import run_lines, sweep_lines
from .sweep import COLLAPSE_JSON, draw_sweep, export_compact, run_sweep, write_collapse

EXIT_TIME_LIMIT = 3


@dataclass(frozen=True)
class RunOptions:
    """How the command runs (not hashed into run folders)."""

    out: str = param("runs/score-match", "Folder for run folders (one per configuration, reused when finished).")
    config: str | None = param(None, "JSON or TOML file of option values (options on the command line win).")
    sweep: bool | None = param(None, "Train the grid --ranks x --ns x --seeds.", shown="off")
    device: str | None = param(None, "auto, cpu or cuda.", shown="auto")
    report: bool | None = param(None, "Also write report.pdf (a sweep: sweep_report.pdf).",
                                shown="off for one run, on for a sweep")
    time_limit: float | None = param(None, "Minutes; stop training cleanly after this, re-run to resume.",
                                     positive=True, max=1e7)
    export: str | None = param(None, "Sweep: copy the combined results (<= 11 files) into this flat folder.")
    shard: str | None = param(None, "Sweep: i/M trains only every M-th training group from i (M processes, e.g. "
                              "one per GPU; any later call merges the finished cells).", shown="all groups")
    quiet: bool | None = param(None, "No progress display.", shown="off")

    def __post_init__(self) -> None:
        check_params(self)


#: parameter -> flag, for errors (library messages name parameters)
FLAGS = flags(ScoreMatchConfig, SweepConfig, RunOptions)
SWEEP_ONLY = ("ranks", "train_sizes", "nk_over_d", "seeds", "widths", "group_size", "export", "shard")


def run_command(options: Mapping[str, Any], *, echo: Callable[[str], None] = print,
                progress_mode: str = "auto") -> int:
    """Run one configuration or a sweep from option values (None = not given); print the results; return the exit
    code."""
    config_file = options.get("config")
    file = read_config_file(config_file) if config_file is not None else {}
    source = f"config={str(config_file)!r}"
    bad = unknown_keys(file, ScoreMatchConfig, SweepConfig, RunOptions)
    if bad:
        allowed = sorted(FLAGS)
        raise InputError(f"{source}: unknown key(s) {', '.join(bad)}; allowed: {', '.join(allowed)}",
                         parameter="config")
    run = resolve(RunOptions, options, file, source=source)
    given = {k for k, v in options.items() if v is not None} | set(file)
    if "steps" in given and {"budget_per_sample", "budget-per-sample"} & given:
        raise InputError("steps and budget_per_sample: give one budget (fixed steps, or samples seen per training "
                         "point)", parameter=("steps", "budget_per_sample"))
    cfg = resolve(ScoreMatchConfig, options, file, source=source)
    shard = parse_shard(run.shard) if run.shard is not None else None
    deadline = time.monotonic() + 60.0 * run.time_limit if run.time_limit is not None else None
    device = run.device or "auto"
    mode = "none" if run.quiet else progress_mode
    if not run.sweep:
        given = [name for name in SWEEP_ONLY if options.get(name) is not None]
        if given:
            raise InputError(f"{', '.join(given)}: need sweep", parameter=(*given, "sweep"))
        with progress_display(mode) as progress:
            result = run_score_match(cfg, run.out, device=device, report=bool(run.report), progress=progress,
                                     deadline=deadline)
        resumed = (f"resumed training at step {result.resumed_at_step} of {cfg.steps}; "
                   if result.resumed_at_step is not None else "")
        if not result.complete:
            echo(f"{resumed}training stopped at the time limit; state saved in {result.path}. Re-run the same "
                 "command to resume.")
            return EXIT_TIME_LIMIT
        for line in run_lines(result):
            echo(line)
        echo(f"{resumed}run folder: {result.path}" + (" (reused finished results)" if result.reused else ""))
        return 0
    sweep = resolve(SweepConfig, options, file, source=source, base=cfg)
    with progress_display(mode) as progress:
        res = run_sweep(sweep, run.out, device=device, report=run.report is not False, progress=progress,
                        deadline=deadline, shard=shard)
    for line in sweep_lines(res):
        echo(line)
    if run.export is not None:
        copied = export_compact(res.path, run.export)
        echo(f"exported {len(copied)} files to {run.export}: {', '.join(p.name for p in copied)}")
    if not res.own_groups_done:
        echo("sweep incomplete (time limit); re-run the same command to resume.")
        return EXIT_TIME_LIMIT
    if not res.complete:
        echo(f"this shard's groups are done; {res.cells_done} of {res.cells_total} cells finished. Run the other "
             "shards (or the same command without --shard) to merge every cell into the combined results.")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The plain front end (argparse; for ``scripts/score_match_sweep.py``): a sweep unless ``--no-sweep``,
    progress as plain lines, and ``--redraw DIR`` to draw the figures of an exported sweep later."""
    parser = argparse.ArgumentParser(description="Score matching on MoLRG (paper 1, Fig. 5): one run or a sweep, "
                                     "with only torch and numpy installed.")
    for cls in (ScoreMatchConfig, SweepConfig, RunOptions):
        add_arguments(parser, cls)
    parser.add_argument("--redraw", type=Path, default=None,
                        help="only draw the figures from DIR/sweep_metrics.json and DIR/sweep_time.csv")
    args = vars(parser.parse_args(argv))
    redraw = args.pop("redraw")
    if args["sweep"] is None:
        args["sweep"] = True
    try:
        if redraw is not None:
            source = redraw / "sweep_metrics.json"
            if not source.exists():
                raise InputError(f"redraw={str(redraw)!r}: no sweep_metrics.json there; pass the exported folder",
                                 parameter="redraw")
            times = redraw / "sweep_time.csv"
            summary = json.loads(source.read_text())
            time_rows = read_csv(times) if times.exists() else []
            if summary.get("config", {}).get("nk_over_d") and not (redraw / COLLAPSE_JSON).exists():
                write_collapse(redraw, summary, time_rows)
            print(draw_sweep(redraw, summary, time_rows))
            return 0
        return run_command(args, progress_mode="plain")
    except InputError as exc:
        print(f"error: {to_flags(str(exc), {**FLAGS, 'redraw': '--redraw'}, exc.parameter)}", file=sys.stderr)
        return 2

"""``cifar-optimal-gap`` as a command, whatever the front end: option values in, cells trained and evaluated,
combined results and printed lines out.

``mogsim cifar-optimal-gap`` (typer) and ``python -m mogsim.experiments.cifar_gap.command`` (argparse, for machines
with only torch and numpy) generate their options from the same declared parameters (:class:`GapConfig`,
:class:`GapRunOptions`, and the training engine's :class:`~mogsim.nets.NetOptions` (dropout, attention),
:class:`~mogsim.training.TrainConfig` and :class:`~mogsim.training.RuntimeOptions`) and call :func:`run_command`.
Values come from, in order: the command line, ``--config``, the profile (:mod:`.config`), the defaults.
Exit codes: 0 done, 3 stopped at the time limit (re-run to resume), 2 bad input (an
:class:`~mogsim.errors.InputError`). Every check runs before the first file is written.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ...devices import resolve_device
from ...errors import InputError
from ...metrics.similarity import make_similarity
from ...nets import NetOptions
from ...params import add_arguments, flags, key_to_name, read_config_file, resolve, to_flags, unknown_keys
from ...parsing import parse_seeds
from ...progress import progress_display
from ...provenance import provenance
from ...runs import RunFolder, make_folder, read_config, write_config
from ...training import RuntimeOptions, TrainConfig
from .cells import CELLS_DIR, discover_cells, eval_key, eval_settings, plan_cells, run_grid, shard_cells
from .combine import FORMAT, SUMMARY_FILE, combine, read_cross_imports
from .config import SAMPLER, GapConfig, GapRunOptions, deviations, pick_profile, profile_values
from .data import load_gap_data
from .launch import check_submitit, launch_shards
from ..text import short_number as _num

EXIT_TIME_LIMIT = 3
CLASSES = (GapConfig, GapRunOptions, NetOptions, TrainConfig, RuntimeOptions)
#: Engine parameters this command sets itself (per cell) or does not take.
SKIP = ("arch", "width", "seed")
FLAGS = {name: flag for name, flag in flags(*CLASSES).items() if name not in SKIP}
#: Option values for CUDA when not given (training as ``mogsim train`` does; compiling follows the engine's rule;
#: the evaluation's bf16 default rests on the fp32-vs-bf16 comparison in BENCHMARKS.md, issue 12).
CUDA_DEFAULTS = {"precision": "bf16", "eval_precision": "bf16"}


def _layer(file: Mapping[str, Any]) -> dict[str, Any]:
    """Config-file keys (parameter or flag names) as parameter names."""
    out = {}
    for key, value in file.items():
        names = {key_to_name(cls, key) for cls in CLASSES} - {key}
        out[names.pop() if names else key] = value
    return out


def resolve_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Every configuration object of a call, resolved and checked (nothing is read but the config file)."""
    config_file = options.get("config")
    file = read_config_file(config_file, option="config") if config_file is not None else {}
    source = f"config={str(config_file)!r}"
    bad = unknown_keys(file, *CLASSES, extra=())
    bad += [k for k in file if key_to_name(TrainConfig, k) in SKIP or key_to_name(NetOptions, k) in SKIP]
    if bad:
        raise InputError(f"{source}: unknown key(s) {', '.join(sorted(set(bad)))}; allowed: {', '.join(sorted(FLAGS))}",
                         parameter="config")
    layer = _layer(file)
    run = resolve(GapRunOptions, options, layer, source=source)
    device = resolve_device(run.device)
    profile = pick_profile(run.profile, device)
    given = {**layer, **{k: v for k, v in options.items() if v is not None}}
    merged = {**profile_values(profile, given), **layer}
    if device.type == "cuda":
        merged = {**CUDA_DEFAULTS, **merged}
    config = resolve(GapConfig, options, merged, source=source)
    config.check()
    train = resolve(TrainConfig, options, merged, source=source, net={})
    runtime = resolve(RuntimeOptions, options, merged, source=source, progress="none")
    net_options = resolve(NetOptions, options, merged, source=source)
    overrides = {k: getattr(net_options, k) for k in ("dropout", "attn_resolutions")
                 if getattr(net_options, k) is not None}
    if run.data is None and not run.merge:
        raise InputError("data: required; pass the CIFAR-10 folder (train.zip, test.zip) or archive", parameter="data")
    if run.launcher == "submitit":
        check_submitit(run)
    run.shard_pair()
    return {"run": run, "device": device, "profile": profile, "config": config, "train": train,
            "runtime": runtime, "net_overrides": overrides}


def run_command(options: Mapping[str, Any], *, echo: Callable[[str], None] = print, progress_mode: str = "auto",
                combine_results: bool = True) -> int:
    """Run the command from option values (None = not given); print the results; return the exit code."""
    r = resolve_options(options)
    run, device, config, train = r["run"], r["device"], r["config"], r["train"]
    backend = make_similarity(config.similarity, threshold=config.similarity_threshold, device=device)
    cells = plan_cells(config, train, r["net_overrides"])
    out = Path(run.out)
    RunFolder(out, kind=FORMAT).check_owner()
    key = eval_key(config, backend)
    imports = read_cross_imports(run.cross_from or ())
    data = None
    if not run.merge:
        data = load_gap_data(run.data, max(config.ns), subset_seed=config.subset_seed, resolution=config.resolution,
                             held_out=config.held_out, cache_dir=run.cache_dir)
    meta = {"config": config.to_dict(), "profile": r["profile"], "train": train.to_dict(),
            "runtime": r["runtime"].to_dict(), "net_overrides": r["net_overrides"],
            "deviations": deviations(config, train, r["profile"]),
            "evaluation": {"settings": eval_settings(config, train).record(), "sampler": SAMPLER,
                           "similarity": backend.record(), "eval_key": key,
                           "sample_seeds": config.sample_seeds,
                           "num_sample_seeds": len(parse_seeds(config.sample_seeds, option="sample_seeds"))},
            "cells": [{"name": c.name, "n": c.n, "net": c.net, "arch": c.arch, "width": c.model_channels,
                       "seed": c.seed, "key": c.key, "evaluation_points": [p.images for p in c.points]}
                      for c in cells]}
    stored = read_config(out / "config.json") or {}
    meta["data"] = data.record() if data is not None else stored.get("data")
    make_folder(out)
    if data is not None:
        write_config(out / "config.json", {"format": FORMAT, **{k: meta[k] for k in ("config", "profile", "train",
                                           "runtime", "data")}, "provenance": provenance(device)})
    t0 = time.perf_counter()
    complete = True
    shard = run.shard_pair()
    if not run.merge:
        deadline = time.monotonic() + 60.0 * run.time_limit if run.time_limit is not None else None
        if run.launcher == "submitit":
            complete = launch_shards(dict(options), run, len(cells), out, echo)
        else:
            mine = shard_cells(cells, shard)
            with progress_display("none" if run.quiet else progress_mode) as progress:
                grid = run_grid(mine, out, config, data, device, r["runtime"], backend, progress=progress,
                                deadline=deadline)
            complete = grid.complete
            trained = sum(o.status != "reused" for o in grid.outcomes)
            echo(f"{'shard ' + run.shard + ': ' if shard else ''}{len(mine)} cells: {trained} trained or evaluated "
                 f"now, {len(mine) - trained} reused; {grid.seconds:.0f} s")
    if shard is not None and not run.merge:
        echo(f"cells in {out / CELLS_DIR}; when every shard is done: the same command with --merge instead of "
             "--shard combines them")
        return 0 if complete else EXIT_TIME_LIMIT
    if not combine_results:
        return 0 if complete else EXIT_TIME_LIMIT
    if run.merge:
        planned = len(cells)
        cells = discover_cells(out, key, cells)
        meta["cells"] = [{"name": c.name, "n": c.n, "net": c.net, "arch": c.arch, "width": c.model_channels,
                          "seed": c.seed, "key": c.key, "evaluation_points": [p.images for p in c.points],
                          "planned": i < planned} for i, c in enumerate(cells)]
    meta["provenance"] = provenance(device)
    meta["seconds_this_call"] = time.perf_counter() - t0
    summary = combine(out, cells, key, backend, meta, imports)
    for line in result_lines(summary):
        echo(line)
    if run.report:
        from ...report import write_report

        written = write_report([out], out / "report.pdf")
        echo(f"report: {written.path} ({written.pages} pages)")
    echo(f"results: {out / SUMMARY_FILE}" + ("" if summary["complete"] else
                                             f" ({summary['points_done']} of {summary['points_total']} evaluation "
                                             "points; re-run the same command to continue)"))
    if not complete:
        echo("stopped at the time limit; state saved. Re-run the same command to resume.")
        return EXIT_TIME_LIMIT
    return 0


def result_lines(summary: Mapping[str, Any]) -> list[str]:
    """The printed results: every number read from the summary."""
    lines = [f"{'N':>6} {'net':<16} {'seed':>4} {'images':>10} {'RP optimum':>18} {'copies':>18} {'GL':>5} "
             f"{'loss/floor':>10}"]
    for rec in summary["records"]:
        lo, hi = rec["rp_optimum_ci"]
        clo, chi = rec["copy_fraction_ci"]
        lines.append(f"{rec['n']:>6} {rec['net']:<16} {rec['seed']:>4} {rec['images_seen']:>10,} "
                     f"{rec['rp_optimum']:>6.3f} [{lo:.2f},{hi:.2f}] {rec['copy_fraction']:>6.3f} [{clo:.2f},"
                     f"{chi:.2f}] {rec['gl']:>5.2f} {rec['loss_ratio']:>10.3g}")
    for c in summary["cross"]:
        if c["final"]:
            what = f"seed {c['seed']}" if c["kind"] == "widths" else c["net"]
            lines.append(f"RP between {c['kind']} at N = {c['n']} ({what}, {c['images_seen']:,} images): "
                         f"{c['a']} vs {c['b']}: {c['rp']:.3f} [{c['rp_ci'][0]:.2f}, {c['rp_ci'][1]:.2f}]"
                         + ("" if c.get("rp_mismatched") is None else
                            f" (mismatched-seed control {c['rp_mismatched']:.3f})")
                         + ("" if c.get("source", "computed") == "computed" else f" from {c['source']}"))
    mem = summary["memorization"]
    for c in mem["cells"]:
        if c["time"] is not None:
            when = f"{c['time']:,.0f} images"
        elif c["censored"] == "left":
            when = f"before {c['bound']:,.0f} images (already at the first point)"
        else:
            when = f"not reached by {c['bound']:,.0f} images" + (
                f" (projected {c['projected']:,.0f})" if c.get("projected") else "")
        lines.append(f"memorization time (copies >= {c['level']:g}) N = {c['n']} {c['net']} seed {c['seed']}: {when}")
    for f in mem["fits"]:
        if f["exponent"] is not None:
            ci = f["exponent_ci"]
            lines.append(f"fit t ~ N^b ({f['net']}, level {f['level']:g}): b = {_num(f['exponent'])}"
                         + (f" [{_num(ci[0])}, {_num(ci[1])}]" if ci else "") + f" over N = "
                         f"{', '.join(map(str, f['ns_fitted']))} ({f['cells_censored']} censored cells)")
    for claim in summary["paper_claims"]:
        lines.append(f"claim: {claim['paper']} -> {claim['agrees']} ({claim['measured']})")
    lines.append("deviations from the paper: " + "; ".join(summary["deviations"]))
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """The plain front end (argparse), for machines with only torch and numpy: progress as plain lines."""
    parser = argparse.ArgumentParser(prog="python -m mogsim.experiments.cifar_gap.command",
                                     description="How far trained UNets are from the empirical optimum on CIFAR-10 "
                                     "(paper 1, Figs. 2 and 4), along training time.")
    for cls in CLASSES:
        add_arguments(parser, cls, skip=SKIP)
    args = vars(parser.parse_args(argv))
    try:
        return run_command(args, progress_mode="plain")
    except InputError as exc:
        print(f"error: {to_flags(str(exc), FLAGS, exc.parameter)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

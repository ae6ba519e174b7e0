"""Speed-up of training M score-matching MLPs as one batched ensemble over training them one at a time, and the
cost of one point of the training-time axis (all M members judged at once) against the training time.

Both paths run mogsim's training engine (:class:`mogsim.training.Trainer`: batch gather, EDM noise, loss, per-member
gradient norms, Adam, EMA) on MoLRG training sets of the sweep's shapes. "One at a time" trains each model as an
MLP of M = 1 member (the same code a single ``mogsim score-match`` run uses); its time for M models is measured on
``--single-models`` of them and scaled to M. The time-axis point is :func:`mogsim.metrics.molrg_verdict.judge_members`
on the M members' verdict plans (``--eval-queries`` queries per level, ``--sample-seeds`` sampler seeds); the plans
are built once per cell and timed separately. Usage::

    python benchmarks/bench_score_match.py --device cuda --members 1,8,36,72 --steps 300 --json bench.json

Prints a table and optionally writes JSON (with provenance). Run from the repository root (no install needed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from mogsim.devices import resolve_device  # noqa: E402
from mogsim.experiments.score_match import ScoreMatchConfig, build_plan, make_problem, training_config  # noqa: E402
from mogsim.metrics.molrg_verdict import judge_members  # noqa: E402
from mogsim.provenance import provenance  # noqa: E402
from mogsim.training import DistContext, RuntimeOptions, Trainer  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_members(cfgs: list[ScoreMatchConfig], steps: int, warmup: int, device: torch.device) -> float:
    """Seconds per training step of one model holding ``cfgs`` as its members (after ``warmup`` untimed steps)."""
    sets = [make_problem(c)[1].float() for c in cfgs]
    trainer = Trainer(training_config(cfgs), sets, runtime=RuntimeOptions(log_every=10**12, progress="none"),
                      ctx=DistContext(device=device))
    trainer.fit(warmup)
    _sync(device)
    t0 = time.perf_counter()
    trainer.fit(warmup + steps)
    _sync(device)
    return (time.perf_counter() - t0) / steps


def time_axis_point(cfgs: list[ScoreMatchConfig], device: torch.device) -> dict[str, float]:
    """Seconds to build the M verdict plans and to judge the M members once (after one untimed warm-up)."""
    problems = [make_problem(c) for c in cfgs]
    trainer = Trainer(training_config(cfgs), [t.float() for _, t in problems],
                      runtime=RuntimeOptions(log_every=10**12, progress="none"), ctx=DistContext(device=device))
    trainer.fit(10)
    t0 = time.perf_counter()
    plans = [build_plan(c, mol, train, device) for c, (mol, train) in zip(cfgs, problems)]
    _sync(device)
    t_plan = time.perf_counter() - t0
    ema = trainer.ema_denoiser()
    judge = ema.denoise if ema.members > 1 else (lambda x, s: ema.denoise(x[0], s[0])[None])
    judge_members(plans, judge)
    _sync(device)
    t0 = time.perf_counter()
    judge_members(plans, judge)
    _sync(device)
    return {"plan_s": t_plan, "point_s": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--members", default="1,8,36", help="ensemble sizes M to time")
    p.add_argument("--steps", type=int, default=200, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--single-models", type=int, default=3, help="models timed one at a time (scaled to M)")
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--sweep-steps", type=int, default=30000, help="project the training time of a sweep this long")
    p.add_argument("--eval-queries", type=int, default=1024, help="verdict queries per level and query set")
    p.add_argument("--sample-seeds", type=int, default=1024, help="verdict sampler seeds")
    p.add_argument("--eval-points", type=int, default=10, help="points of the time axis, for the projection")
    p.add_argument("--no-time-axis", action="store_true", help="skip timing the time-axis point")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    ranks, ns = (2, 4, 6, 8), [2**k for k in range(4, 13)]
    grid = [ScoreMatchConfig(rank=r, num_train=n, width=args.width, depth=args.depth, batch=args.batch,
                             eval_queries=args.eval_queries, sample_seeds=args.sample_seeds)
            for r in ranks for n in ns]
    members = [int(m) for m in args.members.split(",")]
    single = [time_members([grid[(i * 7) % len(grid)]], args.steps, args.warmup, device)
              for i in range(args.single_models)]
    t_single = sum(single) / len(single)
    rows = []
    for m in members:
        cfgs = [grid[i % len(grid)] for i in range(m)]
        t_ens = time_members(cfgs, args.steps, args.warmup, device)
        rows.append({"members": m, "ensemble_ms_per_step": 1e3 * t_ens, "one_at_a_time_ms_per_step": 1e3 * m * t_single,
                     "speedup": m * t_single / t_ens, "model_steps_per_s": m / t_ens})
    print(f"device: {device} ({provenance(device).get('device_name')}); width {args.width}, depth {args.depth}, "
          f"batch {args.batch}; one model alone: {1e3 * t_single:.3f} ms/step")
    print(f"{'M':>5} {'ensemble ms/step':>17} {'one-at-a-time ms/step':>22} {'speed-up':>9} {'model-steps/s':>14}")
    for r in rows:
        print(f"{r['members']:>5} {r['ensemble_ms_per_step']:>17.3f} {r['one_at_a_time_ms_per_step']:>22.3f} "
              f"{r['speedup']:>9.2f} {r['model_steps_per_s']:>14.0f}")
    big = rows[-1]
    projection = {"members": big["members"], "steps": args.sweep_steps,
                  "ensemble_s": big["ensemble_ms_per_step"] * args.sweep_steps / 1e3,
                  "one_at_a_time_s": big["one_at_a_time_ms_per_step"] * args.sweep_steps / 1e3}
    print(f"training {projection['members']} models for {args.sweep_steps} steps: ensemble "
          f"{projection['ensemble_s']:.0f} s, one at a time {projection['one_at_a_time_s']:.0f} s (projected)")
    if not args.no_time_axis:
        point = time_axis_point([grid[i % len(grid)] for i in range(big["members"])], device)
        extra = (args.eval_points - 1) * point["point_s"] / max(projection["ensemble_s"], 1e-9)
        projection.update(point, eval_points=args.eval_points, time_axis_extra_fraction=extra)
        print(f"time axis, {big['members']} members: plans {point['plan_s']:.2f} s once, {point['point_s']:.3f} s per "
              f"point; {args.eval_points - 1} intermediate points = {100 * extra:.1f}% of the projected training time")
    result = {"device": str(device), "sweep_projection": projection, "width": args.width, "depth": args.depth, "batch": args.batch,
              "steps_timed": args.steps, "single_model_ms_per_step": 1e3 * t_single,
              "single_model_samples_ms": [1e3 * s for s in single], "rows": rows, "provenance": provenance(device)}
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()

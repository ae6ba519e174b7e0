"""Run the score-matching sweep (paper 1, Fig. 5) from a plain checkout: needs only torch and numpy.

The same computation as ``mogsim score-match --sweep`` (the library's :func:`run_sweep`), for machines where mogsim
is not installed and typer, rich or matplotlib may be missing (figures are then drawn later with ``--redraw``).
Run from the repository root::

    python scripts/score_match_sweep.py --device cuda --ranks 2,4,6,8 --ns 16,32,...,4096 --seeds 0-2 \\
        --steps 20000 --eval-queries 2048 --sample-seeds 1024 --out runs/sweep-gpu --export "$OUT" --time-limit 6.5

Re-running the same command resumes (finished groups and cells are reused; an interrupted training continues from
its last saved state). ``--export DIR`` copies the combined results, at most 6 files, into DIR.
``--redraw DIR`` draws ``sweep_fig5.png/.pdf`` and ``sweep_report.pdf`` from the ``sweep_metrics.json`` in DIR.
Exit status: 0 done, 3 stopped at the time limit (re-run to resume), 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mogsim.errors import InputError  # noqa: E402
from mogsim.experiments.score_match import ScoreMatchConfig  # noqa: E402
from mogsim.experiments.score_match_sweep import SweepConfig, draw_sweep, export_compact, run_sweep  # noqa: E402
from mogsim.parsing import parse_int_list, parse_seeds  # noqa: E402


class _Plain:
    """A progress printer without rich: one line every 10 % (and at the end) per task."""

    def __call__(self, description: str, total: int):
        state = {"done": 0, "next": max(total // 10, 1), "t0": time.monotonic()}

        def advance(k: int) -> None:
            state["done"] += k
            if state["done"] >= state["next"] or state["done"] >= total:
                el = time.monotonic() - state["t0"]
                print(f"  {description}: {state['done']}/{total} ({el:.0f} s)", flush=True)
                state["next"] += max(total // 10, 1)

        return advance


def main(argv: list[str] | None = None) -> int:
    d = ScoreMatchConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ranks", default="2,4,6,8")
    p.add_argument("--ns", default="16,32,...,4096")
    p.add_argument("--seeds", default="0")
    p.add_argument("--components", type=int, default=d.components)
    p.add_argument("--dim", type=int, default=d.dim)
    p.add_argument("--arch", default=d.arch)
    p.add_argument("--width", type=int, default=d.width)
    p.add_argument("--depth", type=int, default=d.depth)
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--eval-queries", type=int, default=d.eval_queries)
    p.add_argument("--sample-seeds", type=int, default=d.sample_seeds)
    p.add_argument("--group-size", type=int, default=0, help="models per ensemble; 0 = all at once")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=Path("runs/score-match-sweep"))
    p.add_argument("--export", type=Path, default=None)
    p.add_argument("--time-limit", type=float, default=None, help="minutes")
    p.add_argument("--no-report", action="store_true")
    p.add_argument("--redraw", type=Path, default=None, help="only draw figures from DIR/sweep_metrics.json")
    args = p.parse_args(argv)
    try:
        if args.redraw is not None:
            source = args.redraw / "sweep_metrics.json"
            if not source.exists():
                raise InputError(f"--redraw {args.redraw}: no sweep_metrics.json there; pass the exported folder")
            summary = json.loads(source.read_text())
            print(draw_sweep(args.redraw, summary, report=not args.no_report))
            return 0
        base = ScoreMatchConfig(components=args.components, dim=args.dim, arch=args.arch, width=args.width,
                                depth=args.depth, steps=args.steps, batch=args.batch, lr=args.lr,
                                eval_queries=args.eval_queries, sample_seeds=args.sample_seeds)
        sweep = SweepConfig(base=base, ranks=parse_int_list(args.ranks, option="--ranks"),
                            ns=parse_int_list(args.ns, option="--ns"), seeds=tuple(parse_seeds(args.seeds)),
                            group_size=args.group_size)
        deadline = time.monotonic() + 60 * args.time_limit if args.time_limit else None
        res = run_sweep(sweep, args.out, device=args.device, report=not args.no_report, progress=_Plain(),
                        deadline=deadline)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{'r':>3} {'N':>6} {'seed':>4} {'L_true(band)':>12} {'L_emp(band)':>12} {'gen.idx':>8} {'copies':>7} "
          f"{'RP_true':>7} verdict")
    for r in res.rows:
        def f(k: str) -> str:
            v = r.get(k)
            return f"{v:.3g}" if isinstance(v, float) else str(v)
        print(f"{r['rank']:>3} {r['n']:>6} {r['seed']:>4} {f('l_score_true_band'):>12} "
              f"{f('l_score_empirical_band'):>12} {f('generalization_index'):>8} {f('copy_fraction_net'):>7} "
              f"{f('rp_net_true'):>7} {r['verdict']}")
    tr = res.summary.get("transitions", {})
    print("N*(r):", tr.get("n_star"), " fit N* ~ r^b, b =", tr.get("slope"))
    print("timing:", json.dumps(res.summary.get("timing", res.timing)))
    print(f"{res.cells_done}/{res.cells_total} cells done ({res.reused_cells} reused); folder {res.path}")
    if args.export is not None:
        copied = export_compact(res.path, args.export)
        print(f"exported {len(copied)} files to {args.export}: {', '.join(c.name for c in copied)}")
    if not res.complete:
        print("stopped at the time limit: re-run the same command to resume")
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())

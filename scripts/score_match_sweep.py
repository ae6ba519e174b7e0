"""Run the score-matching sweep (paper 1, Fig. 5) from a plain checkout: needs only torch and numpy.

The same computation and options as ``mogsim score-match --sweep`` (:func:`mogsim.experiments.score_match.main`),
for machines where mogsim is not installed and typer, rich or matplotlib may be missing (figures are then drawn
later with ``--redraw``). Run from the repository root::

    python scripts/score_match_sweep.py --device cuda --ranks 2,4,6,8 --ns 16,32,...,4096 --seeds 0-2 \\
        --steps 30000 --lr 1e-3 --eval-queries 1024 --sample-seeds 1024 --out runs/sweep-gpu --export "$OUT" \\
        --time-limit 4.1 --no-report

Re-running the same command resumes (finished groups and cells are reused; an interrupted training continues from
its last checkpoint). ``--export DIR`` copies the combined results, at most 11 files, into DIR. ``--redraw DIR``
draws ``sweep_fig5.png`` and ``sweep_time.png`` from the ``sweep_metrics.json`` and ``sweep_time.csv`` in DIR (and,
for a sweep over ``--nk-over-d``, paper 2's collapse: ``sweep_collapse.json`` and ``.csv`` when missing, and
``sweep_collapse.png`` and ``.pdf``);
``mogsim report DIR`` writes the PDF report where reportlab is installed. ``--help`` lists every option. Exit status: 0 done, 3 stopped at the time limit (re-run to resume), 2 bad input.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mogsim.experiments.score_match import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

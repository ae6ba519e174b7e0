"""``mogsim theory``: derive the closed forms with sympy, check them against mogsim, print them, write LaTeX, and
with ``--out DIR`` a results folder (``theory_results.json`` + ``theory.tex``) that ``mogsim report`` reads."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Optional, Sequence

import typer

from mogsim.errors import InputError
from mogsim.io import atomic_path, ensure_writable_dir, write_json
from mogsim.theory import NUMERIC_TOL, RESULT_MODULES, Outcome, run_all, select
from mogsim.theory.latex import render

#: The results file of ``mogsim theory --out DIR`` (its ``format`` field names it).
RESULTS_FILE = "theory_results.json"
RESULTS_FORMAT = "mogsim-theory-results"
LATEX_FILE = "theory.tex"

HELP_ONLY = f"Run only this result (repeatable, or comma-separated): {', '.join(RESULT_MODULES)}."


def _names(only: Optional[list[str]]) -> list[str]:
    return [n.strip() for item in (only or []) for n in item.split(",") if n.strip()]


def _latex_target(path: Path) -> Path:
    """Check before any work that ``path`` can be written; an InputError otherwise."""
    if path.is_dir():
        raise InputError(f"--latex {path}: is a folder; give a file name, e.g. {path / 'theory.tex'}")
    ensure_writable_dir(path.parent, option="--latex")
    return path


def format_outcome(outcome: Outcome) -> str:
    """A result as terminal text: status and title, statement, then one line per check."""
    result = outcome.result
    lines = [f"[{outcome.status}] {result.name}: {result.title}  ({outcome.seconds:.1f} s)"]
    lines += textwrap.wrap(result.statement, width=110, initial_indent="    ", subsequent_indent="    ")
    for check in outcome.checks:
        mark = "ok  " if check.passed else "FAIL"
        detail = f" -- {check.detail}" if check.detail else ""
        lines.append(f"  {mark} {check.kind:<8} {check.description}{detail}")
    if outcome.error is not None:
        lines.append(f"  FAIL error    {outcome.error}")
    return "\n".join(lines)


def results_record(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """The JSON-ready results of a theory run: each result's status, checks and timing, a summary, provenance."""
    import sympy as sp

    from mogsim.provenance import provenance

    results = []
    for o in outcomes:
        kinds = [c.kind for c in o.checks]
        results.append({
            "name": o.result.name, "title": o.result.title, "statement": o.result.statement, "status": o.status,
            "seconds": o.seconds, "error": o.error,
            "counts": {"symbolic": kinds.count("symbolic"), "numeric": kinds.count("numeric"),
                       "passed": sum(c.passed for c in o.checks), "total": len(o.checks)},
            "checks": [{"kind": c.kind, "description": c.description, "passed": c.passed, "detail": c.detail}
                       for c in o.checks],
            "display_latex": [sp.latex(e) for e in o.derivation.display] if o.derivation is not None else [],
        })
    verified = sum(o.status == "verified" for o in outcomes)
    return {"format": RESULTS_FORMAT, "version": 1,
            "summary": {"verified": verified, "total": len(outcomes), "seconds": sum(o.seconds for o in outcomes),
                        "numeric_tolerance": NUMERIC_TOL},
            "rule": "A result is verified when every symbolic claim reduces to exactly 0 in sympy and every derived "
                    "formula, lambdified, matches mogsim's float64 implementation to a relative error below the "
                    "numeric tolerance at seeded random points.",
            "latex_file": LATEX_FILE, "results": results, "provenance": provenance()}


def _write_text(target: Path, text: str, option: str) -> None:
    try:
        with atomic_path(target) as tmp:
            tmp.write_text(text)
    except OSError as exc:
        raise InputError(f"{option} {target}: cannot write it ({exc.strerror})") from None


def register(app: typer.Typer) -> None:
    """Add the ``theory`` command to ``app``."""

    @app.command("theory")
    def theory(
        latex: Optional[Path] = typer.Option(None, "--latex", metavar="FILE",
                                             help="Also write the results as a LaTeX fragment to FILE."),
        only: Optional[list[str]] = typer.Option(None, "--only", metavar="NAME", help=HELP_ONLY),
        out: Optional[Path] = typer.Option(None, "--out", metavar="DIR",
                                           help=f"Also write a results folder: {RESULTS_FILE} (status, checks, "
                                                f"timings, provenance) and {LATEX_FILE}; `mogsim report DIR` reads it."),
        report: bool = typer.Option(False, "--report", help="With --out: also write DIR/report.pdf."),
    ) -> None:
        """Derive each closed form with sympy and check it against mogsim; exit 1 if any check fails.

        A result is verified when every symbolic claim reduces to exactly 0 and every derived formula matches
        mogsim's float64 implementation to a relative error below 1e-10 at random points.
        """
        names = _names(only)
        selected = select(names)
        target = _latex_target(latex) if latex is not None else None
        if report and out is None:
            raise InputError("--report needs --out DIR (the report is written to DIR/report.pdf)")
        folder = ensure_writable_dir(out, option="--out") if out is not None else None
        outcomes = run_all([r.name for r in selected], on_outcome=lambda o: typer.echo(format_outcome(o)))
        verified = sum(o.status == "verified" for o in outcomes)
        total = sum(o.seconds for o in outcomes)
        typer.echo(f"theory: {verified} of {len(outcomes)} results verified ({total:.1f} s)")
        if target is not None:
            _write_text(target, render(outcomes), "--latex")
            typer.echo(f"LaTeX written to {target}")
        if folder is not None:
            _write_text(folder / LATEX_FILE, render(outcomes), "--out")
            write_json(folder / RESULTS_FILE, results_record(outcomes))
            typer.echo(f"results written to {folder / RESULTS_FILE} and {folder / LATEX_FILE}")
            if report:
                from mogsim.report import write_report

                written = write_report([folder], folder / "report.pdf")
                typer.echo(f"report written to {written.path} ({written.pages} pages)")
        if verified < len(outcomes):
            raise typer.Exit(1)

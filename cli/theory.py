"""``mogsim theory``: derive the closed forms with sympy, check them against mogsim, print them, write LaTeX."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Optional

import typer

from mogsim.errors import InputError
from mogsim.io import atomic_path, ensure_writable_dir
from mogsim.theory import RESULT_MODULES, Outcome, run_all, select
from mogsim.theory.latex import render

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


def register(app: typer.Typer) -> None:
    """Add the ``theory`` command to ``app``."""

    @app.command("theory")
    def theory(
        latex: Optional[Path] = typer.Option(None, "--latex", metavar="FILE",
                                             help="Also write the results as a LaTeX fragment to FILE."),
        only: Optional[list[str]] = typer.Option(None, "--only", metavar="NAME", help=HELP_ONLY),
    ) -> None:
        """Derive each closed form with sympy and check it against mogsim; exit 1 if any check fails.

        A result is verified when every symbolic claim reduces to exactly 0 and every derived formula matches
        mogsim's float64 implementation to a relative error below 1e-10 at random points.
        """
        names = _names(only)
        selected = select(names)
        target = _latex_target(latex) if latex is not None else None
        outcomes = run_all([r.name for r in selected], on_outcome=lambda o: typer.echo(format_outcome(o)))
        verified = sum(o.status == "verified" for o in outcomes)
        total = sum(o.seconds for o in outcomes)
        typer.echo(f"theory: {verified} of {len(outcomes)} results verified ({total:.1f} s)")
        if target is not None:
            try:
                with atomic_path(target) as tmp:
                    tmp.write_text(render(outcomes))
            except OSError as exc:
                raise InputError(f"--latex {target}: cannot write it ({exc.strerror})") from None
            typer.echo(f"LaTeX written to {target}")
        if verified < len(outcomes):
            raise typer.Exit(1)

"""``mogsim report``: one paper-style PDF (and optionally an HTML twin) from run folders of any experiment."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .options import flag_errors


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to ``app``."""

    @app.command("report")
    def report(
        run_dirs: list[Path] = typer.Argument(..., metavar="RUN_DIR",
                                              help="Run folders or sweep folders (score-match, train, theory --out); "
                                                   "a folder of run folders stands for all of them."),
        out: Path = typer.Option(Path("report.pdf"), "--out", "-o", metavar="FILE", help="The PDF to write."),
        html: Optional[Path] = typer.Option(None, "--html", metavar="FILE",
                                            help="Also write the report as one self-contained HTML file."),
    ) -> None:
        """Write one PDF report: a title page with each question, its answer and the key figure; per run folder a
        section with the paper's claims against the stored measurements, methods, figures and tables; and the
        provenance of every run. Every number printed is read from the run folders' files."""
        from mogsim.report import write_report

        with flag_errors({"out_pdf": "--out", "html": "--html", "run_dirs": "RUN_DIR"}):
            result = write_report(run_dirs, out, html=html)
        kinds = ", ".join(s.kind for s in result.sections)
        typer.echo(f"report written to {result.path} ({result.pages} pages; sections: {kinds})")
        if result.html is not None:
            typer.echo(f"HTML written to {result.html}")

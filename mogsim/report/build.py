"""``write_report``: one PDF (and optionally an HTML twin) from any mix of run folders, written atomically."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..errors import InputError
from ..io import atomic_path
from .files import RunFiles
from .printed import Entry, new_ledger
from .sections import Section, expand


@dataclass
class ReportResult:
    """What :func:`write_report` wrote: the PDF, its page count, the sections and every value it printed."""

    path: Path
    pages: int
    sections: list[Section]
    #: Every value the PDF's text shows, with its source (numbers and stored strings) or role (structural).
    printed: list[Entry] = field(default_factory=list)
    html: Path | None = None


def check_target(path: str | os.PathLike, name: str = "out_pdf") -> Path:
    """An output file path whose folder exists and is writable; an :class:`InputError` naming ``name`` otherwise."""
    target = Path(path)
    if target.is_dir():
        raise InputError(f"{name}={str(target)!r}: is a folder; give a file name, e.g. {target / 'report.pdf'}",
                         parameter=name)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{name}={str(target)!r}: the folder {parent} does not exist; create it or choose another "
                         "path", parameter=name)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{name}={str(target)!r}: cannot write in {parent}; choose a writable folder", parameter=name)
    return target


def write_report(run_dirs: Sequence[str | os.PathLike], out_pdf: str | os.PathLike, *,
                 html: str | os.PathLike | None = None) -> ReportResult:
    """Write one PDF report of ``run_dirs`` (run folders, sweep folders, or folders of run folders) to ``out_pdf``.

    Each folder contributes a section (see :mod:`mogsim.report.sections`). Bad input (a missing folder, one of
    unknown kind, a missing or damaged file, an unwritable target) is an :class:`InputError` before anything is
    written; the PDF appears complete or not at all.
    """
    if not run_dirs:
        raise InputError("run_dirs: give at least one run folder", parameter="run_dirs")
    target = check_target(out_pdf)
    html_target = check_target(html, "html") if html is not None else None
    from .layout import plan
    from .typeset import Typesetter

    with new_ledger() as ledger:
        found = expand([Path(p) for p in run_dirs])
        folders = [(path, kind.name) for path, kind in found]
        sections = [kind.build(RunFiles(path)) for path, kind in found]
        layout = plan(sections)
        with atomic_path(target) as tmp:
            pages = Typesetter(layout, ledger).write(tmp, folders)
        printed = list(ledger.rendered)
        if html_target is not None:
            from .html import render_html

            with atomic_path(html_target) as tmp:
                tmp.write_text(render_html(layout, folders), encoding="utf-8")
    return ReportResult(target, pages, sections, printed, html_target)

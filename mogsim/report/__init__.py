"""Reports of runs: paper-style PDF (and HTML) from run folders, and the figures they show.

* :func:`write_report` (:mod:`.build`): ``mogsim report RUN_DIR ... --out report.pdf``;
* :mod:`.sections`: the interface an experiment implements to contribute a section (one module per experiment:
  :mod:`.score_match`, :mod:`.train`, :mod:`.theory`);
* :mod:`.figures`: matplotlib figures (also used by the experiments for their PNGs);
* :mod:`.pdf`: the old matplotlib-page reports, kept until the experiments call :func:`write_report`.

Nothing heavy is imported until used: ``import mogsim.report`` needs neither reportlab nor matplotlib, so a GPU
image with only torch and numpy can import the package (and skips drawing).
"""

from __future__ import annotations

from typing import Any

__all__ = ["ReportResult", "write_report"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Figures and PDF reports of runs and sweeps (matplotlib, drawn without pyplot on the Agg canvas).

* :mod:`.figures` -- per-sigma errors of a run, sample statistics, the Fig. 5-style sweep summary, text pages;
* :mod:`.pdf` -- multi-page PDF assembly with ``PdfPages``.

Imported lazily by the experiments, so the numeric core runs where matplotlib is missing.
"""

from .figures import per_sigma_figure, samples_figure, sweep_figure, text_figure
from .pdf import write_pdf, write_run_report, write_sweep_report

__all__ = ["per_sigma_figure", "samples_figure", "sweep_figure", "text_figure", "write_pdf", "write_run_report",
           "write_sweep_report"]

"""The old PDF reports of score-matching runs and sweeps (matplotlib's ``PdfPages``: text pages and figures).

Superseded by :func:`mogsim.report.write_report` (``mogsim report``). Kept only while ``mogsim.experiments``
still calls :func:`write_run_report` and :func:`write_sweep_report`; delete this module once they call
``write_report([folder], folder / "report.pdf")`` instead.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from ..io import atomic_path
from .figures import per_sigma_figure, samples_figure, sweep_figure, text_figure


def write_pdf(path: str | os.PathLike, figures: Sequence[Figure], *, title: str = "mogsim report") -> Path:
    """Write the figures as the pages of one PDF, atomically."""
    with atomic_path(path) as tmp:
        with PdfPages(tmp, metadata={"Title": title, "Creator": "mogsim"}) as pdf:
            for fig in figures:
                pdf.savefig(fig)
    return Path(path)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _wrap(text: str, width: int = 110) -> list[str]:
    words, lines, cur = text.split(), [], ""
    for w in words:
        if len(cur) + len(w) + 1 > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}".strip()
    if cur:
        lines.append(cur)
    return lines


def _kv(key: str, value: Any, width: int = 24) -> list[str]:
    """``key value`` lines, long values wrapped under the value column."""
    text = json.dumps(value) if isinstance(value, (dict, list)) else _fmt(value)
    pad = " " * (width + 3)
    chunks = [text[i:i + 100 - width] for i in range(0, len(text), 100 - width)] or [""]
    return [f"  {key:{width}s} {chunks[0]}"] + [pad + c for c in chunks[1:]]


def run_summary_lines(config: Mapping[str, Any], metrics: Mapping[str, Any],
                      provenance: Mapping[str, Any]) -> list[str]:
    """The text of a run report's first page."""
    lines = ["Configuration (resolved):"]
    for k, v in config.items():
        lines += _kv(k, v)
    lines += ["", "Metrics:"]
    for k, v in metrics.items():
        if isinstance(v, (int, float, str)) and k not in ("verdict_detail",):
            lines += _kv(k, v, 34)
    training = metrics.get("training", {})
    if training:
        lines += ["", "Training:"]
        for k, v in training.items():
            lines += _kv(k, v)
    detail = metrics.get("verdict_detail", {})
    lines += ["", f"Verdict: {metrics.get('verdict')}"]
    for text in (detail.get("reason", ""), detail.get("rule", "")):
        lines += ["  " + s for s in _wrap(text)]
    lines += ["", "Provenance:"]
    for k, v in provenance.items():
        lines += _kv(k, v, 14)
    return lines


def write_run_report(path: str | os.PathLike, config: Mapping[str, Any], metrics: Mapping[str, Any],
                     provenance: Mapping[str, Any], per_sigma: Sequence[Mapping[str, Any]],
                     per_sample: Mapping[str, np.ndarray]) -> Path:
    """A report of one run: summary page, per-sigma errors, sample statistics."""
    title = (f"mogsim score-match: r={config.get('rank')}, N={config.get('n')}, K={config.get('components')}, "
             f"n={config.get('dim')}, {config.get('arch')} width {config.get('width')}, {config.get('steps')} steps")
    pages = [text_figure(title, run_summary_lines(config, metrics, provenance)),
             per_sigma_figure(per_sigma, title),
             samples_figure(per_sample, float(config["copy_ratio"]), float(config["subspace_tol"]),
                            float(config["rp_threshold"]))]
    return write_pdf(path, pages, title=title)


def sweep_table_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """A fixed-width text table of a sweep's cells."""
    cols = [("rank", "r"), ("n", "N"), ("seed", "seed"), ("l_score_true_band", "Ltrue(band)"),
            ("l_score_empirical_band", "Lemp(band)"), ("generalization_index", "gen.idx"),
            ("copy_fraction_net", "copies"), ("rp_net_true", "RP-true"), ("rp_net_empirical", "RP-emp"),
            ("verdict", "verdict")]
    lines = ["  ".join(f"{h:>11s}" for _, h in cols)]
    for r in rows:
        lines.append("  ".join(f"{_fmt(_num(r.get(k))):>11s}" for k, _ in cols))
    return lines


def _num(v: Any) -> Any:
    try:
        f = float(v)
        return int(f) if f.is_integer() and abs(f) < 1e9 and "." not in str(v) else f
    except (TypeError, ValueError):
        return v


def write_sweep_report(path: str | os.PathLike, summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> Path:
    """A report of a sweep: summary and transition page, the Fig. 5-style figure, the table."""
    tr = summary.get("transitions", {})
    base = summary.get("config", {}).get("base", {})
    title = (f"mogsim score-match sweep: K={base.get('components')}, n={base.get('dim')}, {base.get('arch')} "
             f"width {base.get('width')}, {base.get('steps')} steps x batch {base.get('batch')}")
    lines = ["Sweep configuration:"]
    for k, v in summary.get("config", {}).items():
        lines += _kv(k, v, 12)
    lines += _kv("budget", summary.get("budget", {}), 12)
    lines += ["", "Transition N*(r): smallest N at which the generalization index (mean position over the decisive",
              "noise levels; 0 = empirical optimum, 1 = true score) crosses 0.5, log-linear interpolation:"]
    per = tr.get("n_star_per_component_per_rank", {})
    for rank, nstar in tr.get("n_star", {}).items():
        extra = f"   (N* / (K r) = {_fmt(per.get(rank))} samples per component per dimension)" if nstar else ""
        lines.append(f"  r = {rank:>3s}: N* = {_fmt(nstar) if nstar else 'not crossed in range'}{extra}")
    if tr.get("slope") is not None:
        lines.append(f"  fit N* ~ r^b: b = {tr['slope']:.3g}   (b = 1: linear in r, the paper's claim)")
    for text in summary.get("notes", []):
        lines += [""] + _wrap(text)
    lines += ["", "Timing (seconds):"]
    for k, v in summary.get("timing", {}).items():
        lines += _kv(k, v, 26)
    lines += ["", "Provenance:"]
    for k, v in summary.get("provenance", {}).items():
        lines += _kv(k, v, 14)
    pages = [text_figure(title, lines), sweep_figure(rows, tr, title)]
    table = sweep_table_lines(rows)
    for i in range(0, len(table) - 1, 80):
        pages.append(text_figure("Cells", [table[0]] + table[1 + i:1 + i + 80], fontsize=6.5))
    return write_pdf(path, pages, title=title)

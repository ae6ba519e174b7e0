"""The text a score-matching run or sweep prints: per-sigma table, totals, sample statistics, verdict; the sweep
table and N*(r). Plain lines, shared by ``mogsim score-match`` and ``scripts/score_match_sweep.py``."""

from __future__ import annotations

from typing import Any

from ..text import short_number as _num
from .run import RunResult
from .sweep import SweepResult


def _decisive(v: Any) -> bool:
    return str(v).lower() in ("true", "1")


def run_lines(result: RunResult) -> list[str]:
    """The per-sigma table, the totals and sample statistics, the budget and the one-line verdict of a run."""
    m = result.metrics
    detail = m.get("verdict_detail", {})
    by = {(r["queries"], float(r["sigma"])): r for r in result.per_sigma}
    sigmas = sorted({float(r["sigma"]) for r in result.per_sigma}, reverse=True)
    lines = ["Per-sigma L_score = E||D_net - D_ref||^2 / E||D_ref - x||^2 against the true (L_true) and empirical "
             "(L_emp) references;",
             "t = position between them (0 = empirical, 1 = true); * = decisive level (see the rule in metrics.json)",
             "",
             f"{'':>8} | {'x = noisy true data':^30} | {'x = noisy training points':^30}",
             f"{'sigma':>8} | {'L_true':>8} {'L_emp':>8} {'t':>6} {'':>4} | {'L_true':>8} {'L_emp':>8} {'t':>6} "
             f"{'':>4}",
             "-" * 75]
    for s in sigmas:
        cells = []
        for q in ("true", "train"):
            r = by[(q, s)]
            cells.append(f"{float(r['l_score_true']):>8.2g} {float(r['l_score_empirical']):>8.2g} "
                         f"{float(r['position']):>6.2f} {'*' if _decisive(r['decisive']) else '':>4}")
        lines.append(f"{s:>8.4g} | {cells[0]} | {cells[1]}")
    band = m.get("band_sigmas") or []
    band_text = f"{min(band):.3g}..{max(band):.3g}" if band else "(none)"
    totals = [("L_score vs true, grid total", m["l_score_true"]),
              ("L_score vs empirical, grid total", m["l_score_empirical"]),
              (f"L_score vs true, band sigma {band_text}", m.get("l_score_true_band")),
              (f"L_score vs empirical, band sigma {band_text}", m.get("l_score_empirical_band")),
              ("generalization index (0 emp .. 1 true)", detail.get("generalization_index")),
              ("copies: net / empirical / true",
               (m["copy_fraction_net"], m["copy_fraction_empirical"], m["copy_fraction_true"])),
              ("on a subspace: net / empirical / true",
               (m["on_subspace_fraction_net"], m["on_subspace_fraction_empirical"], m["on_subspace_fraction_true"])),
              ("RP net vs empirical / vs true", (m["rp_net_empirical"], m["rp_net_true"]))]
    lines += ["", "Totals and samples"]
    for name, v in totals:
        lines.append(f"  {name:<44} {' / '.join(_num(x) for x in v) if isinstance(v, tuple) else _num(v):>18}")
    b = m.get("budget", {})
    lines += ["", f"budget: {b.get('steps')} steps x batch {b.get('batch')} = {b.get('samples_seen')} samples seen "
                  f"({_num(b.get('epochs'))} epochs); the transition moves with the budget",
              f"verdict: {m['verdict'].upper()}: {detail.get('reason', '')}"]
    return lines


SWEEP_COLUMNS = (("rank", "r"), ("n", "N"), ("seed", "seed"), ("l_score_true_band", "L true (band)"),
                 ("l_score_empirical_band", "L emp (band)"), ("generalization_index", "gen. index"),
                 ("copy_fraction_net", "copies"), ("rp_net_true", "RP true"), ("verdict", "verdict"))


def sweep_lines(res: SweepResult) -> list[str]:
    """The sweep table, N*(r), the fit and where the results are."""
    widths = [max(len(h), 6) for _, h in SWEEP_COLUMNS]
    lines = ["Sweep: trained denoisers vs the empirical and the true MoLRG score",
             " ".join(f"{h:>{w}}" for (_, h), w in zip(SWEEP_COLUMNS, widths))]
    for row in res.rows:
        lines.append(" ".join(f"{_num(row.get(k)):>{w}}" for (k, _), w in zip(SWEEP_COLUMNS, widths)))
    tr = res.summary.get("transitions", {})
    stars = ", ".join(f"r={k}: {_num(v) if v else 'not crossed'}" for k, v in tr.get("n_star", {}).items())
    lines.append(f"N*(r) (generalization index crosses 0.5): {stars}")
    if tr.get("slope") is not None:
        lines.append(f"fit N* ~ r^b: b = {tr['slope']:.3g} (1 = linear in r)")
    lines.append(f"{res.cells_done}/{res.cells_total} cells done ({res.reused_cells} reused); results in {res.path}")
    return lines

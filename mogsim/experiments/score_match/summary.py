"""The text a score-matching run or sweep prints: the verdict's band, the samples against chance, the training-time
axis and the verdict line; for a sweep its table, N*(r) under every measure with intervals, the fits and the time
exponents. Plain lines, shared by ``mogsim score-match`` and ``scripts/score_match_sweep.py``."""

from __future__ import annotations

from typing import Any

from ..text import short_number as _num
from .run import RunResult
from .sweep import SweepResult


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    cells = [[_num(v) if not isinstance(v, str) else v for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)]
    return [" ".join(f"{h:>{w}}" for h, w in zip(header, widths))] + \
        [" ".join(f"{c:>{w}}" for c, w in zip(r, widths)) for r in cells]


def run_lines(result: RunResult) -> list[str]:
    """The verdict's band levels, the per-sigma L_score totals, the samples, the time axis and the verdict line."""
    m = result.metrics
    d = m["verdict_detail"]
    lines = ["Accuracy at the verdict's noise levels (rel = E||D_net - D_ref||^2 / error of the best a + c x; "
             "1 = no better than a data-agnostic map):"]
    band = [[lv_f["sigma"], lv_f["rel_true"], lv_t["rel_true"], lv_t["rel_empirical"], lv_f["separation"]]
            for lv_f, lv_t in zip(d["per_level"]["fresh"], d["per_level"]["train"])]
    lines += ["  " + x for x in _table(["sigma", "rel true (fresh)", "rel true (train)", "rel emp (train)",
                                        "references apart"], band)]
    s = d["samples"]
    lines += ["", f"Samples from {s['sample_seeds']} shared seeds:",
              f"  copies of a training point: net {_num(s['copy_fraction_net'])}, true sampler (chance) "
              f"{_num(s['copy_fraction_true_sampler'])}, empirical sampler {_num(s['copy_fraction_empirical_sampler'])};"
              f" kappa (net of chance) {_num(s['copy_excess_normalised'])}",
              f"  on a true subspace: net {_num(s['on_subspace_fraction_net'])}; RP vs true sampler "
              f"{_num(s['rp_net_true'])}, vs empirical sampler {_num(s['rp_net_empirical'])}",
              f"  L_score (EDM grid, sigma {_band_text(m)}): vs true {_num(m.get('l_score_true_band'))}, "
              f"vs empirical {_num(m.get('l_score_empirical_band'))}"]
    axis = m.get("time_axis", {})
    times = _time_rows(result)
    if times:
        lines += ["", "Training-time axis (EMA weights):"]
        lines += ["  " + x for x in _table(["step", "kappa", "RP true", "worst rel true", "on subspace", "verdict"], [
            [int(float(r["step"])), float(r["kappa"]), float(r["rp_net_true"]),
             max(float(r["worst_rel_true_fresh"] or "inf"), float(r["worst_rel_true_train"] or "inf")),
             float(r["on_subspace_fraction_net"]), r["verdict"]] for r in times])]
        if axis.get("skipped"):
            lines.append(f"  skipped to keep the evaluations within {_num(axis.get('cap'))} of the training time: "
                         f"steps {', '.join(map(str, axis['skipped']))}")
        events = axis.get("events", {})
        lines.append("  " + "; ".join(f"{name.replace('_', ' ')}: " + (
            f"step {_num(e['step'])}" if e["step"] is not None else e["status"].replace("_", " "))
            for name, e in events.items()))
    b = m.get("budget", {})
    lines += ["", f"budget: {b.get('steps')} steps x batch {b.get('batch')} = {b.get('samples_seen')} samples seen "
                  f"({_num(b.get('epochs'))} epochs; {b.get('convention')}); the transition moves with the budget",
              f"verdict: {m['verdict'].upper()}: {d['reason']}"]
    return lines


def _band_text(m: dict[str, Any]) -> str:
    band = m.get("band_sigmas") or []
    return f"{min(band):.3g}..{max(band):.3g}" if band else "(none)"


def _time_rows(result: RunResult) -> list[dict[str, str]]:
    from ...runs import read_csv

    path = result.path / "time.csv"
    return read_csv(path) if path.exists() else []


SWEEP_COLUMNS = (("rank", "r"), ("n", "N"), ("seed", "seed"), ("kappa", "kappa"), ("copy_fraction_net", "copies"),
                 ("copy_fraction_true", "chance"), ("worst_rel_true_fresh", "rel true"),
                 ("rp_net_true", "RP true"), ("on_subspace_fraction_net", "on sub."), ("verdict", "verdict"))


def sweep_lines(res: SweepResult) -> list[str]:
    """The sweep table, N*(r) per measure with intervals, the fits, the time exponents and where the results are."""
    lines = ["Sweep: trained denoisers vs the empirical and the true MoLRG score"]
    widths = sorted({int(float(r["width"])) for r in res.rows}) if res.rows else []
    for width in widths:
        rows = [r for r in res.rows if int(float(r["width"])) == width]
        lines += [f"width {width}:"] + ["  " + x for x in _table(
            [h for _, h in SWEEP_COLUMNS],
            [[r.get(k) if k == "verdict" else _float(r.get(k), whole=k in ("rank", "n", "seed"))
              for k, _ in SWEEP_COLUMNS] for r in rows])]
    for width, entry in res.summary.get("analysis", {}).get("by_width", {}).items():
        lines.append(f"N*(r), width {width} (95% seed-bootstrap intervals), and the fit N* ~ r^b:")
        for name, a in entry["n_star"]["measures"].items():
            stars = ", ".join(f"r={r}: {_star(e)}" for r, e in a["n_star"].items())
            fit = a["fit"]
            lines.append(f"  {name}: {stars}; b = {_exponent(fit)}")
        if entry.get("time"):
            lines.append(f"training time, width {width}: event step t* ~ N^b per rank (censored N left out):")
            for name, ev in entry["time"]["events"].items():
                fits = ", ".join(f"r={f['rank']}: b = {_exponent(f)} ({f['censored_never']} never)"
                                 for f in ev["fits"].values())
                lines.append(f"  {name}: {fits}")
    for claim in res.summary.get("paper_claims", []):
        lines.append(f"claim ({claim['agrees']}): {claim['paper']} -- {claim['measured']}")
    lines.append(f"{res.cells_done}/{res.cells_total} cells done ({res.reused_cells} reused); results in {res.path}")
    return lines


def _float(value: Any, *, whole: bool = False) -> Any:
    """A stored number as a float (``whole``: as an int, so that N = 4096 does not print as 4.1e+03)."""
    try:
        return int(float(value)) if whole else float(value)
    except (TypeError, ValueError):
        return value


def _exponent(fit: dict[str, Any]) -> str:
    """``b [lo, hi]`` with two decimals (a least-squares round-off such as 1e-16 prints as 0.00); ``-`` for None."""
    def text(v: Any) -> str:
        return "-" if v is None else f"{float(v):.2f}".replace("-0.00", "0.00")
    return f"{text(fit['b'])} [{text(fit['ci_low'])}, {text(fit['ci_high'])}]"


def _star(entry: dict[str, Any]) -> str:
    if entry["n_star"] is None:
        return {"below_range": "below range", "above_range": "not crossed"}.get(entry["status"], entry["status"])
    return f"{_num(entry['n_star'])} [{_num(entry.get('ci_low'))}, {_num(entry.get('ci_high'))}]"

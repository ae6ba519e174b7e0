"""The papers' claims beside what a sweep measured, each judged by a stated rule from the sweep's own numbers.

Stored in ``sweep_metrics.json`` as ``paper_claims`` (``paper``, ``measured``, ``agrees``, ``basis``); the report
prints them verbatim. ``agrees`` is one of yes / partly / no / not judged, and ``basis`` states the rule:

* small N memorizes, large N generalizes, and the net then reproduces the true sampler: the share of cells (over
  widths, ranks and seeds) at the smallest / largest N with the predicted verdict or RP >= 1/2: all = yes, some =
  partly, none = no;
* N* grows with r, roughly linearly: the exponent b of N* ~ r^b under RP(net, true sampler) (the measure that needs
  no threshold on the net's errors), per width: yes when every width's 95% interval lies above 0 and contains 1,
  partly when above 0 only, no otherwise;
* memorization time grows with N, roughly linearly, while the time to become accurate barely does (Bonnaire et al.):
  per (width, r) the exponents of t* ~ N^b: yes when every memorization-onset interval lies above 0 and every
  accuracy interval contains 0, partly when one of the two holds, no when neither does;
* paper 2 (sweeps over N_k / d, :func:`collapse_claims`): GL against N_k / d is one curve for every d: with c_d the
  N_k / d where GL reaches 0.9, yes when every d crosses and max c_d / min c_d <= sqrt(d_max / d_min) (closer in
  log to one curve, ratio 1, than to curves that depend on N alone, ratio d_max / d_min), partly when the crossing
  d satisfy that but some d do not cross, no when they do not, not judged with fewer than two crossings or where
  GL reaches 0.9 with fewer than half of the samples on a subspace (an untrained net has GL = 1); and where
  GL reaches 0.9 (about 50-60 in the paper): reported, not judged (it moves with the training budget).
"""

from __future__ import annotations

from typing import Any, Sequence

ZHANG = "Zhang et al. (2024), Fig. 5"
SMALL_N = f"Small N: the learned score is close to the empirical score, and samples copy training points ({ZHANG})."
LARGE_N = f"Large N: the learned score is close to the true MoLRG score ({ZHANG})."
GROWS = f"The N needed to generalize grows with the rank r, roughly linearly ({ZHANG})."
REPRODUCE = ("In the generalization regime the same noise gives the same sample as the true-score sampler "
             "(reproducibility, Zhang et al. 2024).")
TIME = ("The training time needed to memorize grows linearly with N, the time needed to generalize barely depends on "
        "N (Bonnaire et al., NeurIPS 2025).")
WANG = "Wang et al. (arXiv 2409.02426), Fig. 5a"
COLLAPSE = (f"GL of a UNet trained on MoLRG, plotted against N_k / d, is one curve for every subspace dimension d "
            f"({WANG}).")
CROSSING = (f"GL reaches about 0.9 at N_k / d of about 50 to 60 ({WANG}; K = 2, n = 48, about 6 Mimg of training per "
            "model).")
#: GL counts as generalization only where at least this fraction of the samples lies on a subspace.
LEARNED = 0.5
#: The measure whose exponent judges the growth of N* with r.
PRIMARY = "rp_net_true"


def _g(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.3g}"


def _range(values: Sequence[Any]) -> str:
    nums = [float(v) for v in values if v not in (None, "")]
    if not nums:
        return "n/a"
    lo, hi = min(nums), max(nums)
    return _g(lo) if _g(lo) == _g(hi) else f"{_g(lo)} to {_g(hi)}"


def _share(hits: int, total: int) -> str:
    return "yes" if total and hits == total else "partly" if hits else "no"


def _interval(fit: dict[str, Any]) -> str:
    return f"{_g(fit.get('b'))} [{_g(fit.get('ci_low'))}, {_g(fit.get('ci_high'))}]"


def _above_zero(fit: dict[str, Any]) -> bool:
    return fit.get("ci_low") is not None and fit["ci_low"] > 0


def _contains(fit: dict[str, Any], value: float) -> bool:
    return fit.get("ci_low") is not None and fit.get("ci_high") is not None and fit["ci_low"] <= value <= fit["ci_high"]


def _at(rows: Sequence[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    return [r for r in rows if int(r["n"]) == n]


def paper_claims(rows: Sequence[dict[str, Any]], found: dict[str, Any]) -> list[dict[str, str]]:
    """The claims with what the sweep measured and whether it agrees (see the module docstring for the rules)."""
    if not rows:
        return []
    ns = sorted({int(r["n"]) for r in rows})
    small, large = _at(rows, ns[0]), _at(rows, ns[-1])
    mem = sum(r["verdict"] == "memorizing" for r in small)
    gen = sum(r["verdict"] == "generalizing" for r in large)
    rp = sum(float(r["rp_net_true"]) >= 0.5 for r in large)
    claims = [
        {"paper": SMALL_N, "agrees": _share(mem, len(small)),
         "measured": (f"N = {ns[0]}: memorizing in {mem} of {len(small)} cells; kappa {_range([r['kappa'] for r in small])}"
                      f", worst rel vs D_emp on training queries {_range([r['worst_rel_empirical_train'] for r in small])}"),
         "basis": "the verdict of every cell at the smallest N: all memorizing = yes, some = partly, none = no"},
        {"paper": LARGE_N, "agrees": _share(gen, len(large)),
         "measured": (f"N = {ns[-1]}: generalizing in {gen} of {len(large)} cells; worst rel vs D_true "
                      f"{_range([r['worst_rel_true_fresh'] for r in large])} (fresh), "
                      f"{_range([r['worst_rel_true_train'] for r in large])} (training queries)"),
         "basis": "the verdict of every cell at the largest N: all generalizing = yes, some = partly, none = no"},
        {"paper": REPRODUCE, "agrees": _share(rp, len(large)),
         "measured": f"N = {ns[-1]}: RP(net, true sampler) {_range([r['rp_net_true'] for r in large])}; "
                     f"RP >= 0.5 in {rp} of {len(large)} cells",
         "basis": "RP(net, true sampler) >= 0.5 in every cell at the largest N = yes, in some = partly, none = no"},
    ]
    widths = found.get("by_width", {})
    fits = {w: entry["n_star"]["measures"] for w, entry in widths.items()}
    primary = [m[PRIMARY]["fit"] for m in fits.values() if PRIMARY in m]
    if primary and all(f.get("b") is not None for f in primary):
        above = all(_above_zero(f) for f in primary)
        agrees = "yes" if above and all(_contains(f, 1.0) for f in primary) else "partly" if above else "no"
    else:
        agrees = "not judged"
    measured = "; ".join(f"width {w}: " + ", ".join(f"{name} b = {_interval(m['fit'])}" for name, m in ms.items())
                         for w, ms in fits.items())
    claims.append({"paper": GROWS, "agrees": agrees, "measured": f"N* ~ r^b, b [95% interval]: {measured}",
                   "basis": f"b of {PRIMARY} per width: every interval above 0 and containing 1 = yes, above 0 only "
                            "= partly, otherwise no; not judged without a fit"})
    timed = {w: entry["time"]["events"] for w, entry in widths.items() if entry.get("time")}
    if timed:
        onset = [f for ev in timed.values() for f in ev["memorization_onset"]["fits"].values() if f.get("b") is not None]
        acc = [f for ev in timed.values() for f in ev["accurate"]["fits"].values() if f.get("b") is not None]
        grows = bool(onset) and all(_above_zero(f) for f in onset)
        flat = bool(acc) and all(_contains(f, 0.0) for f in acc)
        agrees = ("not judged" if not onset and not acc else "yes" if grows and flat else
                  "partly" if grows or flat else "no")
        parts = []
        for w, ev in timed.items():
            for key, fit in ev["memorization_onset"]["fits"].items():
                a = ev["accurate"]["fits"].get(key, {})
                parts.append(f"width {w}, r = {fit['rank']}: memorization onset b = {_interval(fit)} "
                             f"({fit['censored_never']} N never), accurate b = {_interval(a)} "
                             f"({a.get('censored_never', 'n/a')} N never)")
        claims.append({"paper": TIME, "agrees": agrees, "measured": "t* ~ N^b: " + "; ".join(parts),
                       "basis": "every memorization-onset interval above 0 and every accuracy interval containing 0 = "
                                "yes, one of the two = partly, neither = no; censored N are left out of the fits"})
    return claims


def collapse_claims(result: dict[str, Any], images_per_model: float | None) -> list[dict[str, str]]:
    """Paper 2's claims beside a :func:`mogsim.analysis.collapse` result (see the module docstring for the rules)."""
    per_d, level = result["per_d"], result["level"]
    if not per_d:
        return []
    crossed = {d: c["crossing"] for d, c in per_d.items() if c["status"] == "crossed"}
    ds = [int(d) for d in per_d]
    bound = (max(ds) / min(ds)) ** 0.5
    ratio = result["crossing_ratio_max_over_min"]  # max / min of the crossed d (None with fewer than two)
    unlearned = [d for d, c in per_d.items() if c["status"] in ("crossed", "below_range")
                 and (c["on_subspace_where_reached"] is None or c["on_subspace_where_reached"] < LEARNED)]
    if ratio is None or unlearned:
        agrees = "not judged"
    elif ratio > bound:
        agrees = "no"
    else:
        agrees = "yes" if len(crossed) == len(per_d) else "partly"
    where = ", ".join(f"d = {d}: {_g(c['crossing']) if c['status'] == 'crossed' else c['status']}"
                      for d, c in per_d.items())
    pooled = result.get("pooled") or {}
    budget = "n/a" if images_per_model is None else f"{images_per_model / 1e6:.3g} Mimg"
    return [
        {"paper": COLLAPSE, "agrees": agrees,
         "measured": (f"N_k / d where GL reaches {level:g}: {where}; max / min {_g(ratio)} against the bound "
                      f"{_g(bound)}" + (f"; fewer than {LEARNED:g} of the samples on a subspace where GL reaches "
                                        f"{level:g} for d = {', '.join(unlearned)}" if unlearned else "")),
         "basis": f"yes when every d crosses GL = {level:g} and max / min of the crossings <= sqrt(d_max / d_min) = "
                  f"{_g(bound)}, partly when the crossing d do but some d never reach it, no when they do not; not "
                  f"judged with fewer than two crossings, or where GL reaches {level:g} with fewer than {LEARNED:g} "
                  "of the samples on a subspace (GL is 1 for a net that has learned nothing)"},
        {"paper": CROSSING, "agrees": "not judged",
         "measured": (f"pooled over d, GL reaches {level:g} at N_k / d = "
                      f"{_g(pooled.get('crossing')) if pooled.get('status') == 'crossed' else pooled.get('status')} "
                      f"after {budget} of training per model"),
         "basis": "reported, not judged: where GL reaches 0.9 moves with the training budget, and ours differs from "
                  "the authors'"},
    ]

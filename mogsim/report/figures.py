"""Matplotlib figures of score-matching runs and sweeps.

Figures are built as :class:`matplotlib.figure.Figure` objects without pyplot, so they render with the Agg canvas
whatever backend a user has selected, and no window is ever opened.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

_REF_STYLE = {"true": dict(color="tab:blue", label="vs true MoLRG"),
              "empirical": dict(color="tab:red", label="vs empirical optimum")}


def _f(row: Mapping[str, Any], key: str) -> float:
    return float(row[key])


def per_sigma_figure(rows: Sequence[Mapping[str, Any]], title: str = "") -> Figure:
    """Three panels against sigma for one run: (a) L_score against both references, (b) the RMS distances
    ``sqrt(e_true)``, ``sqrt(e_emp)`` and the reference gap ``sqrt(gap)``, (c) the net's position between the
    references with the decisive levels marked. Solid: x from noisy true data; dashed: noisy training points.

    ``rows`` are the per-sigma records of one run (keys ``queries``, ``sigma``, ``l_score_true``,
    ``l_score_empirical``, ``e_true``, ``e_empirical``, ``reference_gap``, ``position``, ``decisive``).
    """
    fig = Figure(figsize=(15, 4.6))
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.12, top=0.86, wspace=0.22)
    ax_l, ax_d, ax_t = fig.subplots(1, 3)
    names = {"true": "noisy true data", "train": "noisy training points"}
    for queries, ls in (("true", "-"), ("train", "--")):
        sub = [r for r in rows if r["queries"] == queries]
        if not sub:
            continue
        s = np.array([_f(r, "sigma") for r in sub])
        for ref, key in (("true", "l_score_true"), ("empirical", "l_score_empirical")):
            ax_l.loglog(s, [_f(r, key) for r in sub], ls, marker="o", ms=3, color=_REF_STYLE[ref]["color"],
                        label=f"{_REF_STYLE[ref]['label']}, x from {names[queries]}")
        for ref, key in (("true", "e_true"), ("empirical", "e_empirical")):
            ax_d.loglog(s, np.sqrt([_f(r, key) for r in sub]), ls, marker="o", ms=3,
                        color=_REF_STYLE[ref]["color"], label=f"net {_REF_STYLE[ref]['label']}, {names[queries]}")
        ax_d.loglog(s, np.sqrt([_f(r, "reference_gap") for r in sub]), ls, color="gray",
                    label=f"true vs empirical (gap), {names[queries]}")
        t = np.array([_f(r, "position") for r in sub])
        dec = np.array([str(r["decisive"]).lower() in ("true", "1") for r in sub])
        ax_t.semilogx(s, t, ls, color="k", lw=1, label=f"x from {names[queries]}")
        ax_t.scatter(s[dec], t[dec], color="tab:green", zorder=3, s=25,
                     label="decisive level" if queries == "true" else None)
    ax_l.set_title("(a) L_score(ref; sigma) = E||D_net - D_ref||^2 / E||D_ref - x||^2", fontsize=9)
    ax_d.set_title("(b) RMS distance between denoisers, sqrt(E||D_a - D_b||^2)", fontsize=9)
    ax_t.set_title("(c) position t of the net (0 = empirical optimum, 1 = true)", fontsize=9)
    for ax in (ax_l, ax_d):
        ax.legend(fontsize=6.5)
        ax.grid(True, which="both", alpha=0.3)
        ax.set_xlabel("sigma")
    ax_t.axhline(0.0, color="tab:red", lw=0.8)
    ax_t.axhline(1.0, color="tab:blue", lw=0.8)
    ax_t.axhline(0.5, color="gray", lw=0.6, ls=":")
    ax_t.set_ylim(-0.5, 1.5)
    ax_t.set_xlabel("sigma")
    ax_t.legend(fontsize=7)
    ax_t.grid(True, which="both", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def samples_figure(per_sample: Mapping[str, np.ndarray], copy_ratio: float, subspace_tol: float,
                   rp_threshold: float) -> Figure:
    """Histograms of the samples' nearest-neighbour ratio, subspace residual and net-vs-reference distance."""
    fig = Figure(figsize=(11, 3.8))
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.16, top=0.95, wspace=0.2)
    ax_r, ax_s, ax_d = fig.subplots(1, 3)
    bins = np.linspace(0, 1, 41)
    for name, color in (("net", "k"), ("empirical", "tab:red"), ("true", "tab:blue")):
        ax_r.hist(np.clip(per_sample[f"{name}_nn_ratio"], 0, 1), bins=bins, histtype="step", color=color, label=name)
        res = np.clip(per_sample[f"{name}_subspace_residual"], 1e-8, 10)
        ax_s.hist(np.log10(res), bins=40, histtype="step", color=color, label=name)
    ax_r.axvline(copy_ratio, color="gray", ls=":")
    ax_r.set_xlabel("nearest-neighbour ratio d1/d2 (copy if below the line)")
    ax_r.legend(fontsize=7)
    ax_s.axvline(math.log10(subspace_tol), color="gray", ls=":")
    ax_s.set_xlabel("log10 relative subspace residual (on a subspace if left of the line)")
    ax_s.legend(fontsize=7)
    for ref in ("empirical", "true"):
        ax_d.hist(np.clip(per_sample[f"rel_distance_net_{ref}"], 0, 2), bins=np.linspace(0, 2, 41), histtype="step",
                  color=_REF_STYLE[ref]["color"], label=f"net vs {ref}")
    ax_d.axvline(rp_threshold, color="gray", ls=":")
    ax_d.set_xlabel("relative distance, same seed (reproduced if left of the line)")
    ax_d.legend(fontsize=7)
    return fig


def _by_rank(rows: Sequence[Mapping[str, Any]], key: str) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per rank: sorted N, mean and (min, max) spread of ``key`` over seeds."""
    groups: dict[int, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        v = r.get(key)
        if v is None or v == "":
            continue
        groups[int(r["rank"])][int(r["n"])].append(float(v))
    out = {}
    for rank, by_n in sorted(groups.items()):
        ns = np.array(sorted(by_n))
        vals = [np.array(by_n[n]) for n in ns]
        out[rank] = (ns, np.array([v.mean() for v in vals]), np.array([[v.min(), v.max()] for v in vals]))
    return out


def sweep_figure(rows: Sequence[Mapping[str, Any]], transitions: Mapping[str, Any] | None = None,
                 title: str = "") -> Figure:
    """The Fig. 5-style summary of a sweep: four panels against N, one curve per rank r.

    (a) L_score against the true score and (b) against the empirical score, both over the fixed mid-sigma band
    (solid; ``l_score_*_band``) and over the whole EDM grid (dotted); (c) the generalization index (mean position t
    over the decisive levels; 0 = empirical, 1 = true) with the estimated N*(r); (d) the fraction of net samples that copy
    a training point.
    """
    fig = Figure(figsize=(12, 9))
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.07, top=0.9, wspace=0.22, hspace=0.32)
    axes = fig.subplots(2, 2)
    ranks = sorted({int(r["rank"]) for r in rows})
    cmap = {rank: f"C{i}" for i, rank in enumerate(ranks)}
    panels = ((axes[0, 0], "true", "L_score against the TRUE MoLRG score"),
              (axes[0, 1], "empirical", "L_score against the EMPIRICAL score"))
    for ax, ref, label in panels:
        for rank, (ns, mean, spread) in _by_rank(rows, f"l_score_{ref}_band").items():
            ax.loglog(ns, mean, "-o", ms=3, color=cmap[rank], label=f"r = {rank}")
            ax.fill_between(ns, spread[:, 0], spread[:, 1], color=cmap[rank], alpha=0.15, lw=0)
        for rank, (ns, mean, _) in _by_rank(rows, f"l_score_{ref}").items():
            ax.loglog(ns, mean, ":", color=cmap[rank], lw=1)
        ax.set_xlabel("N (training samples)")
        ax.set_title(f"{label}\n(solid: mid-sigma band, dotted: whole EDM grid)", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    ax = axes[1, 0]
    for rank, (ns, mean, spread) in _by_rank(rows, "generalization_index").items():
        ax.semilogx(ns, mean, "-o", ms=3, color=cmap[rank], label=f"r = {rank}")
        ax.fill_between(ns, spread[:, 0], spread[:, 1], color=cmap[rank], alpha=0.15, lw=0)
        if transitions:
            nstar = transitions.get("n_star", {}).get(str(rank))
            if nstar:
                ax.axvline(nstar, color=cmap[rank], ls="--", lw=0.8)
    ax.axhline(0.5, color="gray", ls=":")
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("N (training samples)")
    ax.set_ylabel("generalization index (0 = empirical, 1 = true)")
    ax.set_title("where the net sits between the references (dashed: N*(r))", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    ax = axes[1, 1]
    for rank, (ns, mean, _) in _by_rank(rows, "copy_fraction_net").items():
        ax.semilogx(ns, mean, "-o", ms=3, color=cmap[rank], label=f"r = {rank}: copies")
    for rank, (ns, mean, _) in _by_rank(rows, "rp_net_true").items():
        ax.semilogx(ns, mean, ":s", ms=3, color=cmap[rank], label=f"r = {rank}: RP vs true")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("N (training samples)")
    ax.set_ylabel("fraction of samples")
    ax.set_title("net samples: copies of training points (solid),\nreproduced by the true-score sampler (dotted)",
                 fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    ns_all = sorted({int(r["n"]) for r in rows})
    for ax in axes.flat:
        ax.set_xscale("log", base=2)
        ax.set_xticks(ns_all, [str(n) for n in ns_all], fontsize=7)
        ax.minorticks_off() if ax.get_yscale() == "linear" else None
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def text_figure(title: str, lines: Sequence[str], *, fontsize: float = 7.5) -> Figure:
    """A page of monospaced text (A4 portrait-ish) for PDF reports."""
    fig = Figure(figsize=(8.27, 11.69))
    fig.text(0.05, 0.97, title, fontsize=12, weight="bold", va="top", family="sans-serif")
    fig.text(0.05, 0.94, "\n".join(lines), fontsize=fontsize, va="top", family="monospace")
    return fig

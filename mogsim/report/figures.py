"""Matplotlib figures of runs and sweeps, sized for a printed page (about 17 cm wide, 7-8 pt text).

Figures are :class:`matplotlib.figure.Figure` objects built without pyplot, so they render with the Agg canvas (or
as SVG) whatever backend a user selected, and no window opens. Rows may hold numbers or the strings of a CSV file.
Titles are short panel labels; what to look at is said in the report's captions.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from ..metrics.jacobian import RANK_ENERGY, numerical_rank

_REF_STYLE = {"true": dict(color="tab:blue", label="vs true MoLRG"),
              "empirical": dict(color="tab:red", label="vs empirical optimum")}
_QUERY_STYLE = {"true": ("-", "x from noisy true data"), "train": ("--", "x from noisy training points")}

#: Print style: serif text matching the report's STIX body font, small sizes, thin lines.
STYLE = {"font.family": "STIXGeneral", "mathtext.fontset": "stix", "font.size": 7.5, "axes.titlesize": 8,
         "axes.labelsize": 7.5, "xtick.labelsize": 6.5, "ytick.labelsize": 6.5, "legend.fontsize": 6.5,
         "lines.linewidth": 1.1, "lines.markersize": 3, "axes.linewidth": 0.6, "grid.linewidth": 0.4,
         "legend.frameon": False, "svg.fonttype": "path"}


@contextlib.contextmanager
def print_style() -> Iterator[None]:
    """The report's matplotlib style (fonts are resolved when artists are made, so build figures inside it)."""
    with rc_context(STYLE):
        yield


def svg_bytes(fig: Figure, *, tight: bool = False) -> bytes:
    """The figure as SVG (text drawn as paths, so it looks the same everywhere); ``tight`` crops it to its ink."""
    buf = io.BytesIO()
    with rc_context(STYLE):
        fig.savefig(buf, format="svg", **(dict(bbox_inches="tight", pad_inches=0.03) if tight else {}))
    return buf.getvalue()


def equation_figure(latex: str, fontsize: float = 10.0) -> Figure:
    """A displayed equation from LaTeX, drawn by matplotlib's mathtext (a subset of TeX: no matrices or
    environments); raises ValueError when mathtext cannot parse it. Save it with ``svg_bytes(fig, tight=True)``."""
    from matplotlib.mathtext import MathTextParser

    tex = f"${latex.replace(chr(92) + 'limits', '')}$"
    MathTextParser("path").parse(tex, dpi=72)  # raises ValueError early, before any figure is made
    with print_style():
        fig = Figure(figsize=(1, 0.3))
        fig.text(0, 0, tex, fontsize=fontsize)
    return fig


def _f(row: Mapping[str, Any], key: str) -> float:
    v = row.get(key)
    return float("nan") if v is None or v == "" else float(v)


def _true(v: Any) -> bool:
    return str(v).lower() in ("true", "1")


def per_sigma_figure(rows: Sequence[Mapping[str, Any]], title: str = "", band: Sequence[float] = ()) -> Figure:
    """Three panels against sigma for one run: (a) L_score against both references, (b) the RMS distances
    ``sqrt(e_true)``, ``sqrt(e_emp)`` and the reference gap ``sqrt(gap)``, (c) the net's position between the
    references. Solid: x from noisy true data; dashed: noisy training points. ``band``: the verdict's noise levels,
    shaded.

    ``rows`` are the per-sigma records of one run (keys ``queries``, ``sigma``, ``l_score_true``,
    ``l_score_empirical``, ``e_true``, ``e_empirical``, ``reference_gap``, ``position``).
    """
    with print_style():
        fig = Figure(figsize=(6.9, 3.0 if title else 2.85))
        fig.subplots_adjust(left=0.07, right=0.99, bottom=0.14, top=0.7 if title else 0.76, wspace=0.3)
        ax_l, ax_d, ax_t = fig.subplots(1, 3)
        for queries, (ls, _) in _QUERY_STYLE.items():
            sub = [r for r in rows if r["queries"] == queries]
            if not sub:
                continue
            s = np.array([_f(r, "sigma") for r in sub])
            for ref, key in (("true", "l_score_true"), ("empirical", "l_score_empirical")):
                ax_l.loglog(s, [_f(r, key) for r in sub], ls, marker="o", color=_REF_STYLE[ref]["color"])
            for ref, key in (("true", "e_true"), ("empirical", "e_empirical")):
                ax_d.loglog(s, np.sqrt([_f(r, key) for r in sub]), ls, marker="o", color=_REF_STYLE[ref]["color"])
            ax_d.loglog(s, np.sqrt([_f(r, "reference_gap") for r in sub]), ls, color="0.45")
            ax_t.semilogx(s, [_f(r, "position") for r in sub], ls, color="k", lw=0.9, marker="o")
        ax_l.set_title("(a) $L_\\mathrm{score}$(ref; $\\sigma$)")
        ax_d.set_title("(b) RMS distance between denoisers")
        ax_t.set_title("(c) position $t$ (0 empirical, 1 true)")
        for ax in (ax_l, ax_d, ax_t):
            ax.grid(True, which="major", alpha=0.3)
            ax.set_xlabel("$\\sigma$")
            if len(band):
                ax.axvspan(min(band), max(band), color="tab:green", alpha=0.12, lw=0)
        ax_t.axhline(0.0, color="tab:red", lw=0.7)
        ax_t.axhline(1.0, color="tab:blue", lw=0.7)
        ax_t.axhline(0.5, color="0.5", lw=0.5, ls=":")
        ax_t.set_ylim(-0.5, 1.5)
        handles = [Line2D([], [], color=_REF_STYLE["true"]["color"], label="net vs true MoLRG"),
                   Line2D([], [], color=_REF_STYLE["empirical"]["color"], label="net vs empirical optimum"),
                   Line2D([], [], color="0.45", label="true vs empirical (gap)"),
                   Line2D([], [], color="k", ls="-", label=_QUERY_STYLE["true"][1]),
                   Line2D([], [], color="k", ls="--", label=_QUERY_STYLE["train"][1])]
        if len(band):
            handles.append(Patch(color="tab:green", alpha=0.25, label="the verdict's noise levels"))
        fig.legend(handles=handles, loc="upper center", ncol=3, bbox_to_anchor=(0.5, 1.0), handlelength=2.2,
                   columnspacing=2.0)
        if title:
            fig.suptitle(title, y=0.84)
    return fig


def samples_figure(per_sample: Mapping[str, np.ndarray], copy_ratio: float, subspace_tol: float,
                   rp_threshold: float) -> Figure:
    """Histograms of the samples' nearest-neighbour ratio, subspace residual and net-vs-reference distance."""
    with print_style():
        fig = Figure(figsize=(6.9, 2.3))
        fig.subplots_adjust(left=0.06, right=0.99, bottom=0.2, top=0.88, wspace=0.25)
        ax_r, ax_s, ax_d = fig.subplots(1, 3)
        bins = np.linspace(0, 1, 41)
        for name, color in (("net", "k"), ("empirical", "tab:red"), ("true", "tab:blue")):
            ax_r.hist(np.clip(per_sample[f"{name}_nn_ratio"], 0, 1), bins=bins, histtype="step", color=color,
                      label=name)
            res = np.clip(per_sample[f"{name}_subspace_residual"], 1e-8, 10)
            ax_s.hist(np.log10(res), bins=40, histtype="step", color=color, label=name)
        ax_r.axvline(copy_ratio, color="0.4", ls=":")
        ax_r.set_xlabel("nearest-neighbour ratio $d_1/d_2$")
        ax_r.set_title("(a) copies: left of the line")
        ax_r.legend(title="sampler", title_fontsize=6.5)
        ax_s.axvline(math.log10(subspace_tol), color="0.4", ls=":")
        ax_s.set_xlabel("$\\log_{10}$ relative subspace residual")
        ax_s.set_title("(b) on a true subspace: left of the line")
        for ref in ("empirical", "true"):
            ax_d.hist(np.clip(per_sample[f"rel_distance_net_{ref}"], 0, 2), bins=np.linspace(0, 2, 41),
                      histtype="step", color=_REF_STYLE[ref]["color"], label=f"net vs {ref}")
        ax_d.axvline(rp_threshold, color="0.4", ls=":")
        ax_d.set_xlabel("relative distance, same seed")
        ax_d.set_title("(c) reproduced: left of the line")
        ax_d.legend()
        for ax in (ax_r, ax_s, ax_d):
            ax.set_ylabel("samples")
    return fig


def _by_rank(rows: Sequence[Mapping[str, Any]], key: str | Callable[[Mapping[str, Any]], float]
             ) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per rank: sorted N, mean and (min, max) spread of ``key`` (a column or a function of the row) over seeds
    (NaN and empty cells skipped)."""
    groups: dict[int, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        v = key(r) if callable(key) else r.get(key)
        if v is None or v == "" or math.isnan(float(v)):
            continue  # absent, empty or NaN
        groups[int(r["rank"])][int(r["n"])].append(float(v))
    out = {}
    for rank, by_n in sorted(groups.items()):
        ns = np.array(sorted(by_n))
        vals = [np.array(by_n[n]) for n in ns]
        out[rank] = (ns, np.array([v.mean() for v in vals]), np.array([[v.min(), v.max()] for v in vals]))
    return out


@dataclass(frozen=True)
class Panel:
    """One panel of :func:`sweep_figure`: curves of ``key`` against N per rank (seed mean, min-max band)."""

    key: str | Callable[[Mapping[str, Any]], float]
    title: str
    ylabel: str
    log: bool = False
    levels: tuple[float, ...] = ()
    #: rank -> N* drawn dashed
    n_star: Mapping[str, float | None] = field(default_factory=dict)
    #: a second column drawn dotted with squares
    dotted: str | None = None


def _label_is(label: str) -> Callable[[Mapping[str, Any]], float]:
    return lambda row: float(row.get("verdict") == label)


def _max_rel_true(row: Mapping[str, Any]) -> float:
    return max(_f(row, "worst_rel_true_fresh"), _f(row, "worst_rel_true_train"))


def verdict_panels(analysis: Mapping[str, Any] | None, width: str | None = None) -> list[Panel]:
    """The panels of a sweep judged by :func:`mogsim.score_match_verdict` (N* of RP from ``analysis``)."""
    by_width = (analysis or {}).get("by_width", {})
    entry = by_width.get(width) if width is not None else next(iter(by_width.values()), None)
    rp = (entry or {}).get("n_star", {}).get("measures", {}).get("rp_net_true", {}).get("n_star", {})
    return [Panel(_max_rel_true, "(a) accuracy: worst rel vs $D_\\mathrm{true}$", "rel (1 = no better than $a + cx$)",
                  log=True, levels=(0.2,)),
            Panel("kappa", "(b) copies net of chance $\\kappa$", "$\\kappa$", levels=(0.1, 0.5)),
            Panel("rp_net_true", "(c) RP vs the true sampler; dashed: $N^*(r)$", "fraction of seeds", levels=(0.5,),
                  n_star={k: v.get("n_star") for k, v in rp.items()}, dotted="on_subspace_fraction_net"),
            Panel(_label_is("generalizing"), "(d) share judged generalizing (dotted: memorizing)", "share of seeds",
                  levels=(0.5,), dotted="memorizing")]


def index_panels(transitions: Mapping[str, Any] | None) -> list[Panel]:
    """The panels of an old record (sweeps judged by the retired generalization index)."""
    return [Panel("l_score_true_band", "(a) $L_\\mathrm{score}$ against the true MoLRG score",
                  "$L_\\mathrm{score}$ (mid-$\\sigma$ band)", log=True),
            Panel("l_score_empirical_band", "(b) $L_\\mathrm{score}$ against the empirical score",
                  "$L_\\mathrm{score}$ (mid-$\\sigma$ band)", log=True),
            Panel("generalization_index", "(c) old generalization index; dashed: $N^*(r)$",
                  "index (0 empirical, 1 true)", levels=(0.5,), n_star=(transitions or {}).get("n_star", {})),
            Panel("copy_fraction_net", "(d) copies (solid), reproduced by true score (dotted)",
                  "fraction of the net's samples", dotted="rp_net_true")]


def sweep_figure(rows: Sequence[Mapping[str, Any]], panels: Sequence[Panel], title: str = "") -> Figure:
    """The Fig. 5-style summary of a sweep: four panels against N, one colour per rank r, seed mean with the
    min-max band over seeds (see :func:`verdict_panels`, and :func:`index_panels` for old records)."""
    with print_style():
        fig = Figure(figsize=(6.9, 5.4))
        fig.subplots_adjust(left=0.085, right=0.99, bottom=0.08, top=0.9 if title else 0.96, wspace=0.24,
                            hspace=0.36)
        axes = fig.subplots(2, 2)
        ranks = sorted({int(r["rank"]) for r in rows})
        cmap = {rank: f"C{i}" for i, rank in enumerate(ranks)}
        for ax, panel in zip(axes.flat, panels):
            for rank, (ns, mean, spread) in _by_rank(rows, panel.key).items():
                ax.plot(ns, mean, "-o", color=cmap[rank], label=f"r = {rank}")
                ax.fill_between(ns, spread[:, 0], spread[:, 1], color=cmap[rank], alpha=0.15, lw=0)
                star = panel.n_star.get(str(rank))
                if star:
                    ax.axvline(float(star), color=cmap[rank], ls="--", lw=0.8)
            if panel.dotted is not None:
                dotted = _label_is(panel.dotted) if panel.dotted in LABELS else panel.dotted
                for rank, (ns, mean, _) in _by_rank(rows, dotted).items():
                    ax.plot(ns, mean, ":s", color=cmap[rank], lw=0.9)
            for level in panel.levels:
                ax.axhline(level, color="0.5", ls=":", lw=0.7)
            if panel.log:
                ax.set_yscale("log")
            else:
                ax.set_ylim(-0.05, 1.05)
            ax.set_title(panel.title)
            ax.set_ylabel(panel.ylabel)
        ns_all = sorted({int(r["n"]) for r in rows})
        for ax in axes.flat:
            ax.set_xscale("log", base=2)
            ax.set_xticks(ns_all, spaced_labels(ns_all))
            ax.set_xlabel("N (training samples)")
            ax.grid(True, which="major", alpha=0.3)
            if ax.get_yscale() == "linear":
                ax.minorticks_off()
        axes[0, 0].legend(loc="best")
        if title:
            fig.suptitle(title, y=0.985)
    return fig


#: The verdict's labels and their colours in the phase diagram.
LABELS = ("memorizing", "in transition", "generalizing", "neither")
LABEL_COLORS = {"memorizing": "tab:red", "in transition": "tab:orange", "generalizing": "tab:blue",
                "neither": "0.75"}


def phase_figure(rows: Sequence[Mapping[str, Any]], analysis: Mapping[str, Any] | None = None,
                 title: str = "") -> Figure:
    """The phase diagram along training time, one panel per (width, r): N (rows) against training step (columns),
    each cell split into one stripe per seed coloured by that seed's verdict at that step; markers: the step at which
    memorization sets in (kappa reaches 0.1, triangles) and the step at which the net becomes accurate against
    D_true (circles), from ``analysis`` (the sweep's ``analysis``)."""
    import matplotlib as mpl

    with print_style():
        keys = sorted({(int(float(r["width"])), int(float(r["rank"]))) for r in rows})
        widths = sorted({w for w, _ in keys})
        ranks = sorted({k for _, k in keys})
        nrows, ncols = len(widths), min(len(ranks), 4)
        nrows *= math.ceil(len(ranks) / ncols)
        height = 2.0 * nrows + 1.1  # inches: panels, the legend above (0.5) and the axis labels and title below
        fig = Figure(figsize=(6.9, height))
        fig.subplots_adjust(left=0.08, right=0.99, bottom=0.7 / height, top=1 - 0.55 / height, wspace=0.25,
                            hspace=0.5)
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
        cmap = mpl.colors.ListedColormap([LABEL_COLORS[k] for k in LABELS])
        by_width = (analysis or {}).get("by_width", {})
        for index, (ax, (width, rank)) in enumerate(zip(axes, keys)):
            mine = [r for r in rows if int(float(r["width"])) == width and int(float(r["rank"])) == rank]
            ns = sorted({int(float(r["n"])) for r in mine})
            steps = sorted({int(float(r["step"])) for r in mine})
            seeds = sorted({int(float(r["seed"])) for r in mine})
            grid = np.full((len(ns) * len(seeds), len(steps)), np.nan)
            for r in mine:
                i = ns.index(int(float(r["n"]))) * len(seeds) + seeds.index(int(float(r["seed"])))
                if r["verdict"] in LABELS:
                    grid[i, steps.index(int(float(r["step"])))] = LABELS.index(r["verdict"])
            x = _edges(np.log10(steps))
            y = np.linspace(0, len(ns), len(ns) * len(seeds) + 1)
            ax.pcolormesh(x, y, np.ma.masked_invalid(grid), cmap=cmap, vmin=-0.5, vmax=len(LABELS) - 0.5)
            events = (by_width.get(str(width)) or {}).get("time") or {}
            for name, marker in (("memorization_onset", "v"), ("accurate", "o")):
                cells = events.get("events", {}).get(name, {}).get("cells", {})
                for k, n in enumerate(ns):
                    step = cells.get(f"{width}/{rank}/{n}", {}).get("step")
                    if step:
                        ax.plot(math.log10(step), k + 0.5, marker, color="k", ms=3.5, mfc="white" if marker == "o"
                                else "k")
            ax.set_yticks(np.arange(len(ns)) + 0.5, [str(n) for n in ns])
            decades = [10**k for k in range(math.ceil(math.log10(steps[0])), math.floor(math.log10(steps[-1])) + 1)]
            ticks = decades if len(decades) >= 2 else [steps[0], steps[-1]]
            ax.set_xticks(np.log10(ticks), [f"{t:,}" for t in ticks])
            ax.set_xlim(x[0], x[-1])
            ax.set_xlabel("training step")
            if index % ncols == 0:
                ax.set_ylabel("N")
            ax.set_title(f"r = {rank}" + (f", width {width}" if len(widths) > 1 else ""))
        for ax in axes[len(keys):]:
            ax.set_visible(False)
        handles = [Patch(color=LABEL_COLORS[k], label=k) for k in LABELS]
        handles += [Line2D([], [], color="k", marker="v", ls="", label="memorization sets in ($\\kappa$ = 0.1)"),
                    Line2D([], [], color="k", marker="o", mfc="white", ls="", label="accurate (rel $\\leq$ 0.2)")]
        fig.legend(handles=handles, loc="upper center", ncol=3, bbox_to_anchor=(0.5, 1.0))
        if title:
            fig.text(0.5, 0.005, title, ha="center", va="bottom")
    return fig


def collapse_figure(result: Mapping[str, Any], over_time: Sequence[Mapping[str, Any]] = (), title: str = "") -> Figure:
    """Paper 2's Fig. 5a from :func:`mogsim.analysis.collapse` (``result``) and
    :func:`~mogsim.analysis.collapse_over_time`: (a) GL against N, one curve per d (no collapse expected); (b) GL
    against N_k / d, per d and pooled (black), the level dotted and the crossings dashed; (c) the fraction of
    samples on a true subspace against N_k / d; (d) the pooled GL against N_k / d at each evaluated training step,
    coloured by the images seen per model."""
    import matplotlib as mpl

    with print_style():
        fig = Figure(figsize=(6.9, 5.4))
        fig.subplots_adjust(left=0.085, right=0.99, bottom=0.08, top=0.9 if title else 0.96, wspace=0.24,
                            hspace=0.38)
        axes = fig.subplots(2, 2)
        k, level = int(result["components"]), float(result["level"])
        per_d = result["per_d"]
        colors = {d: f"C{i}" for i, d in enumerate(per_d)}
        for d, curve in per_d.items():
            x = np.asarray(curve["nk_over_d"], dtype=float)
            sub = np.array([np.nan if v is None else v for v in curve["on_subspace"]], dtype=float)
            axes[0, 0].plot(k * int(d) * x, curve["gl"], "-o", color=colors[d], label=f"d = {d}")
            axes[0, 1].plot(x, curve["gl"], "-o", color=colors[d], label=f"d = {d}")
            axes[1, 0].plot(x, sub, "-o", color=colors[d], label=f"d = {d}")
            if curve["status"] == "crossed":
                axes[0, 1].axvline(curve["crossing"], color=colors[d], ls="--", lw=0.7)
        pooled = result.get("pooled")
        if pooled:
            axes[0, 1].plot(pooled["nk_over_d"], pooled["gl"], "-", color="k", lw=1.6, label="pooled")
            if pooled["status"] == "crossed":
                axes[0, 1].axvline(pooled["crossing"], color="k", ls="--", lw=1.0)
        steps = [entry for entry in over_time if entry.get("pooled")]
        if steps:
            seen = [float(e["images_seen"]) for e in steps]
            norm = mpl.colors.LogNorm(vmin=min(seen), vmax=max(max(seen), min(seen) * 1.0001))
            cmap = mpl.colormaps["viridis"]
            for e in steps:
                axes[1, 1].plot(e["pooled"]["nk_over_d"], e["pooled"]["gl"], "-o", ms=2,
                                color=cmap(norm(float(e["images_seen"]))))
            bar = fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes[1, 1], pad=0.02)
            bar.set_label("images seen per model")
        else:
            axes[1, 1].text(0.5, 0.5, "no training-time axis", ha="center", va="center",
                            transform=axes[1, 1].transAxes)
        titles = [("(a) GL against N", "N (training samples)", "GL"),
                  (f"(b) GL against $N_k/d$; dashed: where GL reaches {level:g}", "$N_k / d$", "GL"),
                  ("(c) samples on a true subspace", "$N_k / d$", "fraction of samples"),
                  ("(d) pooled GL along training time", "$N_k / d$", "GL (mean over d)")]
        for ax, (name, xlabel, ylabel) in zip(axes.flat, titles):
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.set_ylim(-0.05, 1.05)
            ax.set_title(name)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.grid(True, which="major", alpha=0.3)
            ax.minorticks_off()
            if ax is not axes[1, 0]:
                ax.axhline(level, color="0.5", ls=":", lw=0.7)
        axes[0, 1].legend(loc="best")
        if title:
            fig.suptitle(title, y=0.985)
    return fig


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges around sorted centres (midpoints; the ends mirrored)."""
    if len(centres) == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])
    mids = (centres[1:] + centres[:-1]) / 2
    return np.concatenate([[2 * centres[0] - mids[0]], mids, [2 * centres[-1] - mids[-1]]])


def time_fits_figure(analysis: Mapping[str, Any], width: str) -> Figure:
    """The event steps against N per rank, log-log: memorization onset (triangles) and accuracy (circles), with the
    fitted lines ``t* = c N^b`` (censored N are not drawn)."""
    with print_style():
        fig = Figure(figsize=(6.9, 2.6))
        fig.subplots_adjust(left=0.08, right=0.99, bottom=0.17, top=0.86, wspace=0.25)
        axes = fig.subplots(1, 2)
        events = analysis["by_width"][width]["time"]["events"]
        for ax, name, title in ((axes[0], "memorization_onset", "(a) memorization sets in ($\\kappa$ = 0.1)"),
                                (axes[1], "accurate", "(b) accurate against $D_\\mathrm{true}$ (rel $\\leq$ 0.2)")):
            ev = events.get(name, {})
            ranks = sorted({c["rank"] for c in ev.get("cells", {}).values()})
            for i, rank in enumerate(ranks):
                cells = sorted((c for c in ev["cells"].values() if c["rank"] == rank), key=lambda c: c["n"])
                pts = [(c["n"], c["step"]) for c in cells if c["step"]]
                if pts:
                    ax.plot(*zip(*pts), "o", color=f"C{i}", label=f"r = {rank}")
                fit = ev["fits"].get(f"{width}/{rank}", {})
                if fit.get("b") is not None and pts:
                    n = np.array([p[0] for p in pts], dtype=float)
                    ax.plot(n, fit["prefactor"] * n ** fit["b"], "-", color=f"C{i}", lw=0.8)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("N (training samples)")
            ax.set_ylabel("training step")
            ax.set_title(title)
            ax.grid(True, which="major", alpha=0.3)
        if axes[0].get_legend_handles_labels()[0]:
            axes[0].legend(loc="best")
    return fig


def time_axis_figure(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """One run along training time: (a) kappa, RP against the true sampler and the share of samples on a subspace,
    (b) the worst rel against D_true (fresh and training queries); background: the verdict at each step."""
    with print_style():
        fig = Figure(figsize=(6.9, 2.5))
        fig.subplots_adjust(left=0.08, right=0.99, bottom=0.18, top=0.8, wspace=0.28)
        ax_s, ax_r = fig.subplots(1, 2)
        rows = sorted(rows, key=lambda r: _f(r, "step"))
        step = np.array([_f(r, "step") for r in rows])
        edges = 10 ** _edges(np.log10(step))
        for ax in (ax_s, ax_r):
            for k, r in enumerate(rows):
                ax.axvspan(edges[k], edges[k + 1], color=LABEL_COLORS.get(str(r["verdict"]), "white"), alpha=0.18,
                           lw=0)
            ax.set_xscale("log")
            ax.set_xlabel("training step")
            ax.grid(True, which="major", alpha=0.3)
        for key, style, label in (("kappa", "-o", "$\\kappa$ (copies net of chance)"),
                                  ("rp_net_true", "-s", "RP vs true sampler"),
                                  ("on_subspace_fraction_net", ":^", "on a subspace")):
            ax_s.plot(step, [_f(r, key) for r in rows], style, color="k" if key == "kappa" else None, label=label)
        ax_s.set_ylim(-0.05, 1.05)
        ax_s.set_title("(a) samples")
        for key, style, label in (("worst_rel_true_fresh", "-o", "fresh queries"),
                                  ("worst_rel_true_train", "--o", "training queries")):
            ax_r.plot(step, [_f(r, key) for r in rows], style, color="tab:blue", label=label)
        ax_r.axhline(0.2, color="0.5", ls=":", lw=0.7)
        ax_r.set_yscale("log")
        ax_r.set_title("(b) worst rel vs $D_\\mathrm{true}$")
        handles = [Patch(color=LABEL_COLORS[k], alpha=0.35, label=k) for k in LABELS]
        fig.legend(handles=handles + ax_s.get_legend_handles_labels()[0] + ax_r.get_legend_handles_labels()[0],
                   loc="upper center", ncol=5, bbox_to_anchor=(0.5, 1.0))
    return fig


def sweep_positions_figure(rows: Sequence[Mapping[str, Any]], queries: str = "true") -> Figure:
    """One panel per rank: the position t of every cell's net against sigma (one thin line per seed, colour = N);
    for old records the decisive levels of the retired index as dots; from the rows of ``sweep_per_sigma.csv``."""
    with print_style():
        ranks = sorted({int(r["rank"]) for r in rows})
        ns = sorted({int(r["n"]) for r in rows})
        cols = 2 if len(ranks) > 1 else 1
        nrows = math.ceil(len(ranks) / cols)
        fig = Figure(figsize=(6.9, 2.3 * nrows + 0.4))
        fig.subplots_adjust(left=0.08, right=0.88, bottom=0.1 / nrows + 0.05, top=0.94, wspace=0.2, hspace=0.45)
        axes = np.atleast_1d(fig.subplots(nrows, cols, squeeze=False)).ravel()
        import matplotlib as mpl

        norm = mpl.colors.LogNorm(vmin=min(ns), vmax=max(ns) if max(ns) > min(ns) else min(ns) * 2)
        cmap = mpl.colormaps["viridis"]
        curves: dict[tuple[int, int, int], list[tuple[float, float, bool]]] = defaultdict(list)
        for r in rows:
            if r["queries"] == queries:
                curves[(int(r["rank"]), int(r["n"]), int(r["seed"]))].append(
                    (_f(r, "sigma"), _f(r, "position"), _true(r.get("decisive"))))
        for ax, rank in zip(axes, ranks):
            for (rk, n, _), pts in sorted(curves.items()):
                if rk != rank:
                    continue
                pts.sort()
                s, t, dec = (np.array(v) for v in zip(*pts))
                ax.semilogx(s, np.clip(t, -0.5, 1.5), "-", color=cmap(norm(n)), lw=0.6, alpha=0.8)
                ax.scatter(s[dec], np.clip(t[dec], -0.5, 1.5), color=cmap(norm(n)), s=4, zorder=3)
            ax.axhline(0.0, color="tab:red", lw=0.6)
            ax.axhline(1.0, color="tab:blue", lw=0.6)
            ax.set_ylim(-0.55, 1.55)
            ax.set_title(f"r = {rank}")
            ax.set_xlabel("$\\sigma$")
            ax.set_ylabel("position $t$")
            ax.grid(True, which="major", alpha=0.3)
        for ax in axes[len(ranks):]:
            ax.set_visible(False)
        bar = fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=list(axes[:len(ranks)]), fraction=0.03,
                           pad=0.02)
        bar.set_ticks(ns, labels=spaced_labels(ns))
        bar.minorticks_off()
        bar.set_label("N (training samples)")
    return fig


def loss_figure(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """A training log (``log.csv`` rows): (a) the loss and (b) the learning rate and gradient norm against step."""
    with print_style():
        fig = Figure(figsize=(6.9, 2.3))
        fig.subplots_adjust(left=0.08, right=0.92, bottom=0.2, top=0.88, wspace=0.35)
        ax_l, ax_r = fig.subplots(1, 2)
        step = np.array([_f(r, "step") for r in rows])
        ax_l.plot(step, [_f(r, "loss") for r in rows], "-", color="k")
        ax_l.set_yscale("log")
        ax_l.set_title("(a) training loss")
        ax_r.plot(step, [_f(r, "lr") for r in rows], "-", color="tab:blue")
        ax_r.set_ylabel("learning rate", color="tab:blue")
        ax_r.set_title("(b) learning rate and gradient norm")
        if rows and "grad_norm" in rows[0]:
            twin = ax_r.twinx()
            twin.plot(step, [_f(r, "grad_norm") for r in rows], "-", color="tab:red", lw=0.8)
            twin.set_ylabel("gradient norm", color="tab:red")
            twin.set_yscale("log")
        for ax in (ax_l, ax_r):
            ax.set_xlabel("step")
            ax.grid(True, which="major", alpha=0.3)
    return fig


def subspace_phase_figure(cells: Sequence[Mapping[str, Any]], panels: Sequence[tuple[str, int, int]],
                          threshold: float, dim: int) -> Figure:
    """Paper 2's Fig. 4 for a subspace-recovery run: per (method, K, trials) panel, the success rate over
    (N_k, d) with the theorem's boundary N_k = d (top), and the median error against N_k / d per d with the
    completion error (dashed) and the success threshold (dotted) (bottom). At most three panels per row.

    ``cells`` are the per-cell records of ``metrics.json`` (keys ``method``, ``components``, ``rank``,
    ``per_component``, ``ratio``, ``success_rate``, ``error_median``, ``completion_error``).
    """
    with print_style():
        cols = min(3, max(1, len(panels)))
        rows = math.ceil(len(panels) / cols)
        height = 4.2 * rows + 0.5
        fig = Figure(figsize=(6.9, height))
        fig.subplots_adjust(left=0.08, right=0.9, bottom=0.45 / height, top=1 - 0.55 / height, wspace=0.4,
                            hspace=0.55)
        axes = fig.subplots(2 * rows, cols, squeeze=False)
        image = None
        for i, (name, k, trials) in enumerate(panels):
            top, bottom = axes[2 * (i // cols), i % cols], axes[2 * (i // cols) + 1, i % cols]
            mine = [c for c in cells if (c["method"], int(c["components"])) == (name, k)]
            ranks = sorted({int(c["rank"]) for c in mine})
            nks = sorted({int(c["per_component"]) for c in mine})
            grid = np.full((len(ranks), len(nks)), np.nan)
            for c in mine:
                grid[ranks.index(int(c["rank"])), nks.index(int(c["per_component"]))] = float(c["success_rate"])
            image = top.imshow(grid, origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=1,
                               extent=(-0.5, len(nks) - 0.5, -0.5, len(ranks) - 0.5))
            xs, ys = [], []  # the boundary between N_k < d and N_k >= d, row by row
            for j, d in enumerate(ranks):
                x = float(np.interp(d - 0.5, nks, np.arange(len(nks))))
                xs += [x, x]
                ys += [j - 0.5, j + 0.5]
            top.plot(xs, ys, color="w", lw=1.2, ls="--")
            top.set_xticks(range(len(nks)), [str(v) for v in nks], fontsize=5.5)
            top.set_yticks(range(len(ranks)), [str(v) for v in ranks])
            top.set_xlabel("$N_k$ (points per component)")
            top.set_ylabel("d")
            top.set_title(f"{name}, K = {k} ({trials} trials)")
            ratios = sorted({float(c["ratio"]) for c in mine})
            for j, d in enumerate(ranks):
                sub = sorted((c for c in mine if int(c["rank"]) == d), key=lambda c: int(c["per_component"]))
                ratio = [float(c["ratio"]) for c in sub]
                bottom.plot(ratio, [max(float(c["error_median"]), 1e-16) for c in sub], "-o", ms=2, color=f"C{j}",
                            label=f"d = {d}")
                guess = [(float(c["ratio"]), float(c["completion_error"])) for c in sub if float(c["completion_error"]) > 0]
                if guess:
                    bottom.plot(*zip(*guess), "--", color=f"C{j}", lw=0.7)
            bottom.axhline(threshold, color="0.5", ls=":", lw=0.8)
            bottom.axvline(1.0, color="k", lw=0.5)
            bottom.set_xscale("log")
            bottom.set_yscale("log")
            bottom.set_ylim(1e-16, 10)
            ticks = [t for t in (0.25, 0.5, 1, 2, 4, 8) if ratios and min(ratios) <= t <= max(ratios)] or ratios[:1]
            bottom.set_xticks(ticks, [f"{t:g}" for t in ticks])
            bottom.minorticks_off()
            bottom.set_xlabel("$N_k / d$")
            bottom.set_ylabel("median error")
            bottom.legend(fontsize=5, ncol=2, loc="lower left")
            bottom.grid(True, which="major", alpha=0.3)
        for i in range(len(panels), rows * cols):
            axes[2 * (i // cols), i % cols].set_visible(False)
            axes[2 * (i // cols) + 1, i % cols].set_visible(False)
        if image is not None:
            bar = fig.colorbar(image, ax=list(axes.flat), fraction=0.02, pad=0.02)
            bar.set_label("success rate")
        fig.suptitle(f"Subspace recovery from noiseless MoLRG data, n = {dim}", y=1 - 0.12 / height)
    return fig


def jacobian_rank_figure(rows: Sequence[Mapping[str, Any]], dim: int, reference: Mapping[str, int] | None = None,
                         title: str = "", energy: float = RANK_ENERGY,
                         curves: Mapping[str, Sequence[tuple[float, float]]] | None = None) -> Figure:
    """Paper 2's Fig. 3 for one model: per noise level, a violin of the Jacobian's numerical rank / n over the
    samples, against the SNR 1/sigma (log axis); the median marked; for a model of an MoLRG, d/n and K d/n dashed.

    The rank axis is logarithmic above 1/n (linear below, so a rank of 0 is drawn), with rank / n on the left and
    the rank itself on the right: at n = 3,072 ranks of 50 and 150 are 0.016 and 0.049 of n, indistinguishable on a
    linear axis. A dotted line marks the numerical rank of a flat spectrum (the identity: ceil(energy^2 n) of n,
    3,011 of 3,072 at 0.99), the most any n x n Jacobian can reach (its top k singular values hold at least k / n of
    the squared norm).

    ``rows`` are the records of ``ranks.csv`` (keys ``sigma`` and ``rank_over_n``; numbers or strings);
    ``curves`` maps a label to (sigma, rank / n) points of another model (e.g. a closed form), drawn as a line.
    """
    identity = int(numerical_rank(torch.ones(dim, dtype=torch.float64), energy))
    with print_style():
        fig = Figure(figsize=(6.9, 2.8))
        fig.subplots_adjust(left=0.09, right=0.91, bottom=0.17, top=0.86 if title else 0.94)
        ax = fig.subplots()
        groups: dict[float, list[float]] = defaultdict(list)
        for r in rows:
            groups[_f(r, "sigma")].append(_f(r, "rank_over_n"))
        sigmas = sorted(groups, reverse=True)
        position = [math.log10(1.0 / s) for s in sigmas]
        values = [np.array(groups[s]) for s in sigmas]
        spread = [v for v, p in zip(values, position) if np.ptp(v) > 0]
        if spread:  # a KDE needs a spread; constant levels are drawn as a bar below
            parts = ax.violinplot(spread, [p for v, p in zip(values, position) if np.ptp(v) > 0], widths=0.18,
                                  showextrema=False)
            for body in parts["bodies"]:
                body.set_facecolor("tab:blue")
                body.set_alpha(0.45)
        for v, p in zip(values, position):
            lo, hi = float(v.min()), float(v.max())
            ax.plot([p, p], [lo, hi], color="tab:blue", lw=0.6)
            ax.plot([p - 0.06, p + 0.06], [float(np.median(v))] * 2, color="k", lw=1.2)
        ax.axhline(identity / dim, color="0.4", ls=":", lw=0.8, label=f"flat spectrum (identity): {identity:,}/{dim:,}")
        if reference:
            d, k = int(reference["rank"]), int(reference["components"])
            ax.axhline(d / dim, color="tab:red", ls="--", lw=0.8, label=f"d / n = {d}/{dim}")
            ax.axhline(k * d / dim, color="tab:green", ls="--", lw=0.8, label=f"K d / n = {k * d}/{dim}")
        for i, (label, points) in enumerate((curves or {}).items()):
            xs, ys = zip(*sorted((math.log10(1.0 / float(sg)), float(v)) for sg, v in points))
            ax.plot(xs, ys, "-o", ms=2, lw=0.8, color=f"C{i + 1}", label=label)
        ax.legend(loc="best")
        ticks = [t for t in range(math.floor(min(position)), math.ceil(max(position)) + 1)]
        ax.set_xticks(ticks, [f"$10^{{{t}}}$" for t in ticks])
        ax.set_xlim(min(position) - 0.25, max(position) + 0.25)
        # rank / n on the left, the rank on the right: one symlog map (linear below one rank, so 0 is drawn)
        right = ax.twinx()
        for axis, one in ((ax, 1.0 / dim), (right, 1.0)):  # one: a rank of 1 in the axis' unit
            axis.set_yscale("symlog", linthresh=one, linscale=0.4)
            axis.set_ylim(0.0, one * (dim + 0.5))
            decades = [10.0 ** e for e in range(math.ceil(math.log10(one)), math.floor(math.log10(one * dim)) + 1)]
            axis.yaxis.set_major_locator(FixedLocator([0.0] + decades + ([float(dim)] if axis is right else [])))
            axis.yaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        right.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.set_xlabel("SNR $1/\\sigma$")
        ax.set_ylabel("numerical rank / n")
        right.set_ylabel(f"numerical rank (n = {dim:,})")
        ax.grid(True, which="major", alpha=0.3)
        if title:
            ax.set_title(title)
    return fig


# -- cifar-optimal-gap ---------------------------------------------------------------------------------------------
def _by_net(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Rows grouped by network (ordered by width, then name)."""
    groups: dict[tuple[float, str], list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(_f(r, "width"), str(r["net"]))].append(r)
    return {net: groups[(w, net)] for w, net in sorted(groups)}


def spaced_labels(ns: Sequence[int], min_ratio: float = 1.1) -> list[str]:
    """Tick labels for the sorted values ``ns`` on a log axis, blank where a value lies within ``min_ratio`` of the
    last labelled one (N_k / d grids give near-equal N for different ranks, e.g. 270 and 276, whose labels overlap)."""
    labels, last = [], None
    for n in ns:
        show = last is None or n >= last * min_ratio
        labels.append(str(n) if show else "")
        last = n if show else last
    return labels


def _log2_n_axis(ax: Any, ns: Sequence[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.minorticks_off()
    ax.set_xlabel("N (training images)")
    ax.grid(True, which="major", alpha=0.3)


def _decades(values: Sequence[float]) -> tuple[float, float] | None:
    """Log-axis limits on whole decades around the positive ``values`` (None: none): an automatic range narrower
    than a decade shows no tick label at all."""
    positive = [v for v in values if v > 0]
    if not positive:
        return None
    lo = np.floor(np.log10(min(positive)))
    return 10.0 ** lo, 10.0 ** max(np.ceil(np.log10(max(positive))), lo + 1)


def _mean_over_seeds(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted N, mean of ``key`` over seeds, and (min, max) over seeds."""
    by_n: dict[int, list[float]] = defaultdict(list)
    for r in rows:
        by_n[int(_f(r, "n"))].append(_f(r, key))
    ns = np.array(sorted(by_n))
    vals = [np.array(by_n[n]) for n in ns]
    return ns, np.array([v.mean() for v in vals]), np.array([[v.min(), v.max()] for v in vals])


def gap_vs_n_figure(records: Sequence[Mapping[str, Any]], cross: Sequence[Mapping[str, Any]]) -> Figure:
    """cifar-optimal-gap against N at each cell's last evaluation point, one colour per network (mean over training
    seeds, bars: the stored bootstrap interval or the range over seeds): (a) RP to the empirical optimum (paper 1,
    Fig. 4 left); (b) the training loss over its floor (Fig. 4 right); (c) RP between widths (solid) and between
    training seeds (dashed); (d) GL (Fig. 2)."""
    last = [r for r in records if _true(r.get("is_last", True))]
    with print_style():
        fig = Figure(figsize=(6.9, 5.0))
        fig.subplots_adjust(left=0.08, right=0.99, bottom=0.09, top=0.95, wspace=0.25, hspace=0.42)
        (ax_rp, ax_loss), (ax_x, ax_gl) = fig.subplots(2, 2)
        ns_all = sorted({int(_f(r, "n")) for r in last})
        for i, (net, rows) in enumerate(_by_net(last).items()):
            color = f"C{i}"
            ns, rp, spread = _mean_over_seeds(rows, "rp_optimum")
            if len(rows) == len(ns):  # one seed: the bootstrap interval
                by_n = {int(_f(r, "n")): r for r in rows}
                spread = np.array([list(by_n[n]["rp_optimum_ci"]) if "rp_optimum_ci" in by_n[n]
                                   else [_f(by_n[n], "rp_optimum_lo"), _f(by_n[n], "rp_optimum_hi")] for n in ns])
            ax_rp.errorbar(ns, rp, yerr=np.abs(np.stack([rp - spread[:, 0], spread[:, 1] - rp])), fmt="-o",
                           color=color, capsize=2, label=net)
            ns, ratio, _ = _mean_over_seeds(rows, "loss_ratio")
            ax_loss.plot(ns, ratio, "-o", color=color, label=net)
            ns, gl, spread = _mean_over_seeds(rows, "gl")
            ax_gl.plot(ns, gl, "-o", color=color, label=net)
        ax_loss.axhline(1.0, color="0.4", ls=":", lw=0.8)
        ax_loss.set_yscale("log")
        floor_decade, top = _decades([1.0] + [_f(r, "loss_ratio") for r in last])
        ax_loss.set_ylim(floor_decade / 1.5, top)  # the dotted floor inside the frame
        pairs: dict[tuple[str, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        latest: dict[tuple[Any, ...], Mapping[str, Any]] = {}
        for c in cross:
            k = (c["kind"], c["n"], c["a"], c["b"], c.get("seed"), c.get("net"))
            if k not in latest or _f(c, "images_seen") > _f(latest[k], "images_seen"):
                latest[k] = c
        for c in latest.values():
            pairs[(c["kind"], f"{c['a']} vs {c['b']}")][int(_f(c, "n"))].append(_f(c, "rp"))
        for j, ((kind, label), by_n) in enumerate(sorted(pairs.items())):
            ns = sorted(by_n)
            ax_x.plot(ns, [np.mean(by_n[n]) for n in ns], "-o" if kind == "widths" else "--s", color=f"C{j}",
                      label=f"{'widths' if kind == 'widths' else 'seeds'}: {label}")
        if pairs:
            ax_x.legend(fontsize=5.5)
        else:
            ax_x.text(0.5, 0.5, "no two widths or training seeds\nat equal N in these cells", ha="center",
                      va="center", transform=ax_x.transAxes, color="0.4")
        for ax, title, ylabel in ((ax_rp, "(a) RP to the empirical optimum", "fraction of seeds"),
                                  (ax_loss, "(b) training loss over its floor", "loss / optimum's loss"),
                                  (ax_x, "(c) RP between widths (solid) and seeds (dashed)", "fraction of seeds"),
                                  (ax_gl, "(d) GL", "GL (1 - fraction like a training image)")):
            _log2_n_axis(ax, ns_all)
            ax.set_title(title)
            ax.set_ylabel(ylabel)
            if ax is not ax_loss:
                ax.set_ylim(-0.03, 1.03)
        ax_x.set_xlim(ax_rp.get_xlim())  # the same N range in every panel, also where (c) has no pair
        ax_rp.legend()
    return fig


def gap_training_figure(records: Sequence[Mapping[str, Any]], memorization: Mapping[str, Any]) -> Figure:
    """Along training, one row per network: (a) RP to the empirical optimum and (b) the copy fraction against images
    seen, one colour per N (mean over training seeds); dotted lines at the memorization levels, crosses at the
    stored crossing times."""
    nets = _by_net(records)
    with print_style():
        fig = Figure(figsize=(6.9, 2.2 * len(nets) + 0.5))
        fig.subplots_adjust(left=0.08, right=0.86, bottom=0.08 + 0.1 / len(nets), top=0.93, wspace=0.28,
                            hspace=0.5)
        axes = np.atleast_2d(fig.subplots(len(nets), 2, squeeze=False))
        ns_all = sorted({int(_f(r, "n")) for r in records})
        import matplotlib as mpl

        norm = mpl.colors.LogNorm(vmin=min(ns_all), vmax=max(ns_all) if max(ns_all) > min(ns_all) else 2 * min(ns_all))
        cmap = mpl.colormaps["viridis"]
        times = [c for c in memorization.get("cells", []) if c.get("time") is not None]
        for row, (net, rows) in enumerate(nets.items()):
            for n in ns_all:
                own = [r for r in rows if int(_f(r, "n")) == n]
                if not own:
                    continue
                by_images: dict[float, list[Mapping[str, Any]]] = defaultdict(list)
                for r in own:
                    by_images[_f(r, "images_seen")].append(r)
                xs = sorted(by_images)
                for col, key in enumerate(("rp_optimum", "copy_fraction")):
                    axes[row, col].plot(xs, [np.mean([_f(r, key) for r in by_images[x]]) for x in xs], "-o",
                                        color=cmap(norm(n)), ms=2.5, label=f"N = {n}")
                for c in times:
                    if c["net"] == net and int(c["n"]) == n:
                        axes[row, 1].plot([c["time"]], [c["level"]], "x", color=cmap(norm(n)), ms=5)
            for lvl in memorization.get("levels", []):
                axes[row, 1].axhline(lvl, color="0.5", ls=":", lw=0.7)
            for col, title in enumerate(("(a) RP to the empirical optimum", "(b) copy fraction (d1/d2 < 1/3)")):
                ax = axes[row, col]
                ax.set_xscale("log")
                ax.set_ylim(-0.03, 1.03)
                ax.set_xlabel("images seen")
                ax.set_title(f"{title}: {net}")
                ax.grid(True, which="major", alpha=0.3)
        bar = fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=list(axes.ravel()), fraction=0.03, pad=0.02)
        bar.set_ticks(ns_all, labels=[str(n) for n in ns_all])
        bar.minorticks_off()
        bar.set_label("N (training images)")
    return fig


def memorization_time_figure(memorization: Mapping[str, Any]) -> Figure:
    """The memorization time (images seen at which the copy fraction first reaches each level) against N, one
    colour per network: filled markers measured, open markers right-censored at the last point (arrows up) with the
    linear projection as a small dot, and the fitted power law with its exponent and bootstrap interval."""
    cells = memorization.get("cells", [])
    fits = {(f["net"], f["level"]): f for f in memorization.get("fits", [])}
    levels = memorization.get("levels", [])
    with print_style():
        fig = Figure(figsize=(6.9, 2.7))
        fig.subplots_adjust(left=0.09, right=0.99, bottom=0.17, top=0.84, wspace=0.28)
        axes = np.atleast_1d(fig.subplots(1, max(1, len(levels))))
        ns_all = sorted({int(c["n"]) for c in cells}) or [1]
        nets = sorted({(c["width"], c["net"]) for c in cells})
        fitted = [np.exp(f["log_prefactor"]) * float(n) ** f["exponent"] for f in fits.values()
                  if f.get("exponent") is not None for n in (min(ns_all), max(ns_all))]
        limits = _decades([c[k] for c in cells for k in ("time", "bound", "projected") if c.get(k)] + fitted)
        for ax, lvl in zip(axes, levels):
            for i, (_, net) in enumerate(nets):
                own = [c for c in cells if c["net"] == net and c["level"] == lvl]
                done = [c for c in own if c["time"] is not None]
                right = [c for c in own if c["censored"] == "right"]
                ax.plot([c["n"] for c in done], [c["time"] for c in done], "o", color=f"C{i}", label=net)
                ax.plot([c["n"] for c in right], [c["bound"] for c in right], "^", mfc="none", color=f"C{i}")
                proj = [c for c in right if c.get("projected")]
                ax.plot([c["n"] for c in proj], [c["projected"] for c in proj], ".", color=f"C{i}", alpha=0.6)
                fit = fits.get((net, lvl))
                if fit and fit.get("exponent") is not None:
                    xs = np.array([min(ns_all), max(ns_all)], dtype=float)
                    ci = fit.get("exponent_ci")
                    text = f"b = {fit['exponent']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
                    ax.plot(xs, np.exp(fit["log_prefactor"]) * xs ** fit["exponent"], "-", color=f"C{i}", lw=0.8,
                            label=f"{net}: {text}")
            ax.set_yscale("log")
            if limits is not None:
                ax.set_ylim(*limits)  # the same in every panel
            _log2_n_axis(ax, ns_all)
            ax.set_ylabel("images seen")
            ax.set_title(f"copy fraction reaches {lvl:g}\n(^: not yet at the last point; dot: linear projection)")
            ax.legend(fontsize=5.5)
    return fig


def gap_per_sigma_figure(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """Per noise level, the distance ``E||D_net - D_ref||^2 / E||D_ref - x||^2`` of each cell's last network to (a)
    the empirical optimum and (b) the moment-matched Gaussian, one colour per N (widest network, first seed); solid:
    noisy training images, dashed: noisy held-out images."""
    last = [r for r in rows if _true(r.get("is_last", True))]
    widest = max((_f(r, "width") for r in last), default=0.0)
    seed = min((_f(r, "seed") for r in last), default=0.0)
    last = [r for r in last if _f(r, "width") == widest and _f(r, "seed") == seed]
    with print_style():
        fig = Figure(figsize=(6.9, 2.6))
        fig.subplots_adjust(left=0.08, right=0.86, bottom=0.17, top=0.88, wspace=0.25)
        axes = fig.subplots(1, 2)
        ns_all = sorted({int(_f(r, "n")) for r in last}) or [1]
        import matplotlib as mpl

        norm = mpl.colors.LogNorm(vmin=min(ns_all), vmax=max(ns_all) if max(ns_all) > min(ns_all) else 2 * min(ns_all))
        cmap = mpl.colormaps["viridis"]
        for ax, ref, title in ((axes[0], "empirical", "(a) to the empirical optimum"),
                               (axes[1], "gaussian", "(b) to the moment-matched Gaussian")):
            for n in ns_all:
                for query_set, ls in (("train", "-"), ("test", "--")):
                    own = sorted((r for r in last if int(_f(r, "n")) == n and r["reference"] == ref
                                  and r["query_set"] == query_set), key=lambda r: _f(r, "sigma"))
                    if own:
                        ax.loglog([_f(r, "sigma") for r in own], [max(_f(r, "distance"), 1e-8) for r in own], ls,
                                  color=cmap(norm(n)), lw=0.9)
            ax.set_xlabel("$\\sigma$")
            ax.set_ylabel("relative distance")
            ax.set_title(title)
            ax.grid(True, which="major", alpha=0.3)
        bar = fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=list(axes), fraction=0.03, pad=0.02)
        bar.set_ticks(ns_all, labels=[str(n) for n in ns_all])
        bar.minorticks_off()
        bar.set_label("N (training images)")
    return fig


def image_file_figure(path: Any, *, width: float = 6.9) -> Figure:
    """A stored PNG (e.g. a sample grid) drawn at ``width`` inches, without axes."""
    from PIL import Image

    with Image.open(path) as im:
        pixels = np.asarray(im.convert("RGB"))
    height = width * pixels.shape[0] / pixels.shape[1]
    with print_style():
        fig = Figure(figsize=(width, height))
        ax = fig.add_axes((0, 0, 1, 1))
        ax.imshow(pixels, interpolation="nearest")
        ax.set_axis_off()
    return fig

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
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

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


def per_sigma_figure(rows: Sequence[Mapping[str, Any]], title: str = "") -> Figure:
    """Three panels against sigma for one run: (a) L_score against both references, (b) the RMS distances
    ``sqrt(e_true)``, ``sqrt(e_emp)`` and the reference gap ``sqrt(gap)``, (c) the net's position between the
    references with the decisive levels marked. Solid: x from noisy true data; dashed: noisy training points.

    ``rows`` are the per-sigma records of one run (keys ``queries``, ``sigma``, ``l_score_true``,
    ``l_score_empirical``, ``e_true``, ``e_empirical``, ``reference_gap``, ``position``, ``decisive``).
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
            t = np.array([_f(r, "position") for r in sub])
            dec = np.array([_true(r["decisive"]) for r in sub])
            ax_t.semilogx(s, t, ls, color="k", lw=0.9)
            ax_t.scatter(s[dec], t[dec], color="tab:green", zorder=3, s=14)
        ax_l.set_title("(a) $L_\\mathrm{score}$(ref; $\\sigma$)")
        ax_d.set_title("(b) RMS distance between denoisers")
        ax_t.set_title("(c) position $t$ (0 empirical, 1 true)")
        for ax in (ax_l, ax_d, ax_t):
            ax.grid(True, which="major", alpha=0.3)
            ax.set_xlabel("$\\sigma$")
        ax_t.axhline(0.0, color="tab:red", lw=0.7)
        ax_t.axhline(1.0, color="tab:blue", lw=0.7)
        ax_t.axhline(0.5, color="0.5", lw=0.5, ls=":")
        ax_t.set_ylim(-0.5, 1.5)
        handles = [Line2D([], [], color=_REF_STYLE["true"]["color"], label="net vs true MoLRG"),
                   Line2D([], [], color=_REF_STYLE["empirical"]["color"], label="net vs empirical optimum"),
                   Line2D([], [], color="0.45", label="true vs empirical (gap)"),
                   Line2D([], [], color="k", ls="-", label=_QUERY_STYLE["true"][1]),
                   Line2D([], [], color="k", ls="--", label=_QUERY_STYLE["train"][1]),
                   Line2D([], [], color="tab:green", marker="o", ls="", label="decisive level")]
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


def _by_rank(rows: Sequence[Mapping[str, Any]], key: str) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per rank: sorted N, mean and (min, max) spread of ``key`` over seeds (NaN and empty cells skipped)."""
    groups: dict[int, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        v = r.get(key)
        if v is None or v == "" or math.isnan(float(v)):
            continue  # absent, empty or NaN (e.g. no decisive level)
        groups[int(r["rank"])][int(r["n"])].append(float(v))
    out = {}
    for rank, by_n in sorted(groups.items()):
        ns = np.array(sorted(by_n))
        vals = [np.array(by_n[n]) for n in ns]
        out[rank] = (ns, np.array([v.mean() for v in vals]), np.array([[v.min(), v.max()] for v in vals]))
    return out


def sweep_figure(rows: Sequence[Mapping[str, Any]], transitions: Mapping[str, Any] | None = None,
                 title: str = "") -> Figure:
    """The Fig. 5-style summary of a sweep: four panels against N, one colour per rank r, seed mean with the
    min-max band over seeds.

    (a) L_score against the true score and (b) against the empirical score, over the fixed mid-sigma band (solid;
    ``l_score_*_band``) and over the whole EDM grid (dotted); (c) the generalization index (mean position t over the
    decisive levels; 0 = empirical, 1 = true) with the estimated N*(r) dashed; (d) the fraction of the net's samples
    that copy a training point (solid) and that the true-score sampler reproduces (dotted).
    """
    with print_style():
        fig = Figure(figsize=(6.9, 5.4))
        fig.subplots_adjust(left=0.085, right=0.99, bottom=0.08, top=0.9 if title else 0.96, wspace=0.24,
                            hspace=0.36)
        axes = fig.subplots(2, 2)
        ranks = sorted({int(r["rank"]) for r in rows})
        cmap = {rank: f"C{i}" for i, rank in enumerate(ranks)}
        panels = ((axes[0, 0], "true", "(a) $L_\\mathrm{score}$ against the true MoLRG score"),
                  (axes[0, 1], "empirical", "(b) $L_\\mathrm{score}$ against the empirical score"))
        for ax, ref, label in panels:
            for rank, (ns, mean, spread) in _by_rank(rows, f"l_score_{ref}_band").items():
                ax.loglog(ns, mean, "-o", color=cmap[rank], label=f"r = {rank}")
                ax.fill_between(ns, spread[:, 0], spread[:, 1], color=cmap[rank], alpha=0.15, lw=0)
            for rank, (ns, mean, _) in _by_rank(rows, f"l_score_{ref}").items():
                ax.loglog(ns, mean, ":", color=cmap[rank], lw=0.9)
            ax.set_title(label)
            ax.set_ylabel("$L_\\mathrm{score}$ (solid: mid-$\\sigma$ band, dotted: all levels)")
        ax = axes[1, 0]
        for rank, (ns, mean, spread) in _by_rank(rows, "generalization_index").items():
            ax.semilogx(ns, mean, "-o", color=cmap[rank], label=f"r = {rank}")
            ax.fill_between(ns, spread[:, 0], spread[:, 1], color=cmap[rank], alpha=0.15, lw=0)
            nstar = (transitions or {}).get("n_star", {}).get(str(rank))
            if nstar:
                ax.axvline(float(nstar), color=cmap[rank], ls="--", lw=0.8)
        ax.axhline(0.5, color="0.5", ls=":")
        ax.set_ylim(-0.05, 1.05)
        ax.set_ylabel("generalization index (0 empirical, 1 true)")
        ax.set_title("(c) generalization index; dashed: $N^*(r)$")
        ax = axes[1, 1]
        for rank, (ns, mean, _) in _by_rank(rows, "copy_fraction_net").items():
            ax.semilogx(ns, mean, "-o", color=cmap[rank])
        for rank, (ns, mean, _) in _by_rank(rows, "rp_net_true").items():
            ax.semilogx(ns, mean, ":s", color=cmap[rank])
        ax.set_ylim(-0.03, 1.03)
        ax.set_ylabel("fraction of the net's samples")
        ax.set_title("(d) copies (solid), reproduced by true score (dotted)")
        ns_all = sorted({int(r["n"]) for r in rows})
        for ax in axes.flat:
            ax.set_xscale("log", base=2)
            ax.set_xticks(ns_all, [str(n) for n in ns_all])
            ax.set_xlabel("N (training samples)")
            ax.grid(True, which="major", alpha=0.3)
            if ax.get_yscale() == "linear":
                ax.minorticks_off()
        axes[0, 0].legend(loc="lower left")
        if title:
            fig.suptitle(title, y=0.985)
    return fig


def sweep_positions_figure(rows: Sequence[Mapping[str, Any]], queries: str = "true") -> Figure:
    """One panel per rank: the position t of every cell's net against sigma (one thin line per seed, colour = N),
    decisive levels dotted; from the rows of ``sweep_per_sigma.csv``."""
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
                    (_f(r, "sigma"), _f(r, "position"), _true(r["decisive"])))
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
        bar.set_ticks(ns, labels=[str(n) for n in ns])
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


def text_figure(title: str, lines: Sequence[str], *, fontsize: float = 7.5) -> Figure:
    """A page of monospaced text (A4 portrait) for the old matplotlib-only PDF reports (:mod:`.pdf`)."""
    fig = Figure(figsize=(8.27, 11.69))
    fig.text(0.05, 0.97, title, fontsize=12, weight="bold", va="top", family="sans-serif")
    fig.text(0.05, 0.94, "\n".join(lines), fontsize=fontsize, va="top", family="monospace")
    return fig


# -- cifar-optimal-gap ---------------------------------------------------------------------------------------------
def _by_net(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Rows grouped by network (ordered by width, then name)."""
    groups: dict[tuple[float, str], list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(_f(r, "width"), str(r["net"]))].append(r)
    return {net: groups[(w, net)] for w, net in sorted(groups)}


def _log2_n_axis(ax: Any, ns: Sequence[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.minorticks_off()
    ax.set_xlabel("N (training images)")
    ax.grid(True, which="major", alpha=0.3)


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
        for ax, title, ylabel in ((ax_rp, "(a) RP to the empirical optimum", "fraction of seeds"),
                                  (ax_loss, "(b) training loss over its floor", "loss / optimum's loss"),
                                  (ax_x, "(c) RP between widths (solid) and seeds (dashed)", "fraction of seeds"),
                                  (ax_gl, "(d) GL", "GL (1 - fraction like a training image)")):
            _log2_n_axis(ax, ns_all)
            ax.set_title(title)
            ax.set_ylabel(ylabel)
            if ax is not ax_loss:
                ax.set_ylim(-0.03, 1.03)
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
        fig.subplots_adjust(left=0.09, right=0.99, bottom=0.17, top=0.88, wspace=0.28)
        axes = np.atleast_1d(fig.subplots(1, max(1, len(levels))))
        ns_all = sorted({int(c["n"]) for c in cells}) or [1]
        nets = sorted({(c["width"], c["net"]) for c in cells})
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
            _log2_n_axis(ax, ns_all)
            ax.set_ylabel("images seen")
            ax.set_title(f"copy fraction reaches {lvl:g} (^: not yet, at the last point)")
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

"""Report section of ``mogsim cifar-optimal-gap``: the experiment folder, or just its combined files.

Reads ``summary.json`` (required; ``"format": "mogsim-cifar-optimal-gap"``) and, when present, ``sample_grids.png``.
The claims table prints the experiment's stored judgments (``paper_claims``, each with its rule), so nothing is
judged here; every number is a stored value of ``summary.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import InputError
from .compose import DASH, kv_list, provenance_rows, stored_claims, value_text, words
from .files import RunFiles
from .printed import structural
from .sections import Figure, Kind, Section, Table

FORMAT = "mogsim-cifar-optimal-gap"
S = "summary.json"
#: The data set's name holds a number: it is typeset as a citation (Krizhevsky, 2009).
CIFAR = structural("CIFAR-10", "citation")
QUESTION = ("How far are diffusion UNets trained on N {} images from the empirical-optimal denoiser of those "
            "images, and how does that change with N, width and training time (Zhang et al. {}, Figs. {} and {})?"
            ).format(CIFAR, structural(2024, "citation"), structural(2, "citation"), structural(4, "citation"))


def is_gap(folder: Path) -> bool:
    """summary.json whose ``format`` is mogsim-cifar-optimal-gap."""
    return (folder / S).is_file() and RunFiles(folder).get(S, "format", default=None) == FORMAT


def _num(f: RunFiles, *keys: Any, style: str = "dec2") -> str:
    value = f.num(S, *keys, style=style, optional=True)
    return f"{value}" if value is not None else DASH


def build_gap(f: RunFiles) -> Section:
    """The section of a cifar-optimal-gap experiment."""
    records = f.get(S, "records")
    if not records:
        raise InputError(f"{f.path(S)}: holds no evaluated cell yet; run the experiment (or --merge) first")
    last = [i for i, r in enumerate(records) if r.get("is_last")]
    ns = sorted({records[i]["n"] for i in last})
    first_seed = min(records[i]["seed"] for i in last)
    small = [i for i in last if records[i]["n"] == ns[0] and records[i]["seed"] == first_seed]
    large = [i for i in last if records[i]["n"] == ns[-1] and records[i]["seed"] == first_seed]

    def cells_text(idx: list[int], key: str) -> str:
        return words([f"{_num(f, 'records', i, key)} ({f.text(S, 'records', i, 'net')}, "
                      f"{f.num(S, 'records', i, 'images_seen', style='int')} images)" for i in idx])

    n_small, n_large = (f.num(S, "records", idx[0], "n", style="int") for idx in (small, large))
    answer = (f"For training seed {f.num(S, 'records', small[0], 'seed', style='id')}: at N = {n_small} the fraction "
              f"of sampler seeds on which the net's sample is the optimum's is {cells_text(small, 'rp_optimum')}, "
              f"with copy fractions {cells_text(small, 'copy_fraction')}")
    answer += f"; at N = {n_large} it is {cells_text(large, 'rp_optimum')}. " if len(ns) > 1 else ". "
    fits = f.get(S, "memorization", "fits", default=[]) or []
    fitted = [i for i, fit in enumerate(fits) if fit.get("exponent") is not None]
    if fitted:
        answer += "The memorization time grows as N<super>b</super> with " + words([
            f"b = {f.num(S, 'memorization', 'fits', i, 'exponent', style='sig2')} ({f.text(S, 'memorization', 'fits', i, 'net')}, "
            f"copy level {f.num(S, 'memorization', 'fits', i, 'level', style='sig2')})" for i in fitted]) + "."
    else:
        answer += "No network reached the memorization levels at two N, so no memorization-time exponent is stored."
    claims = stored_claims(f, S)
    title = (f"{CIFAR}: distance to the empirical optimum over N, width and training time "
             f"({f.text(S, 'profile')} profile)")
    figures = [
        Figure("gap-vs-n", "Against N, at each cell's last evaluation point, one colour per network. (a) RP to the "
               "empirical optimum (bars: bootstrap interval, or the range over training seeds); (b) the training loss "
               "over the empirical optimum's loss on the same seeded batch (dotted: the floor); (c) RP between "
               "widths (solid) and between training seeds (dashed); (d) GL. Look at (a): high at small N and near "
               "zero at large N is Zhang et al.'s Fig. {}; (c) and (d) are their Fig. {}.".format(
                   structural(4, "citation"), structural(2, "citation")), lambda: _draw(f, "vs_n"), key=True),
        Figure("gap-training", "Along training, one row per network and one colour per N: (a) RP to the empirical "
               "optimum and (b) the copy fraction against images seen; crosses mark the stored memorization times "
               "(dotted levels). Look at how much later the copy fraction rises for larger N.",
               lambda: _draw(f, "training")),
        Figure("gap-memorization", "The memorization time (images seen at which the copy fraction first reaches "
               "each level) against N: filled, measured; open triangles, not reached by the last evaluation point "
               "(a lower bound), with the linear projection as a small dot; lines, the stored power-law fits with "
               "their exponents and bootstrap intervals.", lambda: _draw(f, "memorization")),
        Figure("gap-per-sigma", "Per noise level, the relative distance of the widest network (first seed, last "
               "point) to (a) the empirical optimum and (b) the Gaussian with the subset's mean and covariance; "
               "solid on noisy training images, dashed on noisy held-out images; one colour per N. Look at where the "
               "net leaves the empirical optimum and approaches the Gaussian as N grows.",
               lambda: _draw(f, "per_sigma")),
    ]
    if f.exists("sample_grids.png"):
        shown = f.get(S, "sample_grids", "shown", default=[]) or []
        what = words([f"N = {f.num(S, 'sample_grids', 'shown', i, 'n', style='int')} "
                      f"({f.text(S, 'sample_grids', 'shown', i, 'net')}, "
                      f"{f.num(S, 'sample_grids', 'shown', i, 'images_seen', style='int')} images)"
                      for i in range(len(shown))])
        figures.append(Figure("gap-samples", f"Samples from the same sampler seeds, in row pairs from the top: "
                              f"{what}; in each pair the net's samples above the empirical optimum's. Where the two "
                              "rows show the same pictures the net reproduces the optimum.",
                              lambda: _draw_image(f)))
    tables = [t for t in (_final_table(f, last), _fit_table(f), _cross_table(f), _records_table(f),
                          _memorization_table(f)) if t.rows]
    methods = _methods(f)
    notes = [f"<b>Deviation from the paper.</b> {f.text(S, 'deviations', i)}" for i in
             range(len(f.get(S, "deviations", default=[]) or []))]
    if f.get(S, "claims_recomputed", default=None):
        notes.append(f"<b>Claims judged again after the run</b> (commit {f.text(S, 'claims_recomputed', 'commit')}): "
                     f"{f.text(S, 'claims_recomputed', 'why')}.")
    if f.get(S, "provenance_note", default=None):
        notes.append(f"<b>Provenance.</b> {f.text(S, 'provenance_note')}.")
    if not f.get(S, "complete", default=True):
        notes.insert(0, f"<b>Incomplete:</b> {f.num(S, 'points_done', style='int')} of "
                        f"{f.num(S, 'points_total', style='int')} evaluation points are stored; the tables show those.")
    prov = provenance_rows(f, S, "provenance", label="combined:")
    prov += [("configuration", kv_list(f, S, "config")), ("training", kv_list(f, S, "train")),
             ("runtime", kv_list(f, S, "runtime")), ("evaluation", kv_list(f, S, "evaluation")),
             ("data", kv_list(f, S, "data") if isinstance(f.get(S, "data", default=None), dict) else DASH)]
    return Section("cifar-optimal-gap", title, f.folder, QUESTION, answer, claims, methods, tables, figures, notes,
                   prov)


def _methods(f: RunFiles) -> list[str]:
    cfg, ev = ("config",), ("evaluation",)
    data = f.get(S, "data", default=None)
    data_text = (f"<b>Data.</b> {CIFAR} from {f.text(S, 'data', 'source')} ("
                 f"{f.num(S, 'data', 'num_items_source', style='int')} training images): class-balanced nested subsets "
                 f"of N ∈ {{{value_text(f, S, *cfg, 'ns')}}} images (subset seed "
                 f"{f.num(S, *cfg, 'subset_seed', style='id')}), at {f.num(S, *cfg, 'resolution', style='int')}×"
                 f"{f.num(S, *cfg, 'resolution', style='int')}; held-out images: "
                 f"{f.text(S, 'data', 'held_out', 'rule')}." if isinstance(data, dict) else
                 f"<b>Data.</b> {CIFAR} subsets of N ∈ {{{value_text(f, S, *cfg, 'ns')}}} images.")
    budget = (f"{f.num(S, *cfg, 'images', style='sig3')} images" if f.get(S, *cfg, "images") is not None
              else f"{f.num(S, *cfg, 'epochs', style='sig3')} epochs")
    out = [
        data_text,
        f"<b>Networks and budget.</b> {value_text(f, S, *cfg, 'archs')} (widths: "
        f"{value_text(f, S, *cfg, 'widths')}), {f.text(S, 'train', 'precond')} preconditioning, Adam with learning "
        f"rate {f.num(S, 'train', 'lr', style='sig3')} (warm-up {f.num(S, 'train', 'lr_warmup_images', style='sig3')} "
        f"images), batch {f.num(S, 'train', 'batch', style='int')}, EMA half-life "
        f"{f.num(S, 'train', 'ema_halflife_images', style='sig3')} images (ramp-up ratio "
        f"{_num(f, 'train', 'ema_rampup_ratio', style='sig3')}); training seeds {value_text(f, S, *cfg, 'seeds')}; "
        f"budget {budget} per cell, evaluated with the EMA weights at the stored points (images seen) of each cell.",
        f"<b>Sampling.</b> {f.num(S, *ev, 'num_sample_seeds', style='int')} sampler seeds "
        f"({f.text(S, *ev, 'sample_seeds')}) shared by every network and the empirical optimum; the deterministic "
        f"{f.text(S, *ev, 'sampler', 'solver')} sampler on the {f.num(S, *ev, 'sampler', 'steps', style='int')}-level "
        f"EDM grid; samples clipped to the image range before any metric.",
        f"<b>Metrics.</b> RP to the optimum: the fraction of seeds whose two samples match under "
        f"{f.text(S, *ev, 'similarity', 'backend')} ({f.text(S, *ev, 'similarity', 'rule')}, threshold "
        f"{f.num(S, *ev, 'similarity', 'threshold', style='sig3')}); copy: nearest-neighbour ratio "
        f"d<sub>1</sub>/d<sub>2</sub> &lt; {f.num(S, *ev, 'settings', 'copy_ratio', style='sig3')} against the subset; "
        f"GL: one minus the fraction whose best similarity to the subset passes the threshold; intervals: percentile "
        f"bootstrap at level {f.num(S, *ev, 'settings', 'ci_level', style='sig2')}. Per-sigma distance "
        f"E‖D<sub>net</sub> − D<sub>ref</sub>‖² / E‖D<sub>ref</sub> − x‖² on "
        f"{f.num(S, *ev, 'settings', 'distance_queries', style='int')} queries per level; loss ratio: the training "
        f"loss over the empirical optimum's on {f.num(S, *ev, 'settings', 'loss_batch', style='int')} seeded items.",
        f"<b>Memorization time.</b> {f.text(S, 'memorization', 'rule')}",
    ]
    rules = f.get(S, "rules", default={}) or {}
    out += [f"<b>Rule ({key.replace('_', ' ')}).</b> {f.text(S, 'rules', key)}" for key in rules]
    return out


def _final_table(f: RunFiles, last: list[int]) -> Table:
    rows = [[f"{f.num(S, 'records', i, 'n', style='int')}", f"{f.text(S, 'records', i, 'net')}",
             f"{f.num(S, 'records', i, 'seed', style='id')}", f"{f.num(S, 'records', i, 'images_seen', style='int')}",
             f"{_num(f, 'records', i, 'rp_optimum')} [{_num(f, 'records', i, 'rp_optimum_ci', 0)}, "
             f"{_num(f, 'records', i, 'rp_optimum_ci', 1)}]",
             f"{_num(f, 'records', i, 'copy_fraction')} [{_num(f, 'records', i, 'copy_fraction_ci', 0)}, "
             f"{_num(f, 'records', i, 'copy_fraction_ci', 1)}]",
             _num(f, "records", i, "gl"), _num(f, "records", i, "loss_ratio", style="sig3")] for i in last]
    return Table("gap-final", "Each cell at its last evaluation point: RP to the empirical optimum and the copy "
                 "fraction with their bootstrap intervals, GL, and the training loss over its floor.",
                 ["N", "network", "seed", "images", "RP to optimum", "copies", "GL", "loss ratio"], rows, "rlrrrrrr")


def _records_table(f: RunFiles) -> Table:
    records = f.get(S, "records")
    rows = [[f"{f.num(S, 'records', i, 'n', style='int')}", f"{f.text(S, 'records', i, 'net')}",
             f"{f.num(S, 'records', i, 'seed', style='id')}", f"{f.num(S, 'records', i, 'images_seen', style='int')}",
             _num(f, "records", i, "rp_optimum"), _num(f, "records", i, "copy_fraction"), _num(f, "records", i, "gl"),
             _num(f, "records", i, "loss_ratio", style="sig3")] for i in range(len(records))]
    return Table("gap-records", "Every cell at every evaluation point (summary.json, records).",
                 ["N", "network", "seed", "images", "RP to optimum", "copies", "GL", "loss ratio"], rows, "rlrrrrrr",
                 appendix=True)


def _fit_table(f: RunFiles) -> Table:
    fits = f.get(S, "memorization", "fits", default=[]) or []
    rows = []
    for i, fit in enumerate(fits):
        m = ("memorization", "fits", i)
        ci = (f"[{f.num(S, *m, 'exponent_ci', 0, style='sig2')}, {f.num(S, *m, 'exponent_ci', 1, style='sig2')}]"
              if fit.get("exponent_ci") else DASH)
        rows.append([f"{f.text(S, *m, 'net')}", f"{f.num(S, *m, 'level', style='sig2')}",
                     _num(f, *m, "exponent", style="sig2"), ci, value_text(f, S, *m, "ns_fitted"),
                     f"{f.num(S, *m, 'cells_censored', style='int')}",
                     f"{f.num(S, *m, 'bootstrap_used', style='int')} of {f.num(S, *m, 'bootstrap_resamples', style='int')}"])
    return Table("gap-fit", "The memorization time fitted as t ∝ N<super>b</super> per network and copy level: the "
                 "exponent b, its percentile bootstrap interval, the N fitted, the censored cells left out, and the "
                 "bootstrap replicates that had two or more N to fit.",
                 ["network", "level", "b", "interval", "N fitted", "censored", "replicates"], rows, "lrrrlrr")


def _cross_table(f: RunFiles) -> Table:
    cross = f.get(S, "cross", default=[]) or []
    rows = []
    for i, c in enumerate(cross):
        if not c.get("final"):
            continue
        shared = (f"seed {f.num(S, 'cross', i, 'seed', style='id')}" if c["kind"] == "widths"
                  else f"{f.text(S, 'cross', i, 'net')}")
        rows.append([f"{f.text(S, 'cross', i, 'kind')}", f"{f.num(S, 'cross', i, 'n', style='int')}", shared,
                     f"{f.text(S, 'cross', i, 'a')} vs {f.text(S, 'cross', i, 'b')}",
                     f"{_num(f, 'cross', i, 'rp')} [{_num(f, 'cross', i, 'rp_ci', 0)}, {_num(f, 'cross', i, 'rp_ci', 1)}]",
                     f"{f.text(S, 'cross', i, 'source', optional=True) or 'computed'}"])
    return Table("gap-cross", "RP between widths (at equal N and training seed) and between training seeds (at equal N "
                 "and network), at the end of the budget, with bootstrap intervals; source: computed here from the "
                 "samples, or the earlier merge's cross.csv the row was imported from (--cross-from).",
                 ["between", "N", "shared", "pair", "RP", "source"], rows, "lrllll")


def _memorization_table(f: RunFiles) -> Table:
    cells = f.get(S, "memorization", "cells", default=[]) or []
    rows = []
    for i, c in enumerate(cells):
        m = ("memorization", "cells", i)
        if c.get("time") is not None:
            when = f"{f.num(S, *m, 'time', style='sig3')}"
        elif c.get("censored") == "left":
            when = f"≤ {f.num(S, *m, 'bound', style='int')}"
        else:
            when = f"&gt; {f.num(S, *m, 'bound', style='int')}"
            if c.get("projected"):
                when += f" (projected {f.num(S, *m, 'projected', style='sig2')})"
        rows.append([f"{f.num(S, *m, 'n', style='int')}", f"{f.text(S, *m, 'net')}",
                     f"{f.num(S, *m, 'seed', style='id')}", f"{f.num(S, *m, 'level', style='sig2')}", when,
                     _num(f, *m, "last_copy_fraction")])
    return Table("gap-memorization", "Memorization time per cell and copy level, in images seen (≤: already reached "
                 "at the first point; &gt;: not reached by the last one), and the copy fraction at the last point.",
                 ["N", "network", "seed", "level", "images seen", "last copies"], rows, "rlrrlr", appendix=True)


def _draw(f: RunFiles, which: str) -> Any:
    from . import figures

    summary = f.json(S)
    if which == "vs_n":
        return figures.gap_vs_n_figure(summary["records"], summary.get("cross", []))
    if which == "training":
        return figures.gap_training_figure(summary["records"], summary.get("memorization", {}))
    if which == "memorization":
        return figures.memorization_time_figure(summary.get("memorization", {}))
    rows = [{"n": r["n"], "net": r["net"], "width": r["width"], "seed": r["seed"], "is_last": r.get("is_last"),
             "query_set": q, "reference": ref, "sigma": s, "distance": d}
            for r in summary["records"] for q, refs in r["distance"].items() for ref, values in refs.items()
            for s, d in zip(r["sigmas"], values)]
    return figures.gap_per_sigma_figure(rows)


def _draw_image(f: RunFiles) -> Any:
    from .figures import image_file_figure

    try:
        return image_file_figure(f.path("sample_grids.png"))
    except OSError as exc:
        raise InputError(f"{f.path('sample_grids.png')}: damaged ({exc}); restore it or re-run --merge") from None


KINDS = (Kind("cifar-optimal-gap", "summary.json with format mogsim-cifar-optimal-gap", is_gap, build_gap),)


"""Report sections of ``mogsim score-match``: one run folder, and a sweep folder (or its compact export).

Reads only the files the experiment writes. A run: ``config.json``, ``metrics.json``, ``per_sigma.csv`` (required)
and ``samples.npz`` (optional, for the sample histograms). A sweep: ``sweep_metrics.json`` and ``sweep_table.csv``
(required) and ``sweep_per_sigma.csv`` (optional), which is all a committed compact export holds.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from ..errors import InputError
from .compose import DASH, agreement, distinct, kv_list, provenance_rows, span, stored_claims, words
from .files import RunFiles
from .printed import Num, join, structural
from .sections import Claim, Figure, Kind, Section, Table

ZHANG = "Zhang et al. ({})".format(structural(2024, "citation"))
FIG5 = "Fig. {}".format(structural(5, "citation"))
QUESTION = ("Does a network trained on N samples of a mixture of low-rank Gaussians (MoLRG) learn the empirical "
            "score of its training set (memorization) or the true score of the mixture (generalization)?")
SMALL_N = f"Small N: the learned score is close to the empirical score, and samples copy training points ({ZHANG}, {FIG5})."
LARGE_N = f"Large N: the learned score is close to the true MoLRG score ({ZHANG}, {FIG5})."
GROWS = f"The N needed to generalize grows with the rank r, roughly linearly ({ZHANG}, {FIG5})."
REPRODUCE = (f"In the generalization regime the same noise gives the same sample as the true-score sampler "
             f"(reproducibility, {ZHANG}).")

L_SCORE = ("L<sub>score</sub>(ref; σ) = E‖D<sub>net</sub> − D<sub>ref</sub>‖² / E‖D<sub>ref</sub> − x‖² per noise "
           "level σ (mogsim's definition; the paper's exact formula is not published), against the true MoLRG "
           "denoiser and the empirical optimum of the training set")


# -- one run ---------------------------------------------------------------------------------------------------------
PER_SIGMA_COLUMNS = ("queries", "sigma", "l_score_true", "l_score_empirical", "e_true", "e_empirical",
                     "reference_gap", "position", "decisive")


def is_run(folder: Path) -> bool:
    """A score-match run folder: config.json of experiment score-match (the other files are checked when read)."""
    if not (folder / "config.json").is_file():
        return False
    return RunFiles(folder).get("config.json", "config", "experiment", default=None) == "score-match"


def build_run(f: RunFiles) -> Section:
    """The section of one score-match run."""
    C, M, P = "config.json", "metrics.json", "per_sigma.csv"
    cfg = ("config",)

    def c(key: str, style: str = "sig4") -> Num | None:
        return f.num(C, *cfg, key, style=style)

    def m(key: str, style: str = "dec2") -> Num | None:
        return f.num(M, key, style=style, optional=True)

    rows = f.csv(P, PER_SIGMA_COLUMNS)
    verdict = f.text(M, "verdict")
    reason = f.text(M, "verdict_detail", "reason", optional=True)
    index = m("generalization_index")
    decisive = f.num(M, "verdict_detail", "decisive_levels", style="int", optional=True)
    title = f"Score matching on MoLRG: one run (r = {c('rank', 'int')}, N = {c('num_train', 'int')}, seed {c('seed', 'int')})"
    answer = (f"The stored verdict is <b>{verdict}</b>" + (f" ({reason})." if reason is not None else ".")
              + f" Of the net's samples, a fraction {m('copy_fraction_net')} copy a training point (empirical "
              f"optimum {m('copy_fraction_empirical')}, true score {m('copy_fraction_true')}) and a fraction "
              f"{m('rp_net_true')} reproduce the true-score sampler's sample from the same noise "
              f"({m('rp_net_empirical')} the empirical optimum's).")
    index_text = f"generalization index {index} over {decisive} decisive levels" if index is not None else \
        "no generalization index (no decisive level)"
    claims = stored_claims(f, M) or [
        Claim(f"{SMALL_N} {LARGE_N}", f"N = {c('num_train', 'int')}: verdict {verdict}; {index_text}; copies "
              f"{m('copy_fraction_net')}", "not tested",
              "one run has one N; a sweep over N tests the claim"),
        Claim(REPRODUCE, f"RP of the net against the true-score sampler {m('rp_net_true')}, against the empirical "
              f"optimum {m('rp_net_empirical')}", "not judged", "the files store no rule for agreement"),
    ]
    methods = _run_methods(f)
    fig_caption = ("Per noise level σ, the net against both references. (a) L<sub>score</sub>; (b) RMS distances "
                   "between the net and each reference, and between the references (grey); (c) the net's position "
                   "t along the segment from the empirical optimum (t = {}) to the true denoiser (t = {}), decisive "
                   "levels in green. Look at (c): the verdict averages the green points; where the grey gap in (b) "
                   "is small the references agree and no level can decide.").format(
        structural(0, "formula"), structural(1, "formula"))
    figures = [Figure("run-per-sigma", fig_caption, lambda: _draw_per_sigma(f), key=True)]
    if f.exists("samples.npz"):
        figures.append(Figure(
            "run-samples",
            "The samples of the net, the empirical optimum and the true score from the same noise seeds. "
            f"(a) nearest-neighbour ratio d<sub>1</sub>/d<sub>2</sub> (a copy left of the line at "
            f"{c('copy_ratio', 'sig3')}); (b) relative distance to the nearest true subspace (on a subspace left of "
            f"the line at {c('subspace_tol', 'sig3')}); (c) relative distance between the net's sample and each "
            f"reference's from the same seed (reproduced left of the line at {c('rp_threshold', 'sig3')}). Look at "
            "which reference the net's histogram (black) follows.",
            lambda: _draw_samples(f)))
    totals = Table("run-totals", "The run's stored totals (L<sub>score</sub> sums over the grid or over the band; "
                   "fractions of the sampler seeds).",
                   ["metric", "value"], _totals_rows(f), "lr")
    per_sigma = Table("run-per-sigma-table", "Per noise level: L<sub>score</sub> against each reference, the "
                      "reference gap E‖D<sub>true</sub> − D<sub>emp</sub>‖², the net's position t, and whether the "
                      "level is decisive (*), for x from noisy true data and from noisy training points.",
                      ["σ", "L true", "L emp.", "gap", "t", "", "L true", "L emp.", "gap", "t", ""],
                      _per_sigma_rows(f, rows), "rrrrrlrrrrl",
                      groups=[("", 1), ("x from noisy true data", 5), ("x from noisy training points", 5)])
    prov = provenance_rows(f, C, "provenance", label="started:")
    prov += provenance_rows(f, M, "provenance", label="finished:", same_as=f.get(C, "provenance", default=None))
    prov += [("run key", f"{f.text(C, 'key')}"), ("derived seeds", kv_list(f, C, "config", "derived_seeds")),
             ("configuration", kv_list(f, C, "config", skip=("derived_seeds", "budget"))),
             ("budget", kv_list(f, C, "config", "budget"))]
    training = f.get(M, "training", default=None)
    if isinstance(training, dict):
        prov.append(("training", kv_list(f, M, "training")))
    if f.num(M, "eval_seconds", optional=True) is not None:
        prov.append(("evaluation seconds", f"{f.num(M, 'eval_seconds')}"))
    return Section("score-match run", title, f.folder, QUESTION.replace("N samples", f"N = {c('num_train', 'int')} samples"),
                   answer, claims, methods, [totals, per_sigma], figures, [], prov)


def _run_methods(f: RunFiles) -> list[str]:
    C, M = "config.json", "metrics.json"

    def c(key: str, style: str = "sig4") -> Any:
        return f.num(C, "config", key, style=style)

    rules = f.get(M, "rules", default={})
    out = [
        f"<b>Data.</b> N = {c('num_train', 'int')} training points drawn once from a mixture of K = {c('components', 'int')} "
        f"mutually orthogonal rank-{c('rank', 'int')} subspaces of R<super>n</super>, n = {c('dim', 'int')}, "
        f"balanced over components (master seed {c('seed', 'int')}; derived seeds in the provenance appendix).",
        f"<b>Model and budget.</b> A {f.text(C, 'config', 'arch')} of width {c('width', 'int')} and depth "
        f"{c('depth', 'int')} with EDM preconditioning (σ<sub>data</sub> = {c('sigma_data', 'sig3')}), trained with "
        f"Adam (learning rate {c('lr')}) for {c('steps', 'int')} steps of batch {c('batch', 'int')} "
        f"({f.num(C, 'config', 'budget', 'samples_seen', style='int')} samples seen, "
        f"{f.num(C, 'config', 'budget', 'epochs', style='sig3')} epochs; "
        f"{f.text(C, 'config', 'budget', 'convention')}).",
        f"<b>Measures.</b> {L_SCORE}, on {c('eval_queries', 'int')} queries per level of the "
        f"{c('sampler_steps', 'int')}-level EDM grid; samples from {c('sample_seeds', 'int')} shared noise seeds "
        f"({f.text(C, 'config', 'solver')} sampler).",
    ]
    for key in ("l_score", "copy", "subspace", "rp"):
        if key in rules:
            out.append(f"<b>Rule ({key.replace('_', ' ')}).</b> {f.text(M, 'rules', key)}")
    rule = f.text(M, "verdict_detail", "rule", optional=True)
    if rule is not None:
        out.append(f"<b>Verdict rule.</b> {rule}")
    return out


def _totals_rows(f: RunFiles) -> list[list[str]]:
    M = "metrics.json"
    names = [("l_score_true", "L<sub>score</sub> vs true, whole grid, x from noisy true data", "sig3"),
             ("l_score_empirical", "L<sub>score</sub> vs empirical, whole grid, x from noisy true data", "sig3"),
             ("l_score_true_band", "L<sub>score</sub> vs true, mid-σ band", "sig3"),
             ("l_score_empirical_band", "L<sub>score</sub> vs empirical, mid-σ band", "sig3"),
             ("l_score_true_train_queries", "L<sub>score</sub> vs true, x from noisy training points", "sig3"),
             ("l_score_empirical_train_queries", "L<sub>score</sub> vs empirical, x from noisy training points", "sig3"),
             ("generalization_index", "generalization index (0 empirical, 1 true)", "dec3"),
             ("copy_fraction_net", "copies: net", "dec3"), ("copy_fraction_empirical", "copies: empirical optimum", "dec3"),
             ("copy_fraction_true", "copies: true score", "dec3"),
             ("on_subspace_fraction_net", "on a true subspace: net", "dec3"),
             ("on_subspace_fraction_empirical", "on a true subspace: empirical optimum", "dec3"),
             ("on_subspace_fraction_true", "on a true subspace: true score", "dec3"),
             ("rp_net_true", "RP net vs true score", "dec3"), ("rp_net_empirical", "RP net vs empirical optimum", "dec3"),
             ("rp_empirical_true", "RP empirical optimum vs true score", "dec3")]
    rows = []
    for key, label, style in names:
        if f.get(M, key, default=None) is None and key not in f.json(M):
            continue
        if key == "generalization_index":
            label = label.replace("(0 empirical, 1 true)", "(empirical {} … true {})").format(
                structural(0, "formula"), structural(1, "formula"))
        num = f.num(M, key, style=style, optional=True)
        rows.append([label, f"{num}" if num is not None else DASH])
    return rows


def _per_sigma_rows(f: RunFiles, rows: list[dict[str, str]]) -> list[list[str]]:
    P = "per_sigma.csv"
    by_query: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_query[r["queries"]].append(i)
    true_rows, train_rows = by_query.get("true", []), by_query.get("train", [])
    out = []
    for k in range(max(len(true_rows), len(train_rows))):
        line: list[str] = []
        for j, idx in enumerate((true_rows, train_rows)):
            if k >= len(idx):
                line += ([DASH] if j == 0 else []) + [""] * 5
                continue
            i = idx[k]
            if j == 0:
                line.append(_cell(f, P, i, "sigma", "sig3"))
            line += [_cell(f, P, i, "l_score_true", "sig3"), _cell(f, P, i, "l_score_empirical", "sig3"),
                     _cell(f, P, i, "reference_gap", "sig3"), _cell(f, P, i, "position", "dec2"),
                     "*" if rows[i]["decisive"].lower() in ("true", "1") else ""]
        out.append(line)
    return out


def _cell(f: RunFiles, name: str, row: int, column: str, style: str) -> str:
    num = f.cell(name, row, column, style)
    return f"{num}" if num is not None else DASH


#: The numeric columns of per_sigma.csv (and sweep_per_sigma.csv) the figures draw.
PER_SIGMA_NUMBERS = ("sigma", "l_score_true", "l_score_empirical", "e_true", "e_empirical", "reference_gap",
                     "position")
#: The numeric columns of sweep_table.csv the sweep figure draws.
SWEEP_NUMBERS = ("rank", "n", "seed", "generalization_index", "copy_fraction_net", "rp_net_true", "l_score_true",
                 "l_score_empirical", "l_score_true_band", "l_score_empirical_band")


def _draw_per_sigma(f: RunFiles) -> Any:
    from .figures import per_sigma_figure

    f.csv("per_sigma.csv", PER_SIGMA_COLUMNS)
    return per_sigma_figure(f.numeric_rows("per_sigma.csv", PER_SIGMA_NUMBERS))


def _draw_samples(f: RunFiles) -> Any:
    import numpy as np

    from .figures import samples_figure

    path = f.path("samples.npz")
    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:  # noqa: BLE001 - any damage to the archive is the user's file, reported as one line
        raise InputError(f"{path}: damaged ({type(exc).__name__}); restore it or re-run the experiment") from None
    needed = [f"{n}_{k}" for n in ("net", "empirical", "true") for k in ("nn_ratio", "subspace_residual")]
    needed += ["rel_distance_net_empirical", "rel_distance_net_true"]
    missing = [k for k in needed if k not in arrays]
    if missing:
        raise InputError(f"{path}: damaged (no array {', '.join(missing)}); restore it or re-run the experiment")
    cfg = f.get("config.json", "config")
    return samples_figure(arrays, float(cfg["copy_ratio"]), float(cfg["subspace_tol"]), float(cfg["rp_threshold"]))


# -- a sweep ---------------------------------------------------------------------------------------------------------
SWEEP_COLUMNS = ("rank", "n", "seed", "generalization_index", "copy_fraction_net", "verdict")


def is_sweep(folder: Path) -> bool:
    """A score-match sweep folder or its compact export: both hold sweep_metrics.json."""
    return (folder / "sweep_metrics.json").is_file()


def build_sweep(f: RunFiles) -> Section:
    """The section of a score-match sweep (from the combined files only)."""
    M, T = "sweep_metrics.json", "sweep_table.csv"
    rows = f.csv(T, SWEEP_COLUMNS)
    if not rows:
        raise InputError(f"{f.path(T)}: holds no finished cell yet; wait for the sweep to finish a group")
    base = ("config", "base")

    def b(key: str, style: str = "sig4") -> Any:
        return f.num(M, *base, key, style=style)

    cells: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        try:
            cells[(int(r["rank"]), int(r["n"]))].append(i)
        except ValueError:
            raise InputError(f"{f.path(T)}: damaged CSV (row {i + 2}: rank {r['rank']!r}, n {r['n']!r} are not "
                             "integers); restore it or re-run the sweep") from None
    ranks = sorted({r for r, _ in cells})
    ns = sorted({n for _, n in cells})
    first_row = {key: idx[0] for key, idx in cells.items()}
    rank_num = {r: f.cell(T, min(first_row[k] for k in cells if k[0] == r), "rank", "int") for r in ranks}
    n_num = {n: f.cell(T, min(first_row[k] for k in cells if k[1] == n), "n", "int") for n in ns}
    at = {n: [i for (r, nn), idx in cells.items() if nn == n for i in idx] for n in ns}

    def labels(idx: list[int]) -> tuple[str, list[str]]:
        texts = [f.cell_text(T, i, "verdict") for i in idx]
        return words(distinct(texts), " or "), [t.value for t in texts]

    def spread(idx: list[int], column: str, style: str = "dec2") -> str:
        return span([f.cell(T, i, column, style) for i in idx])

    small, large = ns[0], ns[-1]
    small_labels, small_values = labels(at[small])
    large_labels, large_values = labels(at[large])
    tr = ("transitions",)
    nstar = f.get(M, *tr, "n_star", default={}) or {}
    nstar_text = words([_nstar(f, r) for r in nstar]) if nstar else DASH
    slope = f.num(M, *tr, "slope", style="sig2", optional=True)
    slope_text = f"fit N* ∝ r<super>b</super> gives b = {slope}" if slope is not None else "no fit of N* against r"
    rank_words = words([f"{f.key_text(M, *tr, 'n_star', r)}" for r in nstar]) if nstar else DASH
    title = (f"Score matching on MoLRG: sweep over N and r ({b('steps', 'int')} steps × batch "
             f"{b('batch', 'int')})")
    stored = stored_claims(f, M)
    if slope is None:
        growth = "no fit of N* against r is stored"
    elif stored:
        growth = f"{slope_text}; the experiment's own judgments are in the claims table"
    else:
        growth = f"{slope_text}, with no interval stored, so growth with r is not judged here"
    answer = (f"At N = {n_num[small]} the stored verdict is {_in_cells(small_labels, small_values)} "
              f"(generalization index {spread(at[small], 'generalization_index')}), and at N = {n_num[large]} it is "
              f"{_in_cells(large_labels, large_values)} (index {spread(at[large], 'generalization_index')}). "
              f"The stored transition N*(r) is {nstar_text} for r = {rank_words}; {growth}.")
    claims = [
        Claim(SMALL_N, f"N = {n_num[small]}: verdict {_in_cells(small_labels, small_values)}; generalization "
              f"index {spread(at[small], 'generalization_index')}; copies {spread(at[small], 'copy_fraction_net')} "
              "(range over ranks and seeds)", agreement(small_values, "memorizing"),
              "the stored verdict of every cell at the smallest N"),
        Claim(LARGE_N, f"N = {n_num[large]}: verdict {_in_cells(large_labels, large_values)}; generalization "
              f"index {spread(at[large], 'generalization_index')}; copies {spread(at[large], 'copy_fraction_net')}",
              agreement(large_values, "generalizing"), "the stored verdict of every cell at the largest N"),
        Claim(GROWS, f"N*(r) = {nstar_text} for r = {rank_words}; {slope_text}", "not judged",
              "the files store b without an interval or a rule for agreement"),
    ]
    if "rp_net_true" in rows[0]:
        claims.append(Claim(REPRODUCE, f"RP of the net against the true-score sampler at N = {n_num[large]}: "
                            f"{spread(at[large], 'rp_net_true')}; at N = {n_num[small]}: "
                            f"{spread(at[small], 'rp_net_true')}", "not judged", "the files store no rule for "
                            "agreement"))
    claims = stored or claims
    seeds_text = join([f"{f.num(M, 'config', 'seeds', i, style='id')}" for i in
                       range(len(f.get(M, "config", "seeds")))])
    fig_caption = (f"The sweep against N, one colour per rank r; lines: mean over seeds {seeds_text}, bands: range "
                   "over seeds. (a), (b): L<sub>score</sub> against the true and the empirical score, over the mid-σ "
                   "band (solid) and the whole grid (dotted). (c): generalization index, dashed at the stored N*(r). "
                   "(d): fraction of the net's samples that copy a training point (solid) and that the true-score "
                   "sampler reproduces (dotted). Look at (c): where the curves cross the middle, and whether they "
                   "move right as r grows.")
    figures = [Figure("sweep-summary", fig_caption, lambda: _draw_sweep(f), key=True)]
    if f.exists("sweep_per_sigma.csv"):
        figures.append(Figure(
            "sweep-positions",
            "Per noise level σ, the position t of every cell's net between the empirical optimum (t = {}) and the "
            "true denoiser (t = {}), x from noisy true data; one thin line per seed, colour = N, dots = decisive "
            "levels. Look at how the decisive mid-σ levels move from t near the empirical optimum to t near the "
            "true denoiser as N grows.".format(structural(0, "formula"), structural(1, "formula")),
            lambda: _draw_positions(f)))
    tables = [_nstar_table(f, nstar)] if nstar else []
    header = ["r \\ N"] + [f"{n_num[n]}" for n in ns]
    for column, what, style in (("generalization_index", "generalization index", "dec2"),
                                ("copy_fraction_net", "fraction of the net's samples that copy a training point",
                                 "dec2"),
                                ("rp_net_true", "RP of the net against the true-score sampler", "dec2")):
        if column not in rows[0]:
            continue
        grid = [[f"{rank_num[r]}"] + [spread(cells.get((r, n), []), column, style) for n in ns] for r in ranks]
        tables.append(Table(f"sweep-{column}", f"The {what} per cell, range over seeds {seeds_text} "
                            f"(smallest–largest stored value; {DASH}: none stored).", header, grid,
                            "l" + "r" * len(ns)))
    tables.append(_cells_table(f, rows))
    notes = [f"{f.text(M, 'notes', i)}" for i in range(len(f.get(M, "notes", default=[]) or []))]
    if not f.get(M, "complete", default=True):
        notes.insert(0, f"<b>Incomplete sweep:</b> {f.num(M, 'cells_done', style='int')} of "
                        f"{f.num(M, 'cells_total', style='int')} cells finished; the tables show those.")
    methods = _sweep_methods(f, seeds_text)
    prov = provenance_rows(f, M, "provenance_first_call", label="first call:")
    prov += provenance_rows(f, M, "provenance", label="combined results:",
                            same_as=f.get(M, "provenance_first_call", default=None))
    prov += [("configuration", kv_list(f, M, "config")), ("budget", kv_list(f, M, "budget"))]
    if isinstance(f.get(M, "timing", default=None), dict):
        prov.append(("timing (seconds)", kv_list(f, M, "timing")))
    if f.exists("config.json"):
        prov.append(("sweep key", f"{f.text('config.json', 'key')}"))
    return Section("score-match sweep", title, f.folder, QUESTION + " How does the N at which it switches depend "
                   "on the rank r?", answer, claims, methods, tables, figures, notes, prov)


def _in_cells(labels: str, values: list[str]) -> str:
    """``memorizing in every cell`` or ``memorizing or undecided, depending on the cell``."""
    return f"{labels} in every cell" if len(set(values)) == 1 else f"{labels}, depending on the cell"


def _nstar(f: RunFiles, rank: str) -> str:
    num = f.num("sweep_metrics.json", "transitions", "n_star", rank, style="sig3", optional=True)
    return f"{num}" if num is not None else "not crossed"


def _nstar_table(f: RunFiles, nstar: dict[str, Any]) -> Table:
    M = "sweep_metrics.json"
    per = f.get(M, "transitions", "n_star_per_component_per_rank", default={}) or {}
    rows = []
    for rank in nstar:
        per_num = f.num(M, "transitions", "n_star_per_component_per_rank", rank, optional=True) if rank in per else None
        rows.append([f"{f.key_text(M, 'transitions', 'n_star', rank)}", _nstar(f, rank),
                     f"{per_num}" if per_num is not None else DASH])
    slope = f.num(M, "transitions", "slope", style="sig2", optional=True)
    caption = (f"The stored transition N*(r) and N*/(K r), samples per component per dimension. "
               f"{f.text(M, 'transitions', 'rule')}")
    if slope is not None:
        caption += f" Stored fit exponent: b = {slope}."
    return Table("sweep-nstar", caption, ["r", "N*(r)", "N*/(K r)"], rows, "rrr")


def _cells_table(f: RunFiles, rows: list[dict[str, str]]) -> Table:
    T = "sweep_table.csv"
    columns = [("rank", "r", "int"), ("n", "N", "int"), ("seed", "seed", "int"),
               ("l_score_true_band", "L true (band)", "sig3"), ("l_score_empirical_band", "L emp. (band)", "sig3"),
               ("generalization_index", "index", "dec2"), ("decisive_levels", "decisive", "int"),
               ("copy_fraction_net", "copies", "dec2"), ("rp_net_true", "RP true", "dec2"),
               ("rp_net_empirical", "RP emp.", "dec2")]
    columns = [c for c in columns if c[0] in rows[0]]
    body = [[_cell(f, T, i, key, style) for key, _, style in columns] + [f"{f.cell_text(T, i, 'verdict')}"]
            for i in range(len(rows))]
    return Table("sweep-cells", "Every cell of the sweep as stored in sweep_table.csv (L: L<sub>score</sub> over the "
                 "mid-σ band; index: generalization index; decisive: number of decisive levels).",
                 [h for _, h, _ in columns] + ["verdict"], body, "r" * len(columns) + "l", appendix=True)


def _sweep_methods(f: RunFiles, seeds_text: str) -> list[str]:
    M = "sweep_metrics.json"

    def b(key: str, style: str = "sig4") -> Any:
        return f.num(M, "config", "base", key, style=style)

    ranks = join([f"{f.num(M, 'config', 'ranks', i, style='int')}" for i in range(len(f.get(M, 'config', 'ranks')))])
    sizes = "train_sizes" if f.get(M, "config", "train_sizes", default=None) is not None else "ns"  # older sweeps: ns
    ns = join([f"{f.num(M, 'config', sizes, i, style='int')}" for i in range(len(f.get(M, "config", sizes)))])
    out = [
        f"<b>Data.</b> Each cell draws N training points once from a mixture of K = {b('components', 'int')} mutually "
        f"orthogonal rank-r subspaces of R<super>n</super>, n = {b('dim', 'int')}, balanced over components; "
        f"r ∈ {{{ranks}}}, N ∈ {{{ns}}}, master seeds {{{seeds_text}}}.",
        f"<b>Model and budget.</b> Every cell trains its own {f.text(M, 'config', 'base', 'arch')} of width "
        f"{b('width', 'int')} and depth {b('depth', 'int')} with EDM preconditioning, Adam (learning rate {b('lr')}), "
        f"for {b('steps', 'int')} steps of batch {b('batch', 'int')} "
        f"({f.num(M, 'budget', 'samples_seen_per_model', style='int')} samples per model; "
        f"{f.text(M, 'budget', 'convention')}).",
        f"<b>Measures.</b> {L_SCORE}, on {b('eval_queries', 'int')} queries per level of the "
        f"{b('sampler_steps', 'int')}-level EDM grid; the band sums the levels with {b('band_sigma_min')} ≤ σ ≤ "
        f"{b('band_sigma_max')}. Samples from {b('sample_seeds', 'int')} shared noise seeds "
        f"({f.text(M, 'config', 'base', 'solver')} sampler): a copy when d<sub>1</sub>/d<sub>2</sub> &lt; "
        f"{b('copy_ratio', 'sig3')}, on a subspace when the relative residual is below {b('subspace_tol', 'sig3')}, "
        f"reproduced (RP) when the relative distance of two samples from one seed is below "
        f"{b('rp_threshold', 'sig3')}.",
    ]
    verdict_rule = f.text(M, "rules", "verdict", optional=True)
    if verdict_rule is not None:
        out.append(f"<b>Verdict.</b> {verdict_rule}")
    cells = sorted(f.folder.glob("cells/*/metrics.json"))
    if cells:  # a full sweep folder (not a compact export): each cell stores the verdict rule it was judged by
        name = str(cells[0].relative_to(f.folder))
        rule = f.text(name, "verdict_detail", "rule", optional=True)
        if rule is not None:
            out.append(f"<b>Verdict rule (stored with each cell).</b> {rule}")
    rule = f.text(M, "transitions", "rule", optional=True)
    if rule is not None:
        out.append(f"<b>Transition.</b> {rule}")
    out.append("<b>Agreement.</b> “agrees?” reads stored verdict labels only: yes when every cell at the N in "
               "question has the verdict the claim predicts, partly when some do, no when none does; claims for which "
               "the files store no judgment are marked not judged.")
    return out


def _draw_sweep(f: RunFiles) -> Any:
    from .figures import sweep_figure

    rows = f.numeric_rows("sweep_table.csv", SWEEP_NUMBERS)
    return sweep_figure(rows, f.get("sweep_metrics.json", "transitions", default=None))


def _draw_positions(f: RunFiles) -> Any:
    from .figures import sweep_positions_figure

    f.csv("sweep_per_sigma.csv", ("rank", "n", "seed") + PER_SIGMA_COLUMNS)
    return sweep_positions_figure(f.numeric_rows("sweep_per_sigma.csv", ("rank", "n", "seed") + PER_SIGMA_NUMBERS))


KINDS = (Kind("score-match sweep", "sweep_metrics.json", is_sweep, build_sweep),
         Kind("score-match run", "config.json of experiment score-match", is_run, build_run))


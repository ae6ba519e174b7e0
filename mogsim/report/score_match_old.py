"""Report section of an old score-match sweep record: sweeps written before the verdict of
:mod:`mogsim.metrics.molrg_verdict` (``sweep_metrics.json`` with ``transitions`` and no ``analysis``), judged by the
retired generalization index. They render as what they are: their copies, RP and L_score are measurements; their
verdicts and N*(r) come from an index that degenerate denoisers fooled (issue 10).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ..errors import InputError
from .compose import DASH, agreement, distinct, span, stored_claims, words
from .files import RunFiles
from .printed import join, structural
from .sections import Claim, Figure, Section, Table
from .score_match import GROWS, L_SCORE, LARGE_N, PER_SIGMA_NUMBERS, QUESTION, REPRODUCE, SMALL_N
from .score_match import cell as _cell, sweep_notes_and_provenance

#: The columns of an old record's sweep_per_sigma.csv (with the retired index's decisive levels).
PER_SIGMA_COLUMNS = ("queries", "sigma", "l_score_true", "l_score_empirical", "e_true", "e_empirical",
                     "reference_gap", "position", "decisive")

SWEEP_COLUMNS = ("rank", "n", "seed", "generalization_index", "copy_fraction_net", "verdict")
#: The numeric columns of sweep_table.csv the sweep figure draws.
SWEEP_NUMBERS = ("rank", "n", "seed", "generalization_index", "copy_fraction_net", "rp_net_true", "l_score_true",
                 "l_score_empirical", "l_score_true_band", "l_score_empirical_band")
OLD_RECORD = ("<b>An old record.</b> This sweep was judged by the retired generalization index (the mean position "
              "between the references over noise levels selected by the net's own errors). Degenerate denoisers "
              "fooled it (a net that outputs zero, an untrained net), so its verdicts and its N*(r) are not evidence; "
              "its copies, RP and L<sub>score</sub> are measurements. Current sweeps store the verdict of "
              "mogsim.score_match_verdict and N*(r) under several measures with intervals.")


def build_old_sweep(f: RunFiles) -> Section:
    """The section of an old score-match sweep record (judged by the retired generalization index)."""
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
    title = (f"Score matching on MoLRG: an old sweep record ({b('steps', 'int')} steps × batch "
             f"{b('batch', 'int')}), judged by the retired index")
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
    notes, prov = sweep_notes_and_provenance(f)
    notes.insert(1 if notes[:1] and notes[0].startswith("<b>Incomplete") else 0, OLD_RECORD)
    methods = _sweep_methods(f, seeds_text)
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
    from .figures import index_panels, sweep_figure

    rows = f.numeric_rows("sweep_table.csv", SWEEP_NUMBERS)
    return sweep_figure(rows, index_panels(f.get("sweep_metrics.json", "transitions", default=None)))


def _draw_positions(f: RunFiles) -> Any:
    from .figures import sweep_positions_figure

    f.csv("sweep_per_sigma.csv", ("rank", "n", "seed") + PER_SIGMA_COLUMNS)
    return sweep_positions_figure(f.numeric_rows("sweep_per_sigma.csv", ("rank", "n", "seed") + PER_SIGMA_NUMBERS))



"""Report sections of ``mogsim score-match``: one run folder, and a sweep folder (or its compact export).

Reads only the files the experiment writes. A run: ``config.json``, ``metrics.json``, ``per_sigma.csv`` (required),
``time.csv`` and ``samples.npz`` (optional). A sweep: ``sweep_metrics.json`` and ``sweep_table.csv`` (required),
``sweep_time.csv`` and ``sweep_per_sigma.csv`` (optional), which is all a compact export holds. Sweeps written
before the current verdict (no ``analysis`` in ``sweep_metrics.json``) are old records:
:mod:`.score_match_old` renders them as such.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from ..errors import InputError
from .compose import DASH, distinct, kv_list, provenance_rows, span, stored_claims, words
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
REL = ("rel(ref) = E‖D<sub>net</sub> − D<sub>ref</sub>‖² / min<sub>a, c</sub> E‖D<sub>ref</sub> − a − c x‖²: the "
       "net's error in units of the best affine isotropic denoiser, which knows the data's mean and scale and nothing "
       "else (zero, the mean, the identity and an untrained net are no better than it)")

#: The most N columns the verdict-share table keeps before it turns to one row per N (it must fit the page).
SHARE_COLUMNS_MAX = 9
#: The columns of per_sigma.csv (and sweep_per_sigma.csv) the tables read.
PER_SIGMA_COLUMNS = ("queries", "sigma", "l_score_true", "l_score_empirical", "e_true", "e_empirical",
                     "reference_gap", "position")
#: The numeric columns of per_sigma.csv the figures draw.
PER_SIGMA_NUMBERS = ("sigma", "l_score_true", "l_score_empirical", "e_true", "e_empirical", "reference_gap",
                     "position")
#: The columns of a run's time.csv and a sweep's sweep_time.csv.
TIME_COLUMNS = ("width", "rank", "n", "seed", "step", "verdict", "kappa", "rp_net_true", "on_subspace_fraction_net",
                "worst_rel_true_fresh", "worst_rel_true_train")
TIME_NUMBERS = ("width", "rank", "n", "seed", "step", "kappa", "rp_net_true", "on_subspace_fraction_net",
                "worst_rel_true_fresh", "worst_rel_true_train", "copy_fraction_net", "copy_fraction_true")
#: The columns of a current sweep's sweep_table.csv the section reads.
SWEEP_COLUMNS = ("width", "rank", "n", "seed", "verdict", "kappa", "copy_fraction_net", "copy_fraction_true",
                 "rp_net_true", "on_subspace_fraction_net", "worst_rel_true_fresh", "worst_rel_true_train",
                 "worst_rel_empirical_train")
SWEEP_NUMBERS = tuple(c for c in SWEEP_COLUMNS if c != "verdict")


def cell(f: RunFiles, name: str, row: int, column: str, style: str) -> str:
    """A CSV cell as printed text, or a dash when empty."""
    num = f.cell(name, row, column, style)
    return f"{num}" if num is not None else DASH


def _or_dash(num: Num | None) -> str:
    return f"{num}" if num is not None else DASH


# -- one run ---------------------------------------------------------------------------------------------------------
def is_run(folder: Path) -> bool:
    """A score-match run folder: config.json of experiment score-match (the other files are checked when read)."""
    if not (folder / "config.json").is_file():
        return False
    return RunFiles(folder).get("config.json", "config", "experiment", default=None) == "score-match"


def build_run(f: RunFiles) -> Section:
    """The section of one score-match run."""
    C, M, P = "config.json", "metrics.json", "per_sigma.csv"
    V = ("verdict_detail",)
    S = (*V, "samples")

    def c(key: str, style: str = "sig4") -> Num | None:
        return f.num(C, "config", key, style=style)

    def s(key: str, style: str = "dec2") -> str:
        return _or_dash(f.num(M, *S, key, style=style, optional=True))

    f.csv(P, PER_SIGMA_COLUMNS)
    verdict = f.text(M, "verdict")
    title = f"Score matching on MoLRG: one run (r = {c('rank', 'int')}, N = {c('num_train', 'int')}, seed {c('seed', 'int')})"
    answer = (f"The verdict is <b>{verdict}</b>: {f.text(M, *V, 'reason')}. The net's samples copy a training point "
              f"for a fraction {s('copy_fraction_net')} of the seeds, against {s('copy_fraction_true_sampler')} for "
              f"the true sampler (chance), and reproduce the true sampler's sample for {s('rp_net_true')}.")
    claims = stored_claims(f, M) or [
        Claim(f"{SMALL_N} {LARGE_N}", f"N = {c('num_train', 'int')}: verdict {verdict}; κ (copies net of chance) "
              f"{s('copy_excess_normalised')}; worst rel vs D<sub>true</sub> "
              f"{_or_dash(f.num(M, *V, 'accuracy', 'true_fresh', style='sig3', optional=True))}",
              "not tested", "one run has one N; a sweep over N tests the claim"),
        Claim(REPRODUCE, f"RP of the net against the true sampler {s('rp_net_true')}, against the empirical "
              f"optimum {s('rp_net_empirical')}", "not judged", "one run; the sweep's claims table judges it"),
    ]
    figures = [Figure("run-per-sigma", "Per noise level σ of the EDM grid, the net against both references. (a) "
                      "L<sub>score</sub>; (b) RMS distances between the net and each reference, and between the "
                      "references (grey); (c) the net's position t between the empirical optimum and the true "
                      "denoiser. Shaded: the verdict's noise levels. Look at (c) in the shaded band: which reference "
                      "the net follows where they are far apart.", lambda: _draw_per_sigma(f), key=True)]
    if f.exists("samples.npz"):
        figures.append(Figure(
            "run-samples",
            "The samples of the net, the empirical optimum and the true denoiser from the same noise seeds. "
            f"(a) nearest-neighbour ratio d<sub>1</sub>/d<sub>2</sub> (a copy left of the line at "
            f"{f.num(M, *V, 'thresholds', 'copy_ratio', style='sig3')}); (b) relative distance to the nearest true "
            f"subspace (on a subspace left of the line at "
            f"{f.num(M, *V, 'thresholds', 'subspace_tolerance', style='sig3')}); (c) relative distance between the "
            f"net's sample and each reference's from the same seed (reproduced left of the line at "
            f"{f.num(M, *V, 'thresholds', 'rp_threshold', style='sig3')}). Look at which reference the net's histogram "
            "(black) follows.", lambda: _draw_samples(f)))
    tables = [_band_table(f), Table("run-samples-table", "The samples from the verdict's seeds: copies, subspace "
                                    "membership and reproduction, for the net and for the two reference samplers.",
                                    ["quantity", "net", "true sampler", "empirical sampler"], _sample_rows(f), "lrrr")]
    if f.exists("time.csv") and len(f.csv("time.csv", TIME_COLUMNS)) > 1:
        figures.append(Figure("run-time", "The run along training time (EMA weights at the evaluated steps; "
                              "background: the verdict at each step). (a) κ, RP against the true sampler and the "
                              "share of samples on a subspace; (b) the worst rel against D<sub>true</sub>, dotted at "
                              f"the accuracy bound {f.num(M, *V, 'thresholds', 'accurate_rel_max', style='sig3')}. "
                              "Look at the order of events: copies first, or accuracy first.",
                              lambda: _draw_time(f, "time.csv")))
        tables.append(_time_table(f))
    tables.append(Table("run-per-sigma-table", "Per noise level of the EDM grid: L<sub>score</sub> against each "
                        "reference, the reference gap E‖D<sub>true</sub> − D<sub>emp</sub>‖² and the net's position "
                        "t, for x from noisy true data and from noisy training points.",
                        ["σ", "L true", "L emp.", "gap", "t", "L true", "L emp.", "gap", "t"],
                        _per_sigma_rows(f), "rrrrrrrrr",
                        groups=[("", 1), ("x from noisy true data", 4), ("x from noisy training points", 4)],
                        appendix=True))
    prov = provenance_rows(f, C, "provenance", label="started:")
    prov += provenance_rows(f, M, "provenance", label="finished:", same_as=f.get(C, "provenance", default=None))
    prov += [("run key", f"{f.text(C, 'key')}"), ("derived seeds", kv_list(f, C, "config", "derived_seeds")),
             ("configuration", kv_list(f, C, "config", skip=("derived_seeds", "budget"))),
             ("budget", kv_list(f, C, "config", "budget")),
             ("verdict settings", kv_list(f, M, *V, "settings"))]
    if isinstance(f.get(M, "training", default=None), dict):
        prov.append(("training", kv_list(f, M, "training")))
    if isinstance(f.get(M, "time_axis", default=None), dict):
        prov.append(("time axis", kv_list(f, M, "time_axis", skip=("events", "rule"))))
    if f.num(M, "eval_seconds", optional=True) is not None:
        prov.append(("evaluation seconds", f"{f.num(M, 'eval_seconds')}"))
    return Section("score-match run", title, f.folder, QUESTION.replace("N samples", f"N = {c('num_train', 'int')} samples"),
                   answer, claims, _run_methods(f), tables, figures, [], prov)


def _run_methods(f: RunFiles) -> list[str]:
    C, M = "config.json", "metrics.json"
    V = ("verdict_detail",)

    def c(key: str, style: str = "sig4") -> Any:
        return f.num(C, "config", key, style=style)

    out = [
        f"<b>Data.</b> N = {c('num_train', 'int')} training points drawn once from a mixture of K = "
        f"{c('components', 'int')} mutually orthogonal rank-{c('rank', 'int')} subspaces of R<super>n</super>, n = "
        f"{c('dim', 'int')}, balanced over components (master seed {c('seed', 'id')}; derived seeds in the provenance "
        "appendix).",
        f"<b>Model and budget.</b> A {f.text(C, 'config', 'arch')} of width {c('width', 'int')} and depth "
        f"{c('depth', 'int')} with EDM preconditioning (σ<sub>data</sub> = {c('sigma_data', 'sig3')}), trained with "
        f"Adam (learning rate {c('lr')}) for {c('steps', 'int')} steps of batch {c('batch', 'int')} "
        f"({f.num(C, 'config', 'budget', 'samples_seen', style='int')} samples seen, "
        f"{f.num(C, 'config', 'budget', 'epochs', style='sig3')} epochs; "
        f"{f.text(C, 'config', 'budget', 'convention')}). Everything is judged on the EMA weights.",
        f"<b>Verdict.</b> {REL}. The noise levels: {f.text(M, *V, 'levels', 'why')}. "
        f"{f.num(M, *V, 'settings', 'queries_per_level', style='int')} queries per level and query set, "
        f"{f.num(M, *V, 'settings', 'sample_seeds', style='int')} sampler seeds "
        f"({f.text(M, *V, 'settings', 'sampler')}), {f.text(M, *V, 'settings', 'dtype')}.",
        f"<b>Rule.</b> {f.text(M, *V, 'rule')}",
        f"<b>Per-sigma errors.</b> {L_SCORE}. {f.text(M, 'rules', 'l_score')}",
    ]
    rule = f.text(M, "time_axis", "rule", optional=True)
    if rule is not None:
        out.append(f"<b>Training-time axis.</b> {rule}.")
    return out


def _band_table(f: RunFiles) -> Table:
    M, V = "metrics.json", ("verdict_detail", "per_level")
    rows = []
    for k in range(len(f.get(M, *V, "fresh"))):
        def lv(q: str, key: str, style: str = "sig3") -> str:
            return _or_dash(f.num(M, *V, q, k, key, style=style, optional=True))
        rows.append([lv("fresh", "sigma"), lv("fresh", "rel_true"), lv("train", "rel_true"),
                     lv("train", "rel_empirical"), lv("fresh", "rel_empirical"), lv("fresh", "separation"),
                     lv("fresh", "position", "dec2"), lv("train", "position", "dec2")])
    bound = f.num(M, "verdict_detail", "thresholds", "accurate_rel_max", style="sig3")
    return Table("run-band", f"The verdict's noise levels: rel against each reference (accurate: rel ≤ {bound} at "
                 "every level), how far apart the references are (rel of D<sub>emp</sub> against D<sub>true</sub>) "
                 "and the net's position t between them (empirical optimum to true denoiser), on fresh and on "
                 "training queries.",
                 ["σ", "fresh", "train", "train", "fresh", "apart", "t fresh", "t train"], rows, "rrrrrrrr",
                 groups=[("", 1), ("rel vs D<sub>true</sub>", 2), ("rel vs D<sub>emp</sub>", 2), ("", 3)])


def _sample_rows(f: RunFiles) -> list[list[str]]:
    M, S = "metrics.json", ("verdict_detail", "samples")

    def s(key: str) -> str:
        return _or_dash(f.num(M, *S, key, style="dec3", optional=True))

    return [["copies a training point", s("copy_fraction_net"), s("copy_fraction_true_sampler"),
             s("copy_fraction_empirical_sampler")],
            ["κ: copies net of chance", s("copy_excess_normalised"), DASH, DASH],
            ["on a true subspace", s("on_subspace_fraction_net"), s("on_subspace_fraction_true_sampler"),
             s("on_subspace_fraction_empirical_sampler")],
            ["RP: reproduces the net's sample", DASH, s("rp_net_true"), s("rp_net_empirical")],
            ["finite samples", s("finite_fraction_net"), DASH, DASH]]


def _time_table(f: RunFiles, name: str = "time.csv", label: str = "run-time-table",
                idx: list[int] | None = None) -> Table:
    rows = f.csv(name, TIME_COLUMNS)
    idx = list(range(len(rows))) if idx is None else idx
    body = [[cell(f, name, i, "step", "int"), f"{f.cell_text(name, i, 'verdict')}", cell(f, name, i, "kappa", "dec2"),
             cell(f, name, i, "rp_net_true", "dec2"), cell(f, name, i, "on_subspace_fraction_net", "dec2"),
             cell(f, name, i, "worst_rel_true_fresh", "sig3"), cell(f, name, i, "worst_rel_true_train", "sig3")]
            for i in idx]
    return Table(label, "The verdict's numbers at each evaluated training step (EMA weights).",
                 ["step", "verdict", "κ", "RP true", "on subspace", "rel true (fresh)", "rel true (train)"], body,
                 "rlrrrrr")


def _per_sigma_rows(f: RunFiles) -> list[list[str]]:
    P = "per_sigma.csv"
    rows = f.csv(P, PER_SIGMA_COLUMNS)
    by_query: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_query[r["queries"]].append(i)
    true_rows, train_rows = by_query.get("true", []), by_query.get("train", [])
    out = []
    for k in range(max(len(true_rows), len(train_rows))):
        line: list[str] = []
        for j, idx in enumerate((true_rows, train_rows)):
            if k >= len(idx):
                line += ([DASH] if j == 0 else []) + [""] * 4
                continue
            i = idx[k]
            if j == 0:
                line.append(cell(f, P, i, "sigma", "sig3"))
            line += [cell(f, P, i, "l_score_true", "sig3"), cell(f, P, i, "l_score_empirical", "sig3"),
                     cell(f, P, i, "reference_gap", "sig3"), cell(f, P, i, "position", "dec2")]
        out.append(line)
    return out


def _draw_per_sigma(f: RunFiles) -> Any:
    from .figures import per_sigma_figure

    f.csv("per_sigma.csv", PER_SIGMA_COLUMNS)
    band = f.get("metrics.json", "verdict_detail", "levels", "sigmas", default=[]) or []
    return per_sigma_figure(f.numeric_rows("per_sigma.csv", PER_SIGMA_NUMBERS), band=[float(b) for b in band])


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
    th = f.get("metrics.json", "verdict_detail", "thresholds")
    return samples_figure(arrays, float(th["copy_ratio"]), float(th["subspace_tolerance"]), float(th["rp_threshold"]))


def _draw_time(f: RunFiles, name: str) -> Any:
    from .figures import time_axis_figure

    return time_axis_figure(f.numeric_rows(name, TIME_NUMBERS))


# -- a sweep ---------------------------------------------------------------------------------------------------------
def is_sweep(folder: Path) -> bool:
    """A score-match sweep folder or its compact export: both hold sweep_metrics.json."""
    return (folder / "sweep_metrics.json").is_file()


def build_sweep(f: RunFiles) -> Section:
    """The section of a score-match sweep (from the combined files only); old records by :mod:`.score_match_old`."""
    M, T = "sweep_metrics.json", "sweep_table.csv"
    if f.get(M, "analysis", default=None) is None:
        from .score_match_old import build_old_sweep

        return build_old_sweep(f)
    rows = f.csv(T, SWEEP_COLUMNS)
    if not rows:
        raise InputError(f"{f.path(T)}: holds no finished cell yet; wait for the sweep to finish a group")
    grid = _Grid(f, rows)
    widths = list(f.get(M, "analysis", "by_width"))
    first = widths[0]
    A = ("analysis", "by_width", first, "n_star", "measures", "rp_net_true")
    small, large = grid.ns[0], grid.ns[-1]
    ranks = list(f.get(M, *A, "n_star")) if f.get(M, *A, default=None) else []
    stars = words([_star(f, (*A, "n_star", r)) for r in ranks]) if ranks else DASH
    rank_words = words([f"{f.key_text(M, *A, 'n_star', r)}" for r in ranks]) if ranks else DASH
    fit = _fit(f, (*A, "fit")) if ranks else DASH
    budget = f.text(M, "budget", "convention")
    title = f"Score matching on MoLRG: sweep over N and r ({budget})"
    answer = (f"At N = {grid.n_num[small]} the verdict is {grid.labels(grid.at[small])}, and at N = "
              f"{grid.n_num[large]} it is {grid.labels(grid.at[large])}. Where the net's samples start to reproduce "
              f"the true sampler's (RP crosses one half), N*(r) is {stars} for r = {rank_words}: N* ∝ "
              f"r<super>b</super> with b = {fit}.")
    claims = stored_claims(f, M) or [Claim(QUESTION, "see the tables", "not judged", "the files store no claims")]
    figures, tables = [], []
    for width in widths:
        tag = f" (width {f.key_text(M, 'analysis', 'by_width', width)})" if len(widths) > 1 else ""
        figures.append(Figure(f"sweep-summary-{width}", "The sweep against N, one colour per rank r; lines: seed "
                              "mean, bands: range over seeds" + tag + ". (a) The worst rel against D<sub>true</sub> "
                              "(accurate below the dotted line); (b) κ, copies net of chance; (c) RP against the true "
                              "sampler (solid), the share of samples on a subspace (dotted), N*(r) dashed; (d) the "
                              "share of seeds judged generalizing (solid) and memorizing (dotted). Look at (c): where "
                              "the curves cross the middle, and whether that moves right as r grows.",
                              lambda w=width: _draw_sweep(f, w), key=width == first))
        tables += [_nstar_table(f, width, tag), grid.share_table(width, tag)]
        if f.get(M, "analysis", "by_width", width, "time", default=None):
            tables += [_events_table(f, width, tag), _time_fits_table(f, width, tag)]
            figures.append(Figure(f"sweep-time-fits-{width}", "The training step at which memorization sets in "
                                  "(a) and at which the net becomes accurate against D<sub>true</sub> (b), against "
                                  "N, one colour per rank, with the fitted power laws" + tag + "; N whose event never "
                                  "happened within the budget are not drawn. Look at the slopes: steep in (a), flat "
                                  "in (b), is what Bonnaire et al. predict.", lambda w=width: _draw_time_fits(f, w)))
    if f.exists("sweep_time.csv"):
        figures.insert(1, Figure("sweep-phase", "The phase diagram along training time: per rank, N (rows) against "
                                 "the training step (columns), each cell split into one stripe per seed coloured by "
                                 "its verdict at that step; triangles: memorization sets in, circles: accurate "
                                 "against D<sub>true</sub>. Look at whether the triangles move right as N grows "
                                 "while the circles stay.", lambda: _draw_phase(f)))
    if f.exists("sweep_per_sigma.csv"):
        figures.append(Figure(
            "sweep-positions",
            "Per noise level σ, the position t of every cell's net between the empirical optimum and the true "
            "denoiser, x from noisy true data; one thin line per seed, colour = N. Look at how the mid-σ "
            "levels move from the empirical optimum towards the true denoiser as N grows.",
            lambda: _draw_positions(f)))
    for column, what, style in (("kappa", "κ (copies net of chance)", "dec2"),
                                ("worst_rel_true_fresh", "worst rel against D<sub>true</sub> (fresh queries)", "sig2"),
                                ("rp_net_true", "RP against the true sampler", "dec2")):
        tables += grid.spread_tables(column, what, style)
    tables.append(grid.cells_table())
    notes, prov = sweep_notes_and_provenance(f)
    return Section("score-match sweep", title, f.folder, QUESTION + " How does the N at which it switches depend "
                   "on the rank r, and when along training does each behaviour appear?", answer, claims,
                   _sweep_methods(f, grid), tables, figures, notes, prov)


def sweep_notes_and_provenance(f: RunFiles) -> tuple[list[str], list[tuple[str, Any]]]:
    """A sweep's stored notes (first: whether it is incomplete) and its provenance rows (new and old records)."""
    M = "sweep_metrics.json"
    notes = [f"{f.text(M, 'notes', i)}" for i in range(len(f.get(M, "notes", default=[]) or []))]
    if not f.get(M, "complete", default=True):
        notes.insert(0, f"<b>Incomplete sweep:</b> {f.num(M, 'cells_done', style='int')} of "
                        f"{f.num(M, 'cells_total', style='int')} cells finished; the tables show those.")
    prov = provenance_rows(f, M, "provenance_first_call", label="first call:")
    prov += provenance_rows(f, M, "provenance", label="combined results:",
                            same_as=f.get(M, "provenance_first_call", default=None))
    prov += [("configuration", kv_list(f, M, "config")), ("budget", kv_list(f, M, "budget"))]
    if isinstance(f.get(M, "timing", default=None), dict):
        prov.append(("timing (seconds)", kv_list(f, M, "timing")))
    if f.exists("config.json"):
        prov.append(("sweep key", f"{f.text('config.json', 'key')}"))
    return notes, prov


class _Grid:
    """The cells of sweep_table.csv by (width, rank, N), with the printed forms of their keys."""

    T = "sweep_table.csv"

    def __init__(self, f: RunFiles, rows: list[dict[str, str]]) -> None:
        self.f, self.rows = f, rows
        self.cells: dict[tuple[int, int, int], list[int]] = defaultdict(list)
        for i, r in enumerate(rows):
            try:
                self.cells[(int(r["width"]), int(r["rank"]), int(r["n"]))].append(i)
            except ValueError:
                raise InputError(f"{f.path(self.T)}: damaged CSV (row {i + 2}: width {r['width']!r}, rank "
                                 f"{r['rank']!r}, n {r['n']!r} are not integers); restore it or re-run the sweep") from None
        self.ranks = sorted({k[1] for k in self.cells})
        self.ns = sorted({k[2] for k in self.cells})
        first = {key: idx[0] for key, idx in self.cells.items()}
        self.rank_num = {r: f.cell(self.T, min(first[k] for k in self.cells if k[1] == r), "rank", "int")
                         for r in self.ranks}
        self.n_num = {n: f.cell(self.T, min(first[k] for k in self.cells if k[2] == n), "n", "int") for n in self.ns}
        self.at = {n: [i for k, idx in self.cells.items() if k[2] == n for i in idx] for n in self.ns}

    def labels(self, idx: list[int]) -> str:
        texts = [self.f.cell_text(self.T, i, "verdict") for i in idx]
        joined = words(distinct(texts), " or ")
        return f"{joined} in every cell" if len({t.value for t in texts}) == 1 else f"{joined}, depending on the cell"

    def spread_tables(self, column: str, what: str, style: str) -> list[Table]:
        out = []
        for width in sorted({k[0] for k in self.cells}):
            body = [[f"{self.rank_num[r]}"] + [span([self.f.cell(self.T, i, column, style)
                                                     for i in self.cells.get((width, r, n), [])]) for n in self.ns]
                    for r in self.ranks]
            out.append(Table(f"sweep-{column}-{width}", f"The {what} per cell, range over seeds (smallest–largest "
                             f"stored value; {DASH}: none stored)" + self._width_tag(width) + ".",
                             ["r \\ N"] + [f"{self.n_num[n]}" for n in self.ns], body, "l" + "r" * len(self.ns)))
        return out

    def _width_tag(self, width: int) -> str:
        widths = sorted({k[0] for k in self.cells})
        if len(widths) == 1:
            return ""
        i = next(idx[0] for k, idx in self.cells.items() if k[0] == width)
        return f", width {self.f.cell(self.T, i, 'width', 'int')}"

    def share_table(self, width: str, tag: str) -> Table:
        M = "sweep_metrics.json"
        base = ("analysis", "by_width", width, "n_star", "measures")
        shares = {(rank, n): "{} / {}".format(*(_or_dash(self.f.num(
            M, *base, measure, "n_star", str(rank), "curve", str(n), style="dec2", optional=True))
            for measure in ("verdict_generalizing", "verdict_memorizing"))) for rank in self.ranks for n in self.ns}
        caption = ("The verdict per cell: share of seeds judged generalizing / memorizing (the rest in transition or "
                   f"neither){tag}.")
        if len(self.ns) <= SHARE_COLUMNS_MAX:
            body = [[f"{self.rank_num[r]}"] + [shares[r, n] for n in self.ns] for r in self.ranks]
            return Table(f"sweep-shares-{width}", caption, ["r \\ N"] + [f"{self.n_num[n]}" for n in self.ns], body,
                         "l" + "r" * len(self.ns))
        # many N (e.g. N_k / d sweeps, where N differs per rank): one row per N, so that the table fits the page
        body = [[f"{self.n_num[n]}"] + [shares[r, n] for r in self.ranks] for n in self.ns]
        return Table(f"sweep-shares-{width}", caption, ["N \\ r"] + [f"{self.rank_num[r]}" for r in self.ranks], body,
                     "l" + "r" * len(self.ranks))

    def cells_table(self) -> Table:
        T = self.T
        columns = [("width", "width", "int"), ("rank", "r", "int"), ("n", "N", "int"), ("seed", "seed", "id"),
                   ("kappa", "κ", "dec2"), ("copy_fraction_net", "copies", "dec2"),
                   ("copy_fraction_true", "chance", "dec2"), ("worst_rel_true_fresh", "rel true", "sig2"),
                   ("worst_rel_true_train", "rel true (tr.)", "sig2"),
                   ("worst_rel_empirical_train", "rel emp. (tr.)", "sig2"), ("rp_net_true", "RP true", "dec2"),
                   ("on_subspace_fraction_net", "on sub.", "dec2")]
        body = [[cell(self.f, T, i, key, style) for key, _, style in columns] + [f"{self.f.cell_text(T, i, 'verdict')}"]
                for i in range(len(self.rows))]
        return Table("sweep-cells", "Every cell of the sweep as stored in sweep_table.csv (κ: copies net of chance; "
                     "chance: the true sampler's copy rate; rel: worst over the verdict's levels; tr.: training "
                     "queries).", [h for _, h, _ in columns] + ["verdict"], body, "r" * len(columns) + "l",
                     appendix=True)


def _star(f: RunFiles, keys: tuple[Any, ...]) -> str:
    """``N* [lo, hi]`` of a stored crossing, or its stored status."""
    M = "sweep_metrics.json"
    value = f.num(M, *keys, "n_star", style="sig3", optional=True)
    if value is None:
        return f"{f.text(M, *keys, 'status')}".replace("_", " ")
    lo = f.num(M, *keys, "ci_low", style="sig3", optional=True)
    hi = f.num(M, *keys, "ci_high", style="sig3", optional=True)
    return f"{value} [{_or_dash(lo)}, {_or_dash(hi)}]"


def _fit(f: RunFiles, keys: tuple[Any, ...]) -> str:
    """``b [lo, hi]`` of a stored fit, or a dash."""
    M = "sweep_metrics.json"
    b = f.num(M, *keys, "b", style="dec2", optional=True)  # exponents: two decimals (a round-off 1e-16 prints 0.00)
    if b is None:
        return DASH
    return (f"{b} [{_or_dash(f.num(M, *keys, 'ci_low', style='dec2', optional=True))}, "
            f"{_or_dash(f.num(M, *keys, 'ci_high', style='dec2', optional=True))}]")


def _nstar_table(f: RunFiles, width: str, tag: str) -> Table:
    M = "sweep_metrics.json"
    base = ("analysis", "by_width", width, "n_star")
    measures = list(f.get(M, *base, "measures"))
    ranks = list(f.get(M, *base, "measures", measures[0], "n_star"))
    body = [[f"{f.key_text(M, *base, 'measures', name)}"]
            + [_star(f, (*base, "measures", name, "n_star", r)) for r in ranks]
            + [_fit(f, (*base, "measures", name, "fit"))] for name in measures]
    header = ["measure"] + [f"N*(r = {f.key_text(M, *base, 'measures', measures[0], 'n_star', r)})" for r in ranks] \
        + ["b"]
    conf = f.num(M, *base, "settings", "confidence", style="sig2")
    return Table(f"sweep-nstar-{width}", f"N*(r) under each measure, with its {conf} seed-bootstrap interval, and the "
                 f"exponent b of N* ∝ r<super>b</super> with its interval{tag}. Measures: "
                 + "; ".join(f"<i>{f.key_text(M, *base, 'measures', name)}</i>: "
                             f"{f.text(M, *base, 'measures', name, 'description')}" for name in measures)
                 + ". A share of seeds moves only between grid values of N, so its crossing is the geometric "
                 "midpoint of two grid points and its interval can shrink to that point.",
                 header, body, "l" + "r" * (len(ranks) + 1))


def _events_table(f: RunFiles, width: str, tag: str) -> Table:
    M = "sweep_metrics.json"
    base = ("analysis", "by_width", width, "time", "events")
    events = list(f.get(M, *base))
    cells = f.get(M, *base, events[0], "cells")  # every event has the same cells
    by = {(c["rank"], c["n"]): key for key, c in cells.items()}
    ranks, ns = sorted({r for r, _ in by}), sorted({n for _, n in by})
    rank_key = {r: next(k for (rr, _), k in by.items() if rr == r) for r in ranks}
    n_key = {n: next(k for (_, nn), k in by.items() if nn == n) for n in ns}
    body = [[f"{f.key_text(M, *base, event)}", f"{f.num(M, *base, event, 'cells', rank_key[r], 'rank', style='int')}"]
            + [_event_step(f, (*base, event, "cells", by[(r, n)])) if (r, n) in by else DASH for n in ns]
            for event in events for r in ranks]
    header = ["event", "r"] + [f"{f.num(M, *base, events[0], 'cells', n_key[n], 'n', style='int')}" for n in ns]
    return Table(f"sweep-events-{width}", "The training step of each event per rank (rows) and N (columns): where the "
                 "seed-mean curve reaches the event's level (interpolated in log step); before first: already at the "
                 f"first evaluated step; never: not within the budget{tag}. Events: "
                 + "; ".join(f"<i>{f.key_text(M, *base, e)}</i>: {f.text(M, *base, e, 'description')}"
                             for e in events) + ".", header, body, "ll" + "r" * len(ns))


def _event_step(f: RunFiles, keys: tuple[Any, ...]) -> str:
    M = "sweep_metrics.json"
    step = f.num(M, *keys, "step", style="sig2", optional=True)
    return f"{step}" if step is not None else f"{f.text(M, *keys, 'status')}".replace("_", " ")


def _time_fits_table(f: RunFiles, width: str, tag: str) -> Table:
    M = "sweep_metrics.json"
    base = ("analysis", "by_width", width, "time", "events")
    body = []
    for event in f.get(M, *base):
        for key in f.get(M, *base, event, "fits"):
            k = (*base, event, "fits", key)
            body.append([f"{f.key_text(M, *base, event)}", f"{f.num(M, *k, 'rank', style='int')}", _fit(f, k),
                         f"{f.num(M, *k, 'censored_never', style='int')}",
                         f"{f.num(M, *k, 'censored_before_first', style='int')}"])
    return Table(f"sweep-time-fits-{width}", "Fits of the event step against N, t* ∝ N<super>b</super>, per rank, with "
                 "the seed-bootstrap interval of b; censored: N whose event did not happen within the budget (never) "
                 f"or had happened by the first evaluated step (before first), left out of the fit{tag}.",
                 ["event", "r", "b", "never", "before first"], body, "lrrrr")


def _sweep_methods(f: RunFiles, grid: _Grid) -> list[str]:
    M = "sweep_metrics.json"

    def b(key: str, style: str = "sig4") -> Any:
        return f.num(M, "config", "base", key, style=style)

    def values(*keys: str, style: str = "int") -> str:
        return join([f"{f.num(M, *keys, i, style=style)}" for i in range(len(f.get(M, *keys)))])

    steps = f.num(M, "budget", "steps", style="int", optional=True)
    budget = f"{steps} steps" if steps is not None else \
        f"{f.num(M, 'budget', 'budget_per_sample', style='sig3')} samples seen per training point"
    out = [
        f"<b>Data.</b> Each cell draws N training points once from a mixture of K = {b('components', 'int')} mutually "
        f"orthogonal rank-r subspaces of R<super>n</super>, n = {b('dim', 'int')}, balanced over components; "
        f"r ∈ {{{values('config', 'ranks')}}}, N ∈ {{{values('config', 'train_sizes')}}}, master seeds "
        f"{{{values('config', 'seeds', style='id')}}}.",
        f"<b>Model and budget.</b> Every cell trains its own {f.text(M, 'config', 'base', 'arch')} (widths "
        f"{{{values('config', 'widths')}}}, depth {b('depth', 'int')}) with EDM preconditioning, Adam (learning rate "
        f"{b('lr')}), batch {f.num(M, 'budget', 'batch', style='int')}, for {budget} "
        f"({f.text(M, 'budget', 'convention')}). The verdict and the time axis judge the EMA weights.",
        f"<b>Verdict.</b> {REL}. {f.text(M, 'rules', 'verdict')}",
        f"<b>N*(r).</b> {f.text(M, 'rules', 'n_star')}",
    ]
    rule = f.text(M, "rules", "time", optional=True)
    if rule is not None:
        out.append(f"<b>Training-time axis.</b> {rule}")
    out.append(f"<b>Per-sigma errors.</b> {L_SCORE}, on {b('eval_queries', 'int')} queries per level of the "
               f"{b('sampler_steps', 'int')}-level EDM grid.")
    out.append("<b>Agreement.</b> The experiment judged each claim itself by the rule under it (from its own stored "
               "numbers); the report prints the judgments verbatim.")
    return out


def _draw_sweep(f: RunFiles, width: str) -> Any:
    from .figures import sweep_figure, verdict_panels

    rows = [r for r in f.numeric_rows("sweep_table.csv", SWEEP_NUMBERS) if str(int(r["width"])) == width]
    return sweep_figure(rows, verdict_panels(f.get("sweep_metrics.json", "analysis"), width))


def _draw_phase(f: RunFiles) -> Any:
    from .figures import phase_figure

    f.csv("sweep_time.csv", TIME_COLUMNS)
    rows = f.numeric_rows("sweep_time.csv", TIME_NUMBERS)
    return phase_figure(rows, f.get("sweep_metrics.json", "analysis"))


def _draw_time_fits(f: RunFiles, width: str) -> Any:
    from .figures import time_fits_figure

    return time_fits_figure(f.get("sweep_metrics.json", "analysis"), width)


def _draw_positions(f: RunFiles) -> Any:
    from .figures import sweep_positions_figure

    f.csv("sweep_per_sigma.csv", ("rank", "n", "seed") + PER_SIGMA_COLUMNS)
    return sweep_positions_figure(f.numeric_rows("sweep_per_sigma.csv", ("rank", "n", "seed") + PER_SIGMA_NUMBERS))


KINDS = (Kind("score-match sweep", "sweep_metrics.json", is_sweep, build_sweep),
         Kind("score-match run", "config.json of experiment score-match", is_run, build_run))

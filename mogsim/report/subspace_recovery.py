"""Report section of a ``mogsim subspace-recovery`` run folder: ``config.json`` (format mogsim-subspace-recovery)
and ``metrics.json`` (required; it holds every cell, transition, summary and rule)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .compose import DASH, kv_list, provenance_rows, span, words
from .files import RunFiles
from .printed import structural
from .sections import Claim, Figure, Kind, Section, Table

FORMAT = "mogsim-subspace-recovery"
WANG = "Wang et al. ({})".format(structural(2024, "citation"))
FIG4 = "Fig. {}".format(structural(4, "citation"))
THM = "Theorems {}–{}".format(structural(1, "citation"), structural(4, "citation"))
ONE = structural(1, "formula")
EXACT = (f"Noiseless recovery of the subspaces is exact if and only if every component has N<sub>k</sub> ≥ d points: "
         f"a sharp transition at N<sub>k</sub>/d = {ONE}, independent of the ambient dimension ({WANG}, {THM}, {FIG4}).")
TRAINED = (f"Training the low-rank denoiser with the denoising loss is PCA (K = {ONE}) or K-subspace clustering "
           f"(K &gt; {ONE}), so the trained network recovers the subspaces once N<sub>k</sub> ≥ d ({WANG}, {FIG4}).")
QUESTION = (f"From how many noiseless points per component do the estimators that {WANG} equate with training their "
            "low-rank denoiser (PCA, K-subspace clustering), and the trained denoiser itself, recover K subspaces of "
            "dimension d exactly?")


def is_recovery(folder: Path) -> bool:
    """config.json whose ``format`` is mogsim-subspace-recovery."""
    return (folder / "config.json").is_file() and RunFiles(folder).get("config.json", "format",
                                                                       default=None) == FORMAT


def build_recovery(f: RunFiles) -> Section:
    """The section of one subspace-recovery run."""
    M, C = "metrics.json", "config.json"
    summary = f.get(M, "summary")
    estimators = [i for i, s in enumerate(summary) if not s.get("trained")]
    trained = [i for i, s in enumerate(summary) if s.get("trained")]

    def group_text(idx: list[int]) -> str:
        ratios = span([f.num(M, "summary", i, key, style="sig3", optional=True) for i in idx
                       for key in ("ratio_star_min", "ratio_star_max")])
        agreeing = words([f"{f.num(M, 'summary', i, 'cells_agreeing_with_theorem', style='int')} of "
                          f"{f.num(M, 'summary', i, 'cells', style='int')}" for i in idx])
        names = words([_panel(f, i) for i in idx])
        return f"N<sub>k</sub>*/d = {ratios} ({names}), with {agreeing} cells agreeing with the theorem"

    parts = []
    if estimators:
        parts.append(f"For the estimators the stored transition is {group_text(estimators)}.")
    if trained:
        parts.append(f"For the trained low-rank denoiser it is {group_text(trained)}.")
    claims = [_claim(f, i, TRAINED if summary[i].get("trained") else EXACT) for i in range(len(summary))]
    below = [f.num(M, "summary", i, "error_over_completion_error_below_d", style="sig3", optional=True)
             for i in range(len(summary))]
    claims.append(Claim(
        "Below the transition the missing directions are not determined by the data (our reading of the theorem: "
        "the error is that of a random completion).",
        f"mean error / completion error below d: {span(below)} over the methods and K", "not judged",
        "the files store the ratio without a rule for agreement"))
    figures = [Figure("recovery-phase", "Per method and K: (top) the success rate over (N<sub>k</sub>, d), the "
                      "theorem's boundary N<sub>k</sub> = d dashed; (bottom) the median error against N<sub>k</sub>/d, "
                      "one colour per d, with the completion error of a random guess (dashed) and the success "
                      "threshold (dotted). Look at whether the colour changes exactly at the dashed boundary.",
                      lambda: _draw(f), key=True)]
    tables = [_grid_table(f, i) for i in range(len(summary))]
    tables.append(_transitions_table(f))
    rules = f.get(M, "rules")
    methods = [
        f"<b>Data.</b> For every cell (K, d, N<sub>k</sub>) and trial: K mutually orthogonal d-dimensional "
        f"subspaces of R<super>n</super>, n = {f.num(M, 'config', 'dim', style='int')}, drawn from one Haar-random "
        f"orthogonal matrix, and exactly N<sub>k</sub> noiseless points per component (master seed "
        f"{f.num(M, 'config', 'seed', style='id')}; {f.text(M, 'config', 'seeds_rule')}).",
        f"<b>Grids.</b> Estimators: K in {_values(f, 'components')}, d in {_values(f, 'ranks')}, N<sub>k</sub> in "
        f"{_values(f, 'per_component')}, {f.num(M, 'config', 'trials', style='int')} trials per cell. Trained "
        f"methods: K in {_values(f, 'net_components')}, d in {_values(f, 'net_ranks')}, N<sub>k</sub> in "
        f"{_values(f, 'net_nks')}, {f.num(M, 'config', 'net_trials', style='int')} trials per cell.",
    ]
    for i in range(len(f.get(M, "config", "method_configs"))):
        methods.append(f"<b>Method {f.text(M, 'config', 'method_configs', i, 'name')}.</b> "
                       f"{kv_list(f, M, 'config', 'method_configs', i, skip=('name',))}.")
    methods.append(f"<b>Trained networks.</b> The low-rank denoiser D(x; σ) = Σ<sub>k</sub> w<sub>k</sub> "
                   f"U<sub>k</sub>U<sub>k</sub><super>T</super>x/({ONE} + σ²) with orthonormal U<sub>k</sub> (soft or "
                   "hard gate w), trained with the unweighted denoising loss on mogsim's training engine, every "
                   "trial and random start a member of one batched model; each trial keeps the start of least "
                   "selection loss (no ground truth is used).")
    for key in ("error", "success", "transition", "theorem", "agreement", "completion_error"):
        if key in rules:
            methods.append(f"<b>Rule ({key.replace('_', ' ')}).</b> {f.text(M, 'rules', key)}")
    prov = provenance_rows(f, C, "provenance", label="started:")
    prov += provenance_rows(f, M, "provenance", label="finished:", same_as=f.get(C, "provenance", default=None))
    prov.append(("run key", f"{f.text(C, 'key')}"))
    if isinstance(f.get(M, "timing", default=None), dict):
        prov.append(("timing (seconds, last call)", kv_list(f, M, "timing")))
    return Section("subspace recovery", f"Subspace recovery from noiseless MoLRG data ({WANG}, {FIG4})", f.folder,
                   QUESTION, " ".join(parts) or DASH, claims, methods, tables, figures, [], prov)


def _panel(f: RunFiles, i: int) -> str:
    return (f"{f.text('metrics.json', 'summary', i, 'method')}, K = "
            f"{f.num('metrics.json', 'summary', i, 'components', style='int')}")


def _values(f: RunFiles, key: str) -> str:
    return words([f"{f.num('metrics.json', 'config', key, j, style='int')}"
                  for j in range(len(f.get("metrics.json", "config", key)))])


def _claim(f: RunFiles, i: int, paper: str) -> Claim:
    M = "metrics.json"
    ratios = f.get(M, "summary", i, "ratio_star_by_rank")
    per_rank = words([f"{_ratio(f, i, d)} (d = {f.key_text(M, 'summary', i, 'ratio_star_by_rank', d)})"
                      for d in ratios])
    measured = (f"{_panel(f, i)} ({f.num(M, 'summary', i, 'trials', style='int')} trials per cell): "
                f"N<sub>k</sub>*/d = {per_rank}; {f.num(M, 'summary', i, 'cells_agreeing_with_theorem', style='int')} "
                f"of {f.num(M, 'summary', i, 'cells', style='int')} cells agree with the theorem")
    return Claim(paper, measured, f.get(M, "summary", i, "agreement"), f"stored agreement label: "
                 f"{f.text(M, 'summary', i, 'agreement')} (rule in Methods)")


def _ratio(f: RunFiles, i: int, d: str) -> str:
    num = f.num("metrics.json", "summary", i, "ratio_star_by_rank", d, style="sig3", optional=True)
    return f"{num}" if num is not None else "not reached"


def _grid_table(f: RunFiles, i: int) -> Table:
    """Success rates of one (method, K): rows d, columns N_k."""
    M = "metrics.json"
    method, k = f.get(M, "summary", i, "method"), f.get(M, "summary", i, "components")
    cells = [(j, c) for j, c in enumerate(f.get(M, "cells")) if (c["method"], c["components"]) == (method, k)]
    ranks = sorted({c["rank"] for _, c in cells})
    nks = sorted({c["per_component"] for _, c in cells})
    at = {(c["rank"], c["per_component"]): j for j, c in cells}
    first = {nk: min(j for j, c in cells if c["per_component"] == nk) for nk in nks}
    header = ["d \\ N<sub>k</sub>"] + [f"{f.num(M, 'cells', first[nk], 'per_component', style='int')}" for nk in nks]
    rows = []
    for d in ranks:
        j0 = min(j for j, c in cells if c["rank"] == d)
        line = [f"{f.num(M, 'cells', j0, 'rank', style='int')}"]
        for nk in nks:
            j = at.get((d, nk))
            line.append(f"{f.num(M, 'cells', j, 'success_rate', style='dec2')}" if j is not None else DASH)
        rows.append(line)
    return Table(f"recovery-grid-{method}-{k}", f"Success rate of {_panel(f, i)} per d (rows) and N<sub>k</sub> "
                 f"(columns), {f.num(M, 'summary', i, 'trials', style='int')} trials per cell; the theorem predicts "
                 "recovery where N<sub>k</sub> ≥ d.", header, rows, "l" + "r" * len(nks))


def _transitions_table(f: RunFiles) -> Table:
    M = "metrics.json"
    rows = []
    for j, t in enumerate(f.get(M, "transitions")):
        star = f.num(M, "transitions", j, "n_k_star", style="int", optional=True)
        ratio = f.num(M, "transitions", j, "ratio_star", style="sig3", optional=True)
        rows.append([f"{f.text(M, 'transitions', j, 'method')}",
                     f"{f.num(M, 'transitions', j, 'components', style='int')}",
                     f"{f.num(M, 'transitions', j, 'rank', style='int')}",
                     f"{star}" if star is not None else "not reached", f"{ratio}" if ratio is not None else DASH,
                     f"{f.num(M, 'transitions', j, 'cells_agreeing_with_theorem', style='int')} of "
                     f"{f.num(M, 'transitions', j, 'cells', style='int')}"])
    return Table("recovery-transitions", f"The stored transition N<sub>k</sub>* per method, K and d. "
                 f"{f.text(M, 'rules', 'transition')}", ["method", "K", "d", "N<sub>k</sub>*", "N<sub>k</sub>*/d",
                                                           "cells agreeing"], rows, "lrrrrr", appendix=True)


def _draw(f: RunFiles) -> Any:
    from .figures import subspace_phase_figure

    M = "metrics.json"
    panels = [(s["method"], int(s["components"]), int(s["trials"])) for s in f.get(M, "summary")]
    return subspace_phase_figure(f.get(M, "cells"), panels, float(f.get(M, "config", "threshold")),
                                 int(f.get(M, "config", "dim")))


KINDS = (Kind("subspace recovery", "config.json with format mogsim-subspace-recovery", is_recovery,
              build_recovery),)

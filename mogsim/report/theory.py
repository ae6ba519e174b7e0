"""Report section of a ``mogsim theory --out DIR`` folder: ``theory_results.json`` (required) and ``theory.tex``."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from .compose import provenance_rows, words
from .files import RunFiles
from .sections import Claim, Equations, Kind, Section, Table

RESULTS = "theory_results.json"
FORMAT = "mogsim-theory-results"


def is_theory(folder: Path) -> bool:
    """A folder with theory_results.json."""
    return (folder / RESULTS).is_file()


def build_theory(f: RunFiles) -> Section:
    """The section of a theory run: one claim row per derived result, its checks in a table."""
    R = RESULTS
    if f.get(R, "format", default=None) != FORMAT:
        raise InputError(f"{f.path(R)}: not a mogsim theory results file (format {f.get(R, 'format', default=None)!r}, "
                         f"expected {FORMAT!r}); write it with mogsim theory --out DIR")
    results = f.get(R, "results")
    verified = f.num(R, "summary", "verified", style="int")
    total = f.num(R, "summary", "total", style="int")
    failed = [f.text(R, "results", i, "name") for i, r in enumerate(results) if r.get("status") != "verified"]
    answer = (f"{verified} of {total} results are verified: each symbolic claim reduced to exactly zero in sympy "
              f"and each derived formula matched mogsim's float64 code within the stored tolerance "
              f"{f.num(R, 'summary', 'numeric_tolerance', style='sig2')}.")
    answer += f" Failed: {words(failed)}." if failed else " None failed."
    claims, tables, equations = [], [], []
    for i, r in enumerate(results):
        counts = ("results", i, "counts")
        measured = (f"{f.num(R, *counts, 'symbolic', style='int')} symbolic claims, "
                    f"{f.num(R, *counts, 'numeric', style='int')} numeric comparisons; "
                    f"{f.num(R, *counts, 'passed', style='int')} of {f.num(R, *counts, 'total', style='int')} passed")
        error = f.text(R, "results", i, "error", optional=True)
        if error is not None:
            measured += f"; error: {error}"
        status = r.get("status")
        claims.append(Claim(f"<b>{f.text(R, 'results', i, 'title')}.</b> {f.text(R, 'results', i, 'statement')}",
                            measured, "yes" if status == "verified" else "no",
                            f"stored status: {f.text(R, 'results', i, 'status')}"))
        rows = [[f"{f.text(R, 'results', i, 'checks', j, 'kind')}",
                 "ok" if c.get("passed") else "<b>FAILED</b>",
                 f"{f.text(R, 'results', i, 'checks', j, 'description')}",
                 f"{f.text(R, 'results', i, 'checks', j, 'detail')}"]
                for j, c in enumerate(r.get("checks", []))]
        shown = r.get("display_latex") or []
        if shown:
            equations.append(Equations(f"<b>{f.text(R, 'results', i, 'title')}</b> "
                                       f"(<i>{f.text(R, 'results', i, 'name')}</i>)",
                                       [f"{f.text(R, 'results', i, 'display_latex', j)}" for j in range(len(shown))]))
        tables.append(Table(f"theory-{r.get('name')}", f"Checks of <i>{f.text(R, 'results', i, 'name')}</i> "
                            f"({f.text(R, 'results', i, 'title')}), {f.num(R, 'results', i, 'seconds', style='sig2')} s.",
                            ["kind", "", "claim or formula", "what the check found"], rows, "llll",
                            [0.1, 0.06, 0.5, 0.34], appendix=True))
    methods = [f"<b>Rule.</b> {f.text(R, 'rule')}",
               "<b>Method.</b> Each result derives mogsim's closed form with sympy (claims proved by reducing "
               "left minus right side to zero, exactly, modulo orthonormality relations where stated; limits by "
               "sympy.limit), then lambdifies every derived formula and compares it with mogsim's float64 "
               "implementation at seeded random points."]
    if f.exists("theory.tex"):
        methods.append("The displayed derivations are typeset in theory.tex beside the results file (a LaTeX "
                       "fragment for amsmath and amssymb).")
    prov = provenance_rows(f, R, "provenance")
    prov.append(("seconds (all results)", f"{f.num(R, 'summary', 'seconds', style='sig3')}"))
    question = ("Are the closed forms mogsim computes with (Tweedie's formula, the empirical, Gaussian and MoLRG "
                "posterior means, the PCA equivalence of Wang et al.) the exact mathematics the papers state?")
    return Section("theory", "Theory: symbolic derivations checked against the numeric core", f.folder, question,
                   answer, claims, methods, tables, [], [], prov, equations)


KINDS = (Kind("theory results", RESULTS, is_theory, build_theory),)

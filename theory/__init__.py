"""Symbolic derivations (sympy) of mogsim's closed forms, each checked against the numeric implementation.

One module per result: :mod:`~mogsim.theory.tweedie` (Lemma 1), :mod:`~mogsim.theory.empirical` (Proposition 1
and its limits), :mod:`~mogsim.theory.gaussian` (Gaussian posterior mean at general s, sigma),
:mod:`~mogsim.theory.woodbury`, :mod:`~mogsim.theory.molrg` (posterior mean and weights of the mixture of low-rank
Gaussians) and :mod:`~mogsim.theory.pca` (paper 2's PCA equivalence). Each defines ``RESULT``, a
:class:`TheoryResult` whose ``derive()`` returns sympy objects and whose ``check`` proves every claim symbolically
(:mod:`~mogsim.theory.proof`) and compares every derived formula with mogsim at random float64 points
(:mod:`~mogsim.theory.numeric`). ``run_all()`` runs them; ``mogsim theory`` prints them and writes LaTeX.
"""

from .core import NUMERIC_TOL, Check, Derivation, Formula, Identity, Limit, Outcome, TheoryResult, run_result
from .registry import RESULT_MODULES, all_results, result_names, run_all, select

__all__ = [
    "NUMERIC_TOL",
    "RESULT_MODULES",
    "Check",
    "Derivation",
    "Formula",
    "Identity",
    "Limit",
    "Outcome",
    "TheoryResult",
    "all_results",
    "result_names",
    "run_all",
    "run_result",
    "select",
]

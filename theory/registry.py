"""The registry of theory results: which modules hold one, how to select and run them.

A result module defines ``RESULT = TheoryResult(...)`` whose name is the module's name; adding a result means adding
its module name to ``RESULT_MODULES`` (in the order ``mogsim theory`` prints them).
"""

from __future__ import annotations

import importlib
from typing import Callable, Sequence

from mogsim.errors import InputError

from .core import Outcome, TheoryResult, run_result

#: Modules of mogsim.theory that each define ``RESULT``, in display order.
RESULT_MODULES: tuple[str, ...] = ("tweedie", "empirical", "gaussian", "woodbury", "molrg", "pca", "ksubspaces")


def all_results() -> list[TheoryResult]:
    """Every registered result, in display order."""
    return [importlib.import_module(f"mogsim.theory.{name}").RESULT for name in RESULT_MODULES]


def result_names() -> list[str]:
    """The names accepted by ``mogsim theory --only``."""
    return [r.name for r in all_results()]


def select(names: Sequence[str] | None = None) -> list[TheoryResult]:
    """The results called ``names`` (all when None or empty), in display order; unknown names are an InputError."""
    results = all_results()
    if not names:
        return results
    known = {r.name for r in results}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputError(f"--only {', '.join(unknown)}: no such result; choose from {', '.join(sorted(known))}")
    wanted = set(names)
    return [r for r in results if r.name in wanted]


def run_all(names: Sequence[str] | None = None, *,
            on_outcome: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Derive and check the selected results; ``on_outcome`` is called as each one finishes."""
    outcomes = []
    for result in select(names):
        outcome = run_result(result)
        if on_outcome is not None:
            on_outcome(outcome)
        outcomes.append(outcome)
    return outcomes

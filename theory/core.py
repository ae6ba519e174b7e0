"""The pieces every theory result is built from: claims, formulas, derivations, checks and results.

A result module derives a :class:`Derivation` with sympy: a list of *claims* (identities ``lhs == rhs`` and limits)
that sympy must prove, and named *formulas* (sympy expressions) that are lambdified and compared with mogsim's
numeric closed forms. A result is *verified* only when every claim reduces to zero symbolically and every formula
matches mogsim to ``NUMERIC_TOL`` at random float64 points; anything else is *failed*.
"""

from __future__ import annotations

import functools
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Union

import numpy as np
import sympy as sp

#: A formula must match mogsim to this relative error (float64) at every random point.
NUMERIC_TOL = 1e-10

Point = Mapping[str, float]


@dataclass(frozen=True)
class Identity:
    """The claim ``lhs == rhs`` (scalars or matrices), proved by reducing ``lhs - rhs`` to zero with ``method``.

    Methods (see :func:`mogsim.theory.proof.is_zero`): ``rational`` (common denominator, expanded numerator),
    ``log`` (expand logarithms first), ``trig`` (tangent half-angle substitution), ``simplify`` (sympy
    ``simplify``). With ``relations`` the numerator must reduce to 0 modulo them.
    """

    label: str
    lhs: Any
    rhs: Any
    method: str = "rational"
    #: Polynomials that vanish by hypothesis (e.g. entries of ``U^T U - I``); the zero test works modulo them.
    relations: tuple[sp.Expr, ...] = ()
    relations_label: str = ""


@dataclass(frozen=True)
class Limit:
    """The claim ``lim_{var -> point} expr == expected`` (``sympy.limit`` elementwise, then a zero check)."""

    label: str
    expr: Any
    var: sp.Symbol
    point: Any
    expected: Any
    direction: str = "+"


Claim = Union[Identity, Limit]


@dataclass
class Formula:
    """A derived sympy expression of named scalar symbols, lambdified once (float64 numpy) for numeric checks."""

    args: tuple[sp.Symbol, ...]
    expr: Any
    compared_with: str = ""

    @functools.cached_property
    def _fn(self) -> Callable[..., Any]:
        return sp.lambdify(self.args, self.expr, modules="numpy")

    def __call__(self, point: Point) -> np.ndarray:
        """Evaluate at ``point`` (symbol name -> float); returns a float64 array (matrices keep their shape)."""
        values = [float(point[a.name]) for a in self.args]
        return np.asarray(self._fn(*values), dtype=np.float64)


@dataclass
class Derivation:
    """What a result's ``derive()`` returns: displayed statements, claims to prove, formulas to compare."""

    display: list[sp.Basic]
    claims: list[Claim]
    formulas: dict[str, Formula]
    #: Lambdified parametrisations used to build inputs (e.g. orthonormal bases); not compared themselves.
    inputs: dict[str, Formula] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    """One check that ran: ``kind`` is ``symbolic`` or ``numeric``; ``detail`` says what it found."""

    kind: str
    description: str
    passed: bool
    detail: str = ""


@dataclass(frozen=True)
class TheoryResult:
    """A registered result: ``derive()`` builds the sympy derivation, ``check(derivation)`` runs every check."""

    name: str
    title: str
    statement: str
    derive: Callable[[], Derivation]
    check: Callable[[Derivation], list[Check]]


@dataclass
class Outcome:
    """The result of running one :class:`TheoryResult`."""

    result: TheoryResult
    checks: list[Check]
    derivation: Derivation | None
    seconds: float
    error: str | None = None

    @property
    def status(self) -> str:
        """``verified`` when it derived, ran at least one symbolic and one numeric check, and all passed."""
        kinds = {c.kind for c in self.checks}
        ok = (self.error is None and {"symbolic", "numeric"} <= kinds and all(c.passed for c in self.checks))
        return "verified" if ok else "failed"


def run_result(result: TheoryResult) -> Outcome:
    """Derive and check one result; an exception is reported as a failure with its last line, not raised."""
    start = time.perf_counter()
    derivation: Derivation | None = None
    try:
        derivation = result.derive()
        checks = result.check(derivation)
        error = None
    except Exception as exc:  # a crashing derivation is a failed result, shown to the user
        checks = []
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        error = f"{'derive' if derivation is None else 'check'} raised {last}"
    return Outcome(result, checks, derivation, time.perf_counter() - start, error)

"""Exact symbolic proofs of claims: zero tests for identities and ``sympy.limit`` for limits.

Every zero test is exact algebra, never a numeric guess: a common denominator whose numerator expands to 0, or,
for orthonormal bases with symbolic entries, a numerator that reduces to 0 modulo the relations ``U^T U = I``
(a Groebner basis of them), so identities are proved for *every* orthonormal U, not a parametrised family.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import sympy as sp

from .core import Check, Claim, Identity, Limit


Relations = Sequence[sp.Expr]


def _entries(expr: Any) -> list[sp.Expr]:
    return list(expr) if isinstance(expr, sp.MatrixBase) else [sp.sympify(expr)]


@functools.lru_cache(maxsize=64)
def _groebner(relations: tuple[sp.Expr, ...], gens: tuple[sp.Symbol, ...]) -> sp.GroebnerBasis:
    return sp.groebner(list(relations), *gens, order="grevlex")


def _reduces_to_zero(poly: sp.Expr, relations: Relations) -> bool:
    """Whether the polynomial ``poly`` lies in the ideal of ``relations`` (remainder 0 modulo a Groebner basis).

    Then ``poly = sum_j q_j rel_j`` vanishes wherever every relation does (e.g. on ``U^T U = I``).
    """
    rel_syms = sorted(set().union(*(r.free_symbols for r in relations)), key=sp.default_sort_key)
    others = sorted(poly.free_symbols - set(rel_syms), key=sp.default_sort_key)
    basis = _groebner(tuple(relations), tuple(rel_syms) + tuple(others))
    return basis.reduce(poly)[1] == 0


def _rational_zero(e: sp.Expr, relations: Relations = ()) -> bool:
    """True when ``e`` over a common denominator has a numerator that expands to 0 (exp, log kept as atoms), or,
    given ``relations``, a numerator in their ideal."""
    numer, _ = sp.fraction(sp.together(e))
    numer = sp.expand(numer)
    if numer == 0:
        return True
    return bool(relations) and _reduces_to_zero(numer, relations)


def _log_zero(e: sp.Expr, relations: Relations = ()) -> bool:
    """True when ``e = sum_i c_i log g_i + r`` (logs expanded) has ``r == 0`` and ``prod_i g_i^(2 c_i) == 1``.

    Each distinct ``log`` is replaced by a placeholder; ``e`` must be linear in them with rational coefficients.
    Both the rest ``r`` and ``prod_i g_i^(2 c_i) - 1`` are then rational zero tests.
    """
    e = sp.expand_log(e, force=True)
    logs = sorted(e.atoms(sp.log), key=sp.default_sort_key)
    holders = [sp.Dummy(f"log{i}") for i in range(len(logs))]
    linear = e.xreplace(dict(zip(logs, holders)))
    if not _rational_zero(linear.xreplace({h: 0 for h in holders}), relations):
        return False
    product = sp.Integer(1)
    for log_term, holder in zip(logs, holders):
        coeff = sp.cancel(sp.diff(linear, holder))
        if not coeff.is_Rational:
            return False
        product *= log_term.args[0] ** (2 * coeff)
    return _rational_zero(product - 1, relations)


def _trig_zero(e: sp.Expr) -> bool:
    """Zero test after the Weierstrass substitution ``sin v = 2t/(1+t^2)``, ``cos v = (1-t^2)/(1+t^2)``.

    Every ``sin``/``cos`` of a plain symbol becomes rational in ``t = tan(v/2)``, so trigonometric identities become
    polynomial ones; an identity of continuous functions that holds for all ``v != pi`` holds everywhere.
    """
    subs = {}
    for atom in e.atoms(sp.sin, sp.cos):
        v = atom.args[0]
        if not v.is_Symbol:
            return sp.simplify(e) == 0
        t = sp.Dummy(f"t_{v}", real=True)
        subs[sp.sin(v)] = 2 * t / (1 + t**2)
        subs[sp.cos(v)] = (1 - t**2) / (1 + t**2)
    return _rational_zero(e.xreplace(subs))


def is_zero(expr: Any, method: str = "rational", relations: Relations = ()) -> bool:
    """Whether sympy reduces every entry of ``expr`` to exactly 0 with ``method``; never a numeric guess.

    ``relations`` (polynomials that vanish by hypothesis, e.g. the entries of ``U^T U - I``) are allowed for the
    ``rational`` and ``log`` methods.
    """
    for e in _entries(expr):
        if e == 0:
            continue
        if method == "rational":
            ok = _rational_zero(e, relations)
        elif method == "log":
            ok = _log_zero(e, relations)
        elif method == "trig" and not relations:
            ok = _trig_zero(e)
        elif method == "simplify" and not relations:
            ok = sp.simplify(e) == 0
        else:
            raise ValueError(f"unknown zero-test method {method!r} (with relations: {bool(relations)})")
        if not ok:
            return False
    return True


def prove(claim: Claim) -> Check:
    """Run one claim as a symbolic check."""
    if isinstance(claim, Identity):
        diff = claim.lhs - claim.rhs
        ok = is_zero(diff, claim.method, claim.relations)
        how = {"rational": "common denominator, numerator expands to 0",
               "log": "logs expanded; rational part and product of log arguments reduce exactly",
               "trig": "sin, cos -> rational in tan(v/2); numerator expands to 0",
               "simplify": "sympy.simplify(lhs - rhs) == 0"}[claim.method]
        if claim.relations:
            how += f" modulo {claim.relations_label} (Groebner basis)"
        return Check("symbolic", claim.label, ok, how if ok else f"{how}: FAILED, lhs - rhs does not vanish")
    lim = _limit(claim)
    ok = is_zero(lim - (sp.Matrix(claim.expected) if isinstance(lim, sp.MatrixBase) else claim.expected), "simplify")
    arrow = f"{claim.var} -> {claim.point}{claim.direction if claim.point == 0 else ''}"
    shown = sp.sstr(list(lim) if isinstance(lim, sp.MatrixBase) else lim)
    detail = f"sympy.limit as {arrow} gives {shown}"
    return Check("symbolic", claim.label, ok, detail if ok else f"{detail}, expected {sp.sstr(claim.expected)}")


def _limit(claim: Limit) -> Any:
    if isinstance(claim.expr, sp.MatrixBase):
        return claim.expr.applyfunc(lambda e: sp.limit(e, claim.var, claim.point, claim.direction))
    return sp.limit(claim.expr, claim.var, claim.point, claim.direction)


def prove_all(claims: Sequence[Claim]) -> list[Check]:
    """Every claim as a symbolic check, in order."""
    return [prove(c) for c in claims]

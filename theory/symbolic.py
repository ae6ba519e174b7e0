"""Sympy building blocks of the derivations: Gaussian densities, integrals and moments, softmax, bases."""

from __future__ import annotations

import math
from typing import Sequence

import sympy as sp

from .core import Claim, Identity


def normal_logpdf(z: sp.Expr, mean: sp.Expr, var: sp.Expr) -> sp.Expr:
    """``log N(z; mean, var)`` in one dimension."""
    return -(z - mean) ** 2 / (2 * var) - sp.log(2 * sp.pi * var) / 2


def isotropic_logpdf(z: sp.Matrix, mean: sp.Matrix, var: sp.Expr) -> sp.Expr:
    """``log N(z; mean, var I)`` in ``len(z)`` dimensions."""
    d = z - mean
    return -(d.T * d)[0] / (2 * var) - len(z) * sp.log(2 * sp.pi * var) / 2


def gaussian_logpdf(z: sp.Matrix, mean: sp.Matrix, cov_inv: sp.Matrix, logdet: sp.Expr) -> sp.Expr:
    """``log N(z; mean, C)`` given ``C^-1`` and ``log det C``."""
    d = z - mean
    return -(d.T * cov_inv * d)[0] / 2 - logdet / 2 - len(z) * sp.log(2 * sp.pi) / 2


def quadratic_coefficients(log_integrand: sp.Expr, var: sp.Symbol) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    """``(A, B, C)`` with ``log_integrand = -A var^2 + B var + C``; fails unless it is quadratic in ``var``."""
    poly = sp.Poly(sp.expand(log_integrand), var)
    if poly.degree() != 2:
        raise ValueError(f"expected a quadratic exponent in {var}, got degree {poly.degree()}")
    return -poly.coeff_monomial(var**2), poly.coeff_monomial(var), poly.coeff_monomial(1)


def gaussian_integral_claims() -> list[Claim]:
    """The lemma behind :func:`gaussian_integral`, as claims: completing the square and the two base integrals."""
    a = sp.Symbol("A", positive=True)
    b, c, u = sp.symbols("B C u", real=True)
    completed = -a * (u - b / (2 * a)) ** 2 + b**2 / (4 * a) + c
    return [
        Identity("completing the square: -A u^2 + B u + C = -A (u - B/(2A))^2 + B^2/(4A) + C",
                 -a * u**2 + b * u + c, completed),
        Identity("integral of exp(-A u^2) over R is sqrt(pi/A)",
                 sp.integrate(sp.exp(-a * u**2), (u, -sp.oo, sp.oo)), sp.sqrt(sp.pi / a), "simplify"),
        Identity("integral of u exp(-A u^2) over R is 0",
                 sp.integrate(u * sp.exp(-a * u**2), (u, -sp.oo, sp.oo)), sp.Integer(0)),
    ]


def gaussian_integral(log_integrand: sp.Expr, var: sp.Symbol, power: int = 0) -> sp.Expr:
    """``int var^power exp(log_integrand) dvar`` over R for a quadratic exponent, ``power`` 0 or 1.

    By completing the square (:func:`gaussian_integral_claims`): ``sqrt(pi/A) exp(B^2/(4A) + C)``, times the
    mean ``B/(2A)`` for ``power = 1``.
    """
    a, b, c = quadratic_coefficients(log_integrand, var)
    base = sp.sqrt(sp.pi / a) * sp.exp(b**2 / (4 * a) + c)
    if power == 0:
        return base
    if power == 1:
        return base * b / (2 * a)
    raise ValueError("power must be 0 or 1")


def gaussian_expectation(expr: sp.Expr, eps: Sequence[sp.Symbol]) -> sp.Expr:
    """``E[expr]`` for ``eps`` i.i.d. standard normal and ``expr`` polynomial in ``eps``.

    Exact: each monomial ``prod eps_i^k_i`` is replaced by ``prod m(k_i)``, ``m(k) = (k-1)!!`` for even k and 0
    for odd k (so ``E[eps] = 0``, ``E[eps eps^T] = I``).
    """
    eps_set = set(eps)
    total = []
    for term in sp.Add.make_args(sp.expand(expr)):
        coeff, noise = term.as_independent(*eps, as_Add=False)
        powers = {} if noise == 1 else noise.as_powers_dict()
        if set(powers) - eps_set or any(not (k.is_Integer and k >= 0) for k in powers.values()):
            raise ValueError(f"{expr} is not a polynomial in {eps}")
        moment = 1
        for k in powers.values():
            moment *= 0 if k % 2 else math.prod(range(int(k) - 1, 0, -2))
        total.append(coeff * moment)
    return sp.Add(*total)


def softmax(logits: Sequence[sp.Expr]) -> list[sp.Expr]:
    """``exp(l_i) / sum_j exp(l_j)``."""
    exps = [sp.exp(l) for l in logits]
    total = sp.Add(*exps)
    return [e / total for e in exps]


def sq_norm(v: sp.Matrix) -> sp.Expr:
    """``||v||^2``."""
    return (v.T * v)[0]


def vector(name: str, n: int) -> sp.Matrix:
    """An n-vector of real symbols ``name1 .. name{n}``."""
    return sp.Matrix(sp.symbols(f"{name}1:{n + 1}", real=True))


# --- orthonormal bases ----------------------------------------------------------------------------------------------

def unit_vector_angles(theta: sp.Symbol, phi: sp.Symbol) -> sp.Matrix:
    """The unit vector of R^3 with polar angle ``theta`` and azimuth ``phi``."""
    return sp.Matrix([sp.sin(theta) * sp.cos(phi), sp.sin(theta) * sp.sin(phi), sp.cos(theta)])


def orthonormal_basis(name: str, n: int, r: int) -> tuple[sp.Matrix, tuple[sp.Expr, ...]]:
    """An n x r matrix of real symbols ``{name}{i}{j}`` and the relations ``U^T U - I = 0`` (upper triangle)."""
    basis = sp.Matrix(n, r, [sp.Symbol(f"{name}{i}{j}", real=True) for i in range(1, n + 1) for j in range(1, r + 1)])
    gram = basis.T * basis - sp.eye(r)
    return basis, tuple(sp.expand(gram[i, j]) for i in range(r) for j in range(i, r))

"""Woodbury for an orthonormal basis: ``(U U^T + sigma^2 I)^-1 = (I - U U^T)/sigma^2 + U U^T/(1 + sigma^2)``.

It holds because ``P = U U^T`` is an orthogonal projection (``U^T U = I``): ``P + sigma^2 I`` has eigenvalue
``1 + sigma^2`` on span(U) and ``sigma^2`` off it. Checked by multiplying out in R^3: for r = 1 with U a unit vector
given by two angles, and for r = 2 with a symbolic 3 x 2 U, modulo the relations ``U^T U = I``.
"""

from __future__ import annotations

import functools

import numpy as np
import sympy as sp
import torch

from mogsim import GaussianDenoiser, MoLRG

from .checks import standard_check
from .core import Derivation, Formula, Identity, Point, TheoryResult
from .numeric import basis_entries, basis_from, batch, random_orthonormal, rel_err, uniform_entries, vector_from
from .symbolic import orthonormal_basis, unit_vector_angles

SIG = sp.Symbol("sigma", positive=True)
THETA, PHI = sp.symbols("theta phi", real=True)
BASIS2, STIEFEL2 = orthonormal_basis("u", 3, 2)
R1, R2 = "W, r = 1 (U from two angles)", "W, r = 2 (symbolic U, U^T U = I)"


def woodbury(basis: sp.Matrix, sigma2: sp.Expr) -> sp.Matrix:
    """``(I - U U^T)/sigma2 + U U^T/(1 + sigma2)``, the inverse of ``U U^T + sigma2 I`` for orthonormal U."""
    proj = basis * basis.T
    eye = sp.eye(basis.shape[0])
    return (eye - proj) / sigma2 + proj / (1 + sigma2)


@functools.lru_cache(maxsize=None)
def derive() -> Derivation:
    """Both cases: orthonormality, then ``(U U^T + sigma^2 I) W = I``."""
    eye = sp.eye(3)
    u1 = unit_vector_angles(THETA, PHI)
    w1, w2 = woodbury(u1, SIG**2), woodbury(BASIS2, SIG**2)
    claims = [
        Identity("r = 1, U = (sin t cos p, sin t sin p, cos t): U^T U = 1", u1.T * u1, sp.eye(1), "trig"),
        Identity("r = 1: (U U^T + sigma^2 I) W = I", (u1 * u1.T + SIG**2 * eye) * w1, eye, "trig"),
        Identity("r = 2, any 3 x 2 U with U^T U = I: (U U^T + sigma^2 I) W = I",
                 (BASIS2 * BASIS2.T + SIG**2 * eye) * w2, eye, relations=STIEFEL2, relations_label="U^T U = I"),
    ]
    refs = "-W x vs mogsim MoLRG([U]).score and GaussianDenoiser.from_factor(0, U).score"
    formulas = {R1: Formula((THETA, PHI, SIG), w1, refs), R2: Formula((*BASIS2, SIG), w2, refs)}
    inputs = {R1: Formula((THETA, PHI), u1)}
    n, r = sp.symbols("n r", integer=True)
    u = sp.MatrixSymbol("U", n, r)
    display = [sp.Eq((u * u.T + SIG**2 * sp.Identity(n)).inverse(),
                     (sp.Identity(n) - u * u.T) / SIG**2 + u * u.T / (1 + SIG**2))]
    return Derivation(display, claims, formulas, inputs)


def errors_at(derivation: Derivation, point: Point) -> dict[str, float]:
    """Relative error of ``-W x`` against mogsim's K = 1 scores (keys theta, phi, u11 .. u32, sigma, x1-x3)."""
    x_np = vector_from(point, "x", 3)
    x, sig = batch(x_np), float(point["sigma"])
    floor = float(np.abs(x_np).max()) / sig**2
    bases = {R1: derivation.inputs[R1](point).reshape(3, 1), R2: basis_from(point, "u", 3, 2)}
    errs = {}
    for name, formula in derivation.formulas.items():
        basis = bases[name]
        want = -formula(point) @ x_np
        mix = MoLRG(torch.from_numpy(basis[None]))
        gauss = GaussianDenoiser.from_factor(np.zeros(3), basis)
        errs[name] = max(rel_err(want, mix.score(x, sig), floor), rel_err(want, gauss.score(x, sig), floor))
    return errs


def random_point(rng: np.random.Generator) -> Point:
    """Random angles, a random orthonormal 3 x 2 basis, sigma in [0.3, 3] and x in [-3, 3]^3."""
    point = {"theta": rng.uniform(0, np.pi), "phi": rng.uniform(0, 2 * np.pi), "sigma": rng.uniform(0.3, 3)}
    point.update(basis_entries("u", random_orthonormal(rng, 3, 2)))
    return {**point, **uniform_entries(rng, "x", 3, -3, 3)}


RESULT = TheoryResult(
    name="woodbury",
    title="Woodbury identity for an orthonormal basis",
    statement="For U with orthonormal columns, (U U^T + sigma^2 I)^-1 = (I - U U^T)/sigma^2 + U U^T/(1 + sigma^2). "
              "Checked in R^3 for r = 1 (a unit vector given by two angles) and r = 2 (any U with U^T U = I).",
    derive=derive,
    check=standard_check(errors_at, random_point),
)

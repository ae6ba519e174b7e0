"""Paper 2's PCA equivalence: the denoising loss of ``c U U^T`` in closed form.

For U with r orthonormal columns, ``c = s / (s^2 + g^2)`` and ``rho = c s``::

    E_eps || c U U^T (s x + g eps) - x ||^2 = ||x||^2 - rho (2 - rho) ||U^T x||^2 + c^2 g^2 r

so minimising the loss over U maximises ``sum ||U^T x||^2``: PCA. The expectation is taken exactly (``E[eps] = 0``,
``E[eps eps^T] = I``, via Gaussian moments of a polynomial) for a symbolic 3 x r matrix U, then reduced modulo the
relations ``U^T U = I``, for r = 1 and r = 2.
``c U U^T`` is mogsim's K = 1 MoLRG denoiser at ``sigma = g/s`` applied to ``x_t / s``.
"""

from __future__ import annotations

import functools

import numpy as np
import sympy as sp
import torch

from mogsim import MoLRG

from .checks import standard_check
from .core import Derivation, Formula, Identity, Point, TheoryResult
from .numeric import (basis_entries, basis_from, batch, denoise_scaled, random_orthonormal, rel_err, uniform_entries,
                      vector_from)
from .symbolic import gaussian_expectation, orthonormal_basis, sq_norm, vector

N_DIM = 3
X, EPS = vector("x", N_DIM), vector("e", N_DIM)
S, G = sp.symbols("s g", positive=True)
COEF = S / (S**2 + G**2)
RHO = COEF * S
BASES = {r: orthonormal_basis("u", N_DIM, r) for r in (1, 2)}  # r -> (symbolic 3 x r U, relations U^T U = I)


def _claims_for(r: int) -> tuple[list[Identity], sp.Expr]:
    """E_eps of the loss for any 3 x r U (exact Gaussian moments), then its reduction when U^T U = I."""
    basis, stiefel = BASES[r]
    coef = sp.Symbol("c", positive=True)
    proj = basis * basis.T
    expected = gaussian_expectation(sq_norm(coef * proj * (S * X + G * EPS) - X), list(EPS))
    general = sq_norm((coef * S * proj - sp.eye(N_DIM)) * X) + coef**2 * G**2 * (proj.T * proj).trace()
    rhs = sq_norm(X) - RHO * (2 - RHO) * sq_norm(basis.T * X) + COEF**2 * G**2 * r
    claims = [
        Identity(f"r = {r}, any 3 x {r} U: E_eps loss = ||(c s U U^T - I) x||^2 + c^2 g^2 tr((U U^T)^2)",
                 expected, general),
        Identity(f"r = {r}, U^T U = I, c = s/(s^2 + g^2): E_eps loss = ||x||^2 - rho (2 - rho) ||U^T x||^2 + c^2 g^2 r",
                 expected.xreplace({coef: COEF}), rhs, relations=stiefel, relations_label="U^T U = I"),
    ]
    return claims, rhs


@functools.lru_cache(maxsize=None)
def derive() -> Derivation:
    """The exact expectation for generic U, reduced for r = 1 and r = 2; the denoiser ``c U U^T`` itself."""
    claims1, rhs1 = _claims_for(1)
    claims2, rhs2 = _claims_for(2)
    basis2 = BASES[2][0]
    noisy = vector("y", N_DIM)
    denoiser = COEF * basis2 * basis2.T * noisy
    sig = sp.Symbol("sigma", positive=True)
    claims = claims1 + claims2 + [
        Identity("c U U^T y = D_s(y) of the K = 1 MoLRG: U U^T (y/s) / (1 + sigma^2) with sigma = g/s",
                 denoiser, (basis2 * basis2.T * (noisy / S) / (1 + sig**2)).subs(sig, G / S)),
    ]
    exact = "exact E over eps of mogsim MoLRG([U]) at sigma = g/s: |D(x) - x|^2 + sum_i |D(g e_i / s)|^2"
    formulas = {
        "expected loss, r = 1": Formula((*X, S, G, *BASES[1][0]), rhs1, exact),
        "expected loss, r = 2": Formula((*X, S, G, *basis2), rhs2, exact),
        "denoiser c U U^T y, r = 2": Formula((*noisy, S, G, *basis2), denoiser,
                                             "mogsim MoLRG([U]).denoise(y/s, sigma = g/s)"),
    }
    r = sp.Symbol("r", integer=True)
    c, rho = sp.Symbol("c"), sp.Symbol(r"\rho")
    display = [
        sp.Eq(sp.Symbol(r"\mathbb{E}_{\epsilon} \|c U U^{T} (s x + g \epsilon) - x\|^{2}"),
              sp.Symbol(r"\|x\|^{2}") - rho * (2 - rho) * sp.Symbol(r"\|U^{T} x\|^{2}") + c**2 * G**2 * r),
        sp.Eq(c, COEF), sp.Eq(rho, c * S),
    ]
    return Derivation(display, claims, formulas)


def _exact_expected_loss(basis: np.ndarray, x: np.ndarray, s: float, g: float) -> float:
    """``E_eps ||D_s(s x + g eps) - x||^2`` for mogsim's linear K = 1 denoiser, without sampling.

    ``D_s`` is linear, so the loss is ``||D_s(s x) - x||^2 + sum_i ||D_s(g e_i)||^2`` (E eps = 0, E eps eps^T = I).
    """
    mix = MoLRG(torch.from_numpy(basis[None]))
    sigma = g / s
    mean_part = denoise_scaled(mix, batch(s * x), sigma, s).numpy()[0] - x
    noise_part = denoise_scaled(mix, torch.from_numpy(g * np.eye(N_DIM)), sigma, s).numpy()
    return float(mean_part @ mean_part + (noise_part * noise_part).sum())


def errors_at(derivation: Derivation, point: Point) -> dict[str, float]:
    """Relative error of each formula against mogsim (keys x1-x3, y1-y3, s, g, u11 .. u32: orthonormal columns)."""
    f = derivation.formulas
    x = vector_from(point, "x", N_DIM)
    s, g = float(point["s"]), float(point["g"])
    errs = {}
    for r in (1, 2):
        name = f"expected loss, r = {r}"
        errs[name] = rel_err(f[name](point), _exact_expected_loss(basis_from(point, "u", N_DIM, r), x, s, g))
    y = vector_from(point, "y", N_DIM)
    basis2 = basis_from(point, "u", N_DIM, 2)
    mix = MoLRG(torch.from_numpy(basis2[None]))
    errs["denoiser c U U^T y, r = 2"] = rel_err(f["denoiser c U U^T y, r = 2"](point),
                                                denoise_scaled(mix, batch(y), g / s, s), float(np.abs(y).max()) / s)
    return errs


def random_point(rng: np.random.Generator) -> Point:
    """x, y in [-3, 3]^3, s in [0.2, 2], g in [0.1, 3], a random 3 x 2 orthonormal U (r = 1 uses its first column)."""
    point = {"s": rng.uniform(0.2, 2), "g": rng.uniform(0.1, 3)}
    point.update(basis_entries("u", random_orthonormal(rng, N_DIM, 2)))
    return {**point, **uniform_entries(rng, "x", N_DIM, -3, 3), **uniform_entries(rng, "y", N_DIM, -3, 3)}


RESULT = TheoryResult(
    name="pca",
    title="Paper 2's PCA equivalence",
    statement="For U with r orthonormal columns, c = s/(s^2 + g^2) and rho = c s: "
              "E_eps ||c U U^T (s x + g eps) - x||^2 "
              "= ||x||^2 - rho (2 - rho) ||U^T x||^2 + c^2 g^2 r, so minimising the denoising loss of c U U^T over U "
              "is PCA (maximise ||U^T x||^2). c U U^T is mogsim's K = 1 MoLRG denoiser at sigma = g/s.",
    derive=derive,
    check=standard_check(errors_at, random_point),
)

"""The posterior mean of a Gaussian prior at general (s, sigma), full-rank and low-rank.

For ``x0 ~ N(mu, S)`` and ``x = s x0 + s sigma eps``: ``E[x0 | x] = mu + S (S + sigma^2 I)^-1 (x/s - mu)``, i.e.
``D_s(x) = D(x/s)``, and the score is ``-(s^2 (S + sigma^2 I))^-1 (x - s mu)``. Derived for a symbolic 2 x 2
covariance by maximising the log posterior (a concave quadratic, so its maximiser is the posterior mean); for a
rank-one ``S = f f^T`` in R^3 the inverse is Sherman-Morrison's, the case of ``GaussianDenoiser.from_factor``.
"""

from __future__ import annotations

import functools

import numpy as np
import sympy as sp

from mogsim import GaussianDenoiser

from .checks import standard_check
from .core import Derivation, Formula, Identity, Point, TheoryResult
from .numeric import batch, denoise_scaled, log_density_scaled, rel_err, score_scaled, uniform_entries, vector_from
from .symbolic import gaussian_logpdf, sq_norm, vector

S, SIG = sp.symbols("s sigma", positive=True)
A, C = sp.symbols("a c", positive=True)
B = sp.Symbol("b", real=True)
COV = sp.Matrix([[A, B], [B, C]])
X2, MU2, X0 = vector("x", 2), vector("m", 2), vector("u", 2)
X3, MU3, F = vector("x", 3), vector("m", 3), vector("f", 3)


def _full_rank() -> tuple[list[Identity], dict[str, Formula]]:
    eye = sp.eye(2)
    cov_inv = COV.inv()
    log_post = -((X0 - MU2).T * cov_inv * (X0 - MU2))[0] / 2 - sq_norm(X2 - S * X0) / (2 * S**2 * SIG**2)
    stationary = sp.solve([sp.diff(log_post, u) for u in X0], list(X0), dict=True)[0]
    mode = sp.Matrix([stationary[u] for u in X0])
    closed = MU2 + COV * (COV + SIG**2 * eye).inv() * (X2 / S - MU2)
    marg_cov = S**2 * (COV + SIG**2 * eye)
    log_marg = gaussian_logpdf(X2, S * MU2, marg_cov.inv(), sp.log(marg_cov.det()))
    score = sp.Matrix([sp.diff(log_marg, xi) for xi in X2])
    unit_scale = mode.subs({S: 1, **{xi: xi / S for xi in X2}}, simultaneous=True)
    claims = [
        Identity("log posterior of x0 has constant Hessian -(S^-1 + I/sigma^2): Gaussian, so mean = mode",
                 sp.hessian(log_post, X0), -(cov_inv + eye / SIG**2)),
        Identity("posterior mean (stationary point, 2 x 2 symbolic S) = mu + S (S + sigma^2 I)^-1 (x/s - mu)",
                 mode, closed),
        Identity("scale convention: D_s(x) = D_1(x/s)", mode, unit_scale),
        Identity("Tweedie: (s D_s(x) - x)/(s^2 sigma^2) = grad log N(x; s mu, s^2 (S + sigma^2 I))",
                 (S * mode - X2) / (S**2 * SIG**2), score),
    ]
    args = (*X2, S, SIG, *MU2, A, B, C)
    gauss = "mogsim GaussianDenoiser(mu, S)"
    formulas = {
        "posterior mean": Formula(args, mode, f"{gauss}, D(x/s)"),
        "score": Formula(args, score, f"{gauss}.score(x/s)/s"),
        "log density": Formula(args, log_marg, f"{gauss}.log_density(x/s) - 2 log s"),
    }
    return claims, formulas


def _rank_one() -> tuple[list[Identity], dict[str, Formula]]:
    eye = sp.eye(3)
    ff = F * F.T
    inverse = (eye - ff / (SIG**2 + sq_norm(F))) / SIG**2  # Sherman-Morrison
    mean = MU3 + ff / (SIG**2 + sq_norm(F)) * (X3 / S - MU3)
    score = -inverse * (X3 - S * MU3) / S**2
    claims = [
        Identity("rank one S = f f^T (R^3): (S + sigma^2 I)^-1 = (I - f f^T/(sigma^2 + |f|^2))/sigma^2",
                 (ff + SIG**2 * eye) * inverse, eye),
        Identity("rank one: S (S + sigma^2 I)^-1 = f f^T / (sigma^2 + |f|^2)",
                 ff * inverse, ff / (SIG**2 + sq_norm(F))),
    ]
    args = (*X3, S, SIG, *MU3, *F)
    gauss = "mogsim GaussianDenoiser.from_factor(mu, f)"
    formulas = {
        "rank-one posterior mean": Formula(args, mean, f"{gauss}, D(x/s)"),
        "rank-one score": Formula(args, score, f"{gauss}.score(x/s)/s"),
    }
    return claims, formulas


@functools.lru_cache(maxsize=None)
def derive() -> Derivation:
    """Posterior mean, score and log density for a full 2 x 2 covariance and for a rank-one factor."""
    claims, formulas = _full_rank()
    claims_1, formulas_1 = _rank_one()
    n = sp.Symbol("n", integer=True)
    cov, mu = sp.MatrixSymbol("S", n, n), sp.MatrixSymbol(r"\mu", n, 1)
    x, eye = sp.MatrixSymbol("x", n, 1), sp.Identity(n)
    display = [
        sp.Eq(sp.MatrixSymbol("D_{s}(x)", n, 1), mu + cov * (cov + SIG**2 * eye).inverse() * (x / S - mu)),
        sp.Eq(sp.MatrixSymbol(r"\nabla_{x} \log p_{t}(x)", n, 1),
              -(S**2 * (cov + SIG**2 * eye)).inverse() * (x - S * mu)),
    ]
    return Derivation(display, claims + claims_1, {**formulas, **formulas_1})


def errors_at(derivation: Derivation, point: Point) -> dict[str, float]:
    """Relative error of each formula against mogsim (keys x1-x3, m1-m3, s, sigma, a, b, c, f1-f3)."""
    f = derivation.formulas
    s, sig = float(point["s"]), float(point["sigma"])
    x2 = np.array([point["x1"], point["x2"]])
    mu2 = np.array([point["m1"], point["m2"]])
    cov = np.array([[point["a"], point["b"]], [point["b"], point["c"]]])
    full = GaussianDenoiser(mu2, cov)
    scale2 = float(np.abs(mu2).max() + np.abs(x2).max() / s)
    x3, mu3 = vector_from(point, "x", 3), vector_from(point, "m", 3)
    low = GaussianDenoiser.from_factor(mu3, vector_from(point, "f", 3)[:, None])
    scale3 = float(np.abs(mu3).max() + np.abs(x3).max() / s)
    floor = lambda x, scale: (np.abs(x).max() + s * scale) / (s * s * sig * sig)  # noqa: E731
    return {
        "posterior mean": rel_err(f["posterior mean"](point), denoise_scaled(full, batch(x2), sig, s), scale2),
        "score": rel_err(f["score"](point), score_scaled(full, batch(x2), sig, s), floor(x2, scale2)),
        "log density": rel_err(f["log density"](point), log_density_scaled(full, batch(x2), sig, s), 1.0),
        "rank-one posterior mean": rel_err(f["rank-one posterior mean"](point),
                                           denoise_scaled(low, batch(x3), sig, s), scale3),
        "rank-one score": rel_err(f["rank-one score"](point), score_scaled(low, batch(x3), sig, s),
                                  floor(x3, scale3)),
    }


def random_point(rng: np.random.Generator) -> Point:
    """A random point; the 2 x 2 covariance is L L^T with diag(L) in [0.3, 2] (well conditioned)."""
    l11, l22, l21 = rng.uniform(0.3, 2), rng.uniform(0.3, 2), rng.uniform(-1, 1)
    point = {"s": rng.uniform(0.5, 2), "sigma": rng.uniform(0.3, 3),
             "a": l11 * l11, "b": l11 * l21, "c": l21 * l21 + l22 * l22}
    return {**point, **uniform_entries(rng, "x", 3, -3, 3), **uniform_entries(rng, "m", 3, -2, 2),
            **uniform_entries(rng, "f", 3, -2, 2)}


RESULT = TheoryResult(
    name="gaussian",
    title="Gaussian posterior mean at general (s, sigma)",
    statement="For x0 ~ N(mu, S) and x = s x0 + s sigma eps: E[x0 | x] = mu + S (S + sigma^2 I)^-1 (x/s - mu) = "
              "D(x/s), and grad log p_t(x) = -(s^2 (S + sigma^2 I))^-1 (x - s mu). Derived for a symbolic 2 x 2 S "
              "(posterior mode of a concave quadratic) and for a rank-one S = f f^T in R^3 (Sherman-Morrison).",
    derive=derive,
    check=standard_check(errors_at, random_point),
)

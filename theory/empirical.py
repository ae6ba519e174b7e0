"""The optimal denoiser of an empirical distribution (Proposition 1) and its sigma -> 0 and sigma -> oo limits.

For ``p(x0) = (1/N) sum_i delta(x0 - y_i)`` and ``x = s x0 + s sigma eps``, Bayes' rule gives posterior weights
``w = softmax_i(-||x - s y_i||^2 / (2 s^2 sigma^2))`` and ``D_s(x) = sum_i w_i y_i = D(x / s)``. Derived for N = 3
symbolic points in R^2 (and a symbolic two-point set); the limits are taken with ``sympy.limit``: the nearest point
as sigma -> 0 (written through the gaps ``delta_j = ||x - y_j||^2 - ||x - y_1||^2 > 0``), the mean as sigma -> oo.
"""

from __future__ import annotations

import functools

import numpy as np
import sympy as sp
import torch

from mogsim import EmpiricalDenoiser

from .checks import standard_check
from .core import Derivation, Formula, Identity, Limit, Point, TheoryResult
from .numeric import batch, denoise_scaled, log_density_scaled, rel_err, score_scaled
from .symbolic import isotropic_logpdf, softmax, sq_norm, vector

S, SIG = sp.symbols("s sigma", positive=True)
X = vector("x", 2)
Y = [sp.Matrix(sp.symbols(f"y{i}1 y{i}2", real=True)) for i in (1, 2, 3)]
GAPS = sp.symbols("delta2 delta3", positive=True)
Y_SYMBOLS = tuple(v for y in Y for v in y)


def _mix(weights: list[sp.Expr], points: list[sp.Matrix]) -> sp.Matrix:
    return sum((w * y for w, y in zip(weights, points)), sp.zeros(*points[0].shape))


def _logits(x: sp.Matrix, scale: sp.Expr, points: list[sp.Matrix]) -> list[sp.Expr]:
    return [-sq_norm(x - scale * y) / (2 * scale**2 * SIG**2) for y in points]


def _gap_weights(gaps: list[sp.Expr]) -> list[sp.Expr]:
    """Softmax weights written with point 1 as reference: ``exp(-delta_j / (2 sigma^2))`` over their sum."""
    terms = [sp.Integer(1)] + [sp.exp(-g / (2 * SIG**2)) for g in gaps]
    total = sp.Add(*terms)
    return [t / total for t in terms]


def _limit_claims() -> list[Identity | Limit]:
    """Nearest point as sigma -> 0 and mean as sigma -> oo, for a two-point set and for three points."""
    y1, y2 = Y[0], Y[1]
    two = softmax(_logits(X, 1, [y1, y2]))
    gap = sq_norm(X - y2) - sq_norm(X - y1)
    sigmoid = 1 / (1 + sp.exp(-gap / (2 * SIG**2)))
    d_pos = sp.Symbol("delta", positive=True)
    two_nearest = y2 + (y1 - y2) / (1 + sp.exp(-d_pos / (2 * SIG**2)))
    three = softmax(_logits(X, 1, Y))
    gaps = [sq_norm(X - y) - sq_norm(X - Y[0]) for y in Y[1:]]
    mean = (Y[0] + Y[1] + Y[2]) / 3
    return [
        Identity("two points: D(x) = y2 + (y1 - y2) / (1 + exp(-(||x-y2||^2 - ||x-y1||^2) / (2 sigma^2)))",
                 _mix(two, [y1, y2]), y2 + (y1 - y2) * sigmoid),
        Limit("two points, x strictly nearer y1 (gap delta > 0): D -> y1 as sigma -> 0",
              two_nearest, SIG, 0, y1, "+"),
        Limit("two points: D -> (y1 + y2)/2 as sigma -> oo", _mix(two, [y1, y2]), SIG, sp.oo, (y1 + y2) / 2, "-"),
        Identity("three points: softmax weights = exp(-delta_j/(2 sigma^2)) / sum, delta_j = ||x-y_j||^2 - ||x-y_1||^2",
                 sp.Matrix(three), sp.Matrix(_gap_weights(gaps))),
        Limit("three points, y1 strictly nearest (delta2, delta3 > 0): D -> y1 as sigma -> 0",
              _mix(_gap_weights(list(GAPS)), Y), SIG, 0, Y[0], "+"),
        Limit("three points: D -> (y1 + y2 + y3)/3 as sigma -> oo", _mix(three, Y), SIG, sp.oo, mean, "-"),
    ]


@functools.lru_cache(maxsize=None)
def derive() -> Derivation:
    """Posterior weights by Bayes' rule, the softmax form, the scale convention, Tweedie in 2-D, the limits."""
    loglik = [isotropic_logpdf(X, S * y, S**2 * SIG**2) for y in Y]
    joint = [sp.Rational(1, 3) * sp.exp(l) for l in loglik]
    bayes = [j / sp.Add(*joint) for j in joint]
    weights = softmax(_logits(X, S, Y))
    denoised = _mix(weights, Y)
    log_p = sp.log(sp.Add(*joint))
    score = sp.Matrix([sp.diff(log_p, xi) for xi in X])
    claims = [
        Identity("Bayes: P(i | x) = softmax_i(-||x - s y_i||^2 / (2 s^2 sigma^2)), N = 3 points in R^2",
                 sp.Matrix(bayes), sp.Matrix(weights)),
        Identity("scale convention: the logits at scale s are the s = 1 logits at x/s, so D_s(x) = D(x/s)",
                 sp.Matrix(_logits(X, S, Y)), sp.Matrix(_logits(X / S, 1, Y))),
        Identity("Tweedie: grad log p_t(x) = (s D_s(x) - x) / (s^2 sigma^2)", score,
                 (S * denoised - X) / (S**2 * SIG**2)),
        *_limit_claims(),
    ]
    args = (*X, S, SIG, *Y_SYMBOLS)
    emp = "mogsim EmpiricalDenoiser"
    formulas = {
        "posterior mean D_s": Formula(args, denoised, f"{emp}, D(x/s)"),
        "score": Formula(args, score, f"{emp}.score(x/s)/s"),
        "log density": Formula(args, log_p, f"{emp}.log_density(x/s) - 2 log s"),
        "sigma -> 0 limit (y1 nearest)": Formula(Y_SYMBOLS, Y[0], f"{emp} at sigma^2 = min gap / 120, and .nearest"),
        "sigma -> oo limit": Formula(Y_SYMBOLS, (Y[0] + Y[1] + Y[2]) / 3, f"{emp} at sigma = 1e8, and .mean"),
    }
    xs, ys = sp.Symbol("x"), sp.IndexedBase("y")
    i, j, n = sp.symbols("i j N", integer=True)
    logit = lambda k: -sp.Symbol(rf"\|x - s y_{{{k}}}\|^{{2}}") / (2 * S**2 * SIG**2)  # noqa: E731
    display = [
        sp.Eq(sp.Function("D_s")(xs), sp.Sum(sp.Symbol("w_{i}") * ys[i], (i, 1, n))),
        sp.Eq(sp.Symbol("w_{i}"), sp.exp(logit("i")) / sp.Sum(sp.exp(logit("j")), (j, 1, n))),
        sp.Eq(sp.Limit(sp.Function("D")(xs), SIG, 0), sp.Symbol(r"y_{\arg\min_{i} \|x - y_{i}\|}")),
        sp.Eq(sp.Limit(sp.Function("D")(xs), SIG, sp.oo), sp.Sum(ys[i], (i, 1, n)) / n),
    ]
    return Derivation(display, claims, formulas)


def _nearest_first(point: Point) -> tuple[np.ndarray, np.ndarray, float]:
    """x, the points reordered by distance to x (nearest first), and the smallest gap delta_j > 0."""
    x = np.array([point["x1"], point["x2"]])
    ys = np.array([[point[f"y{i}1"], point[f"y{i}2"]] for i in (1, 2, 3)])
    d2 = ((ys - x) ** 2).sum(axis=1)
    order = np.argsort(d2, kind="stable")
    return x, ys[order], float(d2[order[1]] - d2[order[0]])


def errors_at(derivation: Derivation, point: Point) -> dict[str, float]:
    """Relative error of each formula against mogsim at ``point`` (keys x1, x2, s, sigma, y11 .. y32)."""
    f = derivation.formulas
    x_np = np.array([point["x1"], point["x2"]])
    x, s, sig = batch(x_np), float(point["s"]), float(point["sigma"])
    ys = np.array([[point[f"y{i}1"], point[f"y{i}2"]] for i in (1, 2, 3)])
    emp = EmpiricalDenoiser(torch.from_numpy(ys))
    data_scale = float(np.abs(ys).max())
    score_floor = (np.abs(x_np).max() + s * data_scale) / (s * s * sig * sig)
    errs = {
        "posterior mean D_s": rel_err(f["posterior mean D_s"](point), denoise_scaled(emp, x, sig, s), data_scale),
        "score": rel_err(f["score"](point), score_scaled(emp, x, sig, s), score_floor),
        "log density": rel_err(f["log density"](point), log_density_scaled(emp, x, sig, s), 1.0),
    }
    _, ordered, gap = _nearest_first(point)
    relabelled = dict(point)
    relabelled.update({f"y{i + 1}{k + 1}": float(ordered[i, k]) for i in range(3) for k in range(2)})
    limit0 = f["sigma -> 0 limit (y1 nearest)"](relabelled)
    small = np.sqrt(gap / 120.0)  # weight of any other point <= exp(-60)
    near = emp.data[emp.nearest(x)]
    errs["sigma -> 0 limit (y1 nearest)"] = max(rel_err(limit0, emp(x, small), data_scale),
                                                rel_err(limit0, near, data_scale))
    limit_oo = f["sigma -> oo limit"](point)
    errs["sigma -> oo limit"] = max(rel_err(limit_oo, emp(x, 1e8), data_scale), rel_err(limit_oo, emp.mean, data_scale))
    return errs


def random_point(rng: np.random.Generator) -> Point:
    """A random point: x in [-2, 2]^2, points in [-1.5, 1.5]^2, s in [0.5, 2], sigma in [0.5, 3], gap > 1e-3."""
    while True:
        point = {"x1": rng.uniform(-2, 2), "x2": rng.uniform(-2, 2), "s": rng.uniform(0.5, 2),
                 "sigma": rng.uniform(0.5, 3)}
        point.update({f"y{i}{k}": rng.uniform(-1.5, 1.5) for i in (1, 2, 3) for k in (1, 2)})
        if _nearest_first(point)[2] > 1e-3:
            return point


RESULT = TheoryResult(
    name="empirical",
    title="The empirical optimal denoiser (Proposition 1)",
    statement="For the empirical distribution of N points y_i and x = s x0 + s sigma eps, the posterior weights are "
              "w = softmax_i(-||x - s y_i||^2 / (2 s^2 sigma^2)) and D_s(x) = sum_i w_i y_i = D(x/s). As sigma -> 0, "
              "D returns the nearest point; as sigma -> infinity, the mean of the points.",
    derive=derive,
    check=standard_check(errors_at, random_point),
)

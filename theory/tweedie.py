"""Tweedie's formula (Lemma 1), derived for a discrete and a Gaussian prior in one dimension.

For ``p_t(x) = int p(x0) N(x; s x0, s^2 sigma^2) dx0`` the score is ``(s E[x0 | x] - x) / (s^2 sigma^2)``. The
derivation differentiates ``log p_t`` directly and shows it equals the right-hand side built from the posterior
mean (Bayes' rule), for three symbolic atoms with symbolic weights and for the prior ``N(mu, v)`` (whose integrals
are done by completing the square).
"""

from __future__ import annotations

import functools

import numpy as np
import sympy as sp
import torch

from mogsim import EmpiricalDenoiser, GaussianDenoiser

from .checks import standard_check
from .core import Derivation, Formula, Identity, Point, TheoryResult
from .numeric import batch, denoise_scaled, log_density_scaled, rel_err, score_scaled, uniform_entries, vector_from
from .symbolic import gaussian_integral, gaussian_integral_claims, normal_logpdf

X, X0, MU = sp.symbols("x x0 mu", real=True)
S, SIG, V = sp.symbols("s sigma v", positive=True)
ATOMS = sp.symbols("a1:4", real=True)
WEIGHTS = sp.symbols("w1:4", positive=True)


def _tweedie_rhs(post_mean: sp.Expr) -> sp.Expr:
    return (S * post_mean - X) / (S**2 * SIG**2)


@functools.lru_cache(maxsize=None)
def derive() -> Derivation:
    """The score and posterior mean of both priors, and the claims tying them together (Lemma 1)."""
    kernel = [sp.exp(normal_logpdf(X, S * a, S**2 * SIG**2)) for a in ATOMS]
    mass = sp.Add(*[w * k for w, k in zip(WEIGHTS, kernel)])
    p_t = mass / sp.Add(*WEIGHTS)
    post_mean = sp.Add(*[w * a * k for w, a, k in zip(WEIGHTS, ATOMS, kernel)]) / mass  # Bayes, discrete prior
    score = sp.diff(sp.log(p_t), X)

    log_joint = normal_logpdf(X0, MU, V) + normal_logpdf(X, S * X0, S**2 * SIG**2)
    p_t_g = gaussian_integral(log_joint, X0)
    post_mean_g = sp.simplify(gaussian_integral(log_joint, X0, 1) / p_t_g)
    log_p_t_g = sp.expand_log(sp.log(p_t_g), force=True)
    score_g = sp.diff(log_p_t_g, X)

    claims = [
        Identity("discrete prior (3 symbolic atoms a_i, weights w_i): d/dx log p_t(x) = (s E[x0|x] - x)/(s^2 sigma^2)",
                 score, _tweedie_rhs(post_mean)),
        *gaussian_integral_claims(),
        Identity("Gaussian prior N(mu, v): d/dx log p_t(x) = (s E[x0|x] - x)/(s^2 sigma^2)",
                 score_g, _tweedie_rhs(post_mean_g)),
        Identity("Gaussian prior: p_t(x) = N(x; s mu, s^2 (v + sigma^2))",
                 log_p_t_g, normal_logpdf(X, S * MU, S**2 * (V + SIG**2)), "simplify"),
        Identity("Gaussian prior: E[x0|x] = mu + v/(v + sigma^2) (x/s - mu)",
                 post_mean_g, MU + V / (V + SIG**2) * (X / S - MU)),
    ]
    d_args = (X, S, SIG, *ATOMS, *WEIGHTS)
    g_args = (X, S, SIG, MU, V)
    emp = "mogsim EmpiricalDenoiser (atom i repeated w_i times)"
    gauss = "mogsim GaussianDenoiser(mu, v)"
    formulas = {
        "discrete score": Formula(d_args, score, f"{emp}.score(x/s)/s"),
        "discrete posterior mean": Formula(d_args, post_mean, f"{emp}, D(x/s)"),
        "discrete log density": Formula(d_args, sp.log(p_t), f"{emp}.log_density(x/s) - log s"),
        "Gaussian score": Formula(g_args, score_g, f"{gauss}.score(x/s)/s"),
        "Gaussian posterior mean": Formula(g_args, post_mean_g, f"{gauss}, D(x/s)"),
        "Gaussian log density": Formula(g_args, log_p_t_g, f"{gauss}.log_density(x/s) - log s"),
    }
    post = sp.Symbol(r"\mathbb{E}[x_{0} \mid x]")
    p = sp.Function("p_t")
    display = [
        sp.Eq(p(X), sp.Integral(sp.Function("p")(X0) * sp.Function(r"\mathcal{N}")(X, S * X0, S**2 * SIG**2),
                                (X0, -sp.oo, sp.oo))),
        sp.Eq(sp.Derivative(sp.log(p(X)), X), _tweedie_rhs(post)),
    ]
    return Derivation(display, claims, formulas)


def errors_at(derivation: Derivation, point: Point) -> dict[str, float]:
    """Relative error of each formula against mogsim at ``point`` (keys: x, s, sigma, a1-a3, w1-w3, mu, v)."""
    f = derivation.formulas
    x, s, sig = batch([point["x"]]), float(point["s"]), float(point["sigma"])
    atoms = vector_from(point, "a", 3)
    counts = [int(round(point[f"w{i}"])) for i in range(1, 4)]
    emp = EmpiricalDenoiser(torch.from_numpy(np.repeat(atoms, counts)[:, None]))
    # below ~1e-300 the data are numerically zero: intermediate values turn subnormal, which BLAS may flush to zero
    data_scale = max(float(np.abs(atoms).max()), 1e-300)
    score_floor = (abs(point["x"]) + s * data_scale) / (s * s * sig * sig)
    gauss = GaussianDenoiser(np.array([point["mu"]]), np.array([[point["v"]]]))  # float64 arrays
    g_scale = abs(point["mu"]) + abs(point["x"]) / s
    return {
        "discrete score": rel_err(f["discrete score"](point), score_scaled(emp, x, sig, s), score_floor),
        "discrete posterior mean": rel_err(f["discrete posterior mean"](point),
                                           denoise_scaled(emp, x, sig, s), data_scale),
        "discrete log density": rel_err(f["discrete log density"](point), log_density_scaled(emp, x, sig, s), 1.0),
        "Gaussian score": rel_err(f["Gaussian score"](point), score_scaled(gauss, x, sig, s),
                                  (abs(point["x"]) + s * g_scale) / (s * s * sig * sig)),
        "Gaussian posterior mean": rel_err(f["Gaussian posterior mean"](point),
                                           denoise_scaled(gauss, x, sig, s), g_scale),
        "Gaussian log density": rel_err(f["Gaussian log density"](point),
                                        log_density_scaled(gauss, x, sig, s), 1.0),
    }


def random_point(rng: np.random.Generator) -> Point:
    """A random point in the ranges the checks use (moderate s sigma, so no density underflows)."""
    point = {"x": rng.uniform(-3, 3), "s": rng.uniform(0.5, 2), "sigma": rng.uniform(0.5, 3),
             "mu": rng.uniform(-2, 2), "v": rng.uniform(0.1, 3)}
    point.update(uniform_entries(rng, "a", 3, -2, 2))
    point.update({f"w{i}": float(rng.integers(1, 4)) for i in range(1, 4)})
    return point


RESULT = TheoryResult(
    name="tweedie",
    title="Tweedie's formula (Lemma 1)",
    statement="For p_t(x) = integral of p(x0) N(x; s x0, s^2 sigma^2 I) dx0, the score is "
              "grad log p_t(x) = (s E[x0 | x] - x) / (s^2 sigma^2). Derived in 1-D for a discrete prior (3 symbolic "
              "atoms, symbolic weights) and for a Gaussian prior N(mu, v), where p_t = N(s mu, s^2 (v + sigma^2)).",
    derive=derive,
    check=standard_check(errors_at, random_point),
)

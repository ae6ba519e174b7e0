"""The MoLRG posterior mean and component weights (paper-notes section 2), derived for n = 3, r = 1, K = 2.

``p(x0) = sum_k pi_k N(0, U_k U_k^T + eta^2 I)``, ``x = x0 + sigma eps``, ``tau^2 = sigma^2 + eta^2``. Given k,
``x ~ N(0, C_k)`` with ``C_k = U_k U_k^T + tau^2 I``; Woodbury and ``det C_k = tau^(2(n-r)) (1 + tau^2)^r`` give
``log N_k(x)``; Gaussian conditioning gives ``E[x0 | x, k] = (1+eta^2)/(1+tau^2) P_k x + eta^2/tau^2 (I - P_k) x``;
the weights are ``softmax_k(log pi_k + log N_k(x))`` and ``D = x + sigma^2 grad log p = sum_k w_k E[x0 | x, k]``.
With eta = 0 this is ``D = sum_k w_k U_k U_k^T x / (1 + sigma^2)`` with the paper's weights. The bases are unit
vectors with symbolic entries (identities hold modulo ``U_k^T U_k = 1``; the two need not be orthogonal) and the
weights pi_1, pi_2 are symbolic.
"""

from __future__ import annotations

import functools

import numpy as np
import sympy as sp
import torch

from mogsim import MoLRG

from .checks import standard_check
from .core import Derivation, Formula, Identity, Point, TheoryResult
from .numeric import batch, rel_err, uniform_entries, vector_from, worst
from .symbolic import gaussian_logpdf, sq_norm, vector

N_DIM, RANK = 3, 1
X = vector("x", N_DIM)
SIG = sp.Symbol("sigma", positive=True)
ETA = sp.Symbol("eta", nonnegative=True)
PIS = sp.symbols("pi1 pi2", positive=True)
BASES = [sp.Matrix(sp.symbols(f"u{k}_1:{N_DIM + 1}", real=True)) for k in (1, 2)]
UNIT = [(sp.expand(sq_norm(u) - 1),) for u in BASES]  # U_k^T U_k = 1
TAU2 = SIG**2 + ETA**2


def _component(u: sp.Matrix) -> dict[str, sp.Basic]:
    """Basis, projection, Woodbury inverse, log-likelihood (paper form) and posterior mean of one component."""
    eye = sp.eye(N_DIM)
    proj = u * u.T
    inverse = (eye - proj) / TAU2 + proj / (1 + TAU2)
    resid = X - proj * X
    loglik = (-N_DIM * sp.log(2 * sp.pi) / 2 - RANK * sp.log(1 + TAU2) / 2 - (N_DIM - RANK) * sp.log(TAU2) / 2
              - sq_norm(u.T * X) / (2 * (1 + TAU2)) - sq_norm(resid) / (2 * TAU2))
    mean = (1 + ETA**2) / (1 + TAU2) * proj * X + ETA**2 / TAU2 * (eye - proj) * X
    return {"u": u, "proj": proj, "cov": proj + TAU2 * eye, "inverse": inverse, "loglik": loglik, "mean": mean}


def _component_claims(k: int, c: dict[str, sp.Basic]) -> list[Identity]:
    eye = sp.eye(N_DIM)
    exact = gaussian_logpdf(X, sp.zeros(N_DIM, 1), c["inverse"], sp.log(c["cov"].det()))
    grad = sp.Matrix([sp.diff(c["loglik"], xi) for xi in X])
    unit = {"relations": UNIT[k - 1], "relations_label": f"U_{k}^T U_{k} = 1"}
    return [
        Identity(f"k = {k}: C_k W_k = I with C_k = U_k U_k^T + tau^2 I, W_k the Woodbury form", c["cov"] * c["inverse"],
                 eye, **unit),
        Identity(f"k = {k}: log N(x; 0, C_k) (sympy det, W_k) = -n/2 log 2pi - r/2 log(1+tau^2) - (n-r)/2 log tau^2"
                 " - |U_k^T x|^2/(2(1+tau^2)) - |x - P_k x|^2/(2 tau^2)", exact, c["loglik"], "log", **unit),
        Identity(f"k = {k}: Gaussian conditioning (P_k + eta^2 I) C_k^-1 x = (1+eta^2)/(1+tau^2) P_k x"
                 " + eta^2/tau^2 (I - P_k) x", (c["proj"] + ETA**2 * eye) * c["inverse"] * X, c["mean"], **unit),
        Identity(f"k = {k}: Tweedie per component, x + sigma^2 grad log N_k(x) = E[x0 | x, k]",
                 X + SIG**2 * grad, c["mean"], **unit),
    ]


def _mixture_claims() -> list[Identity]:
    """grad log sum_k pi_k e^{L_k} = sum_k w_k grad L_k for any L_k, and D = sum_k w_k E_k once sum_k w_k = 1."""
    funcs = [sp.Function(f"L{k + 1}")(*X) for k in range(2)]
    mass = sp.Add(*[p * sp.exp(f) for p, f in zip(PIS, funcs)])
    generic_w = [p * sp.exp(f) / mass for p, f in zip(PIS, funcs)]
    lhs = sp.Matrix([sp.diff(sp.log(mass), xi) for xi in X])
    rhs = sp.Matrix([sp.Add(*[w * sp.diff(f, xi) for w, f in zip(generic_w, funcs)]) for xi in X])
    e = sp.symbols("e1 e2", positive=True)  # e_k = exp(L_k) > 0: the identity below holds for any values
    w = [p * ek / (PIS[0] * e[0] + PIS[1] * e[1]) for p, ek in zip(PIS, e)]
    grads = [vector(f"g{k + 1}_", N_DIM) for k in range(2)]  # grad L_k, any vectors
    means = [X + SIG**2 * g for g in grads]  # E[x0 | x, k], by the per-component Tweedie claims
    return [
        Identity("mixture: grad log sum_k pi_k exp(L_k(x)) = sum_k w_k grad L_k, w = softmax_k(log pi_k + L_k)",
                 lhs, rhs),
        Identity("posterior mean: x + sigma^2 sum_k w_k grad L_k = sum_k w_k E[x0 | x, k] when each "
                 "E[x0 | x, k] = x + sigma^2 grad L_k (claims above) and sum_k w_k = 1",
                 X + SIG**2 * (w[0] * grads[0] + w[1] * grads[1]), w[0] * means[0] + w[1] * means[1]),
    ]


def _paper_weight_logits(comps: list[dict[str, sp.Basic]]) -> list[sp.Expr]:
    """eta = 0: log of pi_k (1+sigma^2)^(-r/2) sigma^(-(n-r)) exp(|U_k^T x|^2 / (2 sigma^2 (1+sigma^2)))."""
    return [sp.log(p) - RANK * sp.log(1 + SIG**2) / 2 - (N_DIM - RANK) * sp.log(SIG)
            + sq_norm(c["u"].T * X) / (2 * SIG**2 * (1 + SIG**2)) for p, c in zip(PIS, comps)]


@functools.lru_cache(maxsize=None)
def derive() -> Derivation:
    """Per-component Gaussian algebra, the mixture identities, the paper's weights, and the formulas to compare."""
    comps = [_component(u) for u in BASES]
    logits = [sp.log(p) + c["loglik"] for p, c in zip(PIS, comps)]
    paper = _paper_weight_logits(comps)
    shift = -N_DIM * sp.log(2 * sp.pi) / 2 - sq_norm(X) / (2 * SIG**2)
    claims = [*_component_claims(1, comps[0]), *_component_claims(2, comps[1]), *_mixture_claims()]
    claims += [Identity(f"eta = 0, k = {k + 1}: log pi_k + log N_k(x) = paper logit - n/2 log 2pi - |x|^2/(2 sigma^2)"
                        " (a shift common to all k, so the softmax weights agree)",
                        logits[k].subs(ETA, 0), paper[k] + shift, "log", UNIT[k], f"U_{k + 1}^T U_{k + 1} = 1")
               for k in range(2)]
    joint = [sp.exp(l) for l in logits]
    total = sp.Add(*joint)
    weights = [j / total for j in joint]
    denoised = weights[0] * comps[0]["mean"] + weights[1] * comps[1]["mean"]
    score = sp.Matrix([sp.Add(*[w * sp.diff(c["loglik"], xi) for w, c in zip(weights, comps)]) for xi in X])
    paper_exp = [sp.exp(l) for l in paper]
    args = (*X, SIG, ETA, *PIS, *BASES[0], *BASES[1])
    mix = "mogsim MoLRG(bases, weights=[pi1, pi2], noise_std=eta)"
    formulas = {
        "posterior mean": Formula(args, denoised, f"{mix}.denoise"),
        "score": Formula(args, score, f"{mix}.score"),
        "log density": Formula(args, sp.log(total / (PIS[0] + PIS[1])), f"{mix}.log_density"),
        "posterior weights": Formula(args, sp.Matrix(weights), f"{mix}.posterior_weights"),
        "paper weights (eta = 0)": Formula((*X, SIG, *PIS, *BASES[0], *BASES[1]),
                                           sp.Matrix([p / sp.Add(*paper_exp) for p in paper_exp]),
                                           "mogsim MoLRG(bases, weights, noise_std=0).posterior_weights"),
    }
    return Derivation(_display(), claims, formulas)


def _display() -> list[sp.Basic]:
    n = sp.Symbol("n", integer=True)
    k, j, kk = sp.symbols("k j K", integer=True)
    x, u = sp.MatrixSymbol("x", n, 1), sp.MatrixSymbol("U_{k}", n, sp.Symbol("r_{k}"))
    posterior = sp.Symbol(r"\mathbb{E}[x_{0} \mid x, k]")

    def weight(i: str) -> sp.Expr:
        r = sp.Symbol(f"r_{{{i}}}")
        return (sp.Symbol(rf"\pi_{{{i}}}") * (1 + SIG**2) ** (-r / 2) * SIG ** (-(n - r))
                * sp.exp(sp.Symbol(rf"\|U_{{{i}}}^{{T}} x\|^{{2}}") / (2 * SIG**2 * (1 + SIG**2))))

    return [
        sp.Eq(sp.MatrixSymbol(r"\mathbb{E}[x_{0} \mid x, k]", n, 1), u * u.T * x / (1 + SIG**2)),
        sp.Eq(sp.Symbol("D(x)"), sp.Sum(sp.Symbol("w_{k}(x)") * posterior, (k, 1, kk))),
        sp.Eq(sp.Symbol("w_{k}(x)"), weight("k") / sp.Sum(weight("j"), (j, 1, kk))),
    ]


def errors_at(derivation: Derivation, point: Point) -> dict[str, float]:
    """Relative error of each formula against mogsim's MoLRG (keys x1-x3, sigma, eta, pi1, pi2, u1_1 .. u2_3)."""
    f = derivation.formulas
    x_np = vector_from(point, "x", 3)
    x, sig = batch(x_np), float(point["sigma"])
    bases = torch.tensor([[[point[f"u{k}_{i}"]] for i in range(1, N_DIM + 1)] for k in (1, 2)], dtype=torch.float64)
    weights = [point["pi1"], point["pi2"]]
    scale = float(np.abs(x_np).max())
    errs: dict[str, float] = {}
    for eta in sorted({0.0, float(point["eta"])}):  # always the exactly low-rank model, and the point's eta
        at = {**point, "eta": eta}
        mix = MoLRG(bases, weights=weights, noise_std=eta)
        found = {
            "posterior mean": rel_err(f["posterior mean"](at), mix.denoise(x, sig), scale),
            "score": rel_err(f["score"](at), mix.score(x, sig), scale / (sig * sig + eta * eta)),
            "log density": rel_err(f["log density"](at), mix.log_density(x, sig), 1.0),
            "posterior weights": rel_err(f["posterior weights"](at), mix.posterior_weights(x, sig), 1.0),
        }
        if eta == 0.0:
            found["paper weights (eta = 0)"] = rel_err(f["paper weights (eta = 0)"](at), mix.posterior_weights(x, sig),
                                                       1.0)
        for name, err in found.items():
            errs[name] = worst(errs.get(name, 0.0), err)
    return errs


def random_point(rng: np.random.Generator) -> Point:
    """A random point; eta is 0 (the exactly low-rank model) for about half of the points."""
    point = {"sigma": rng.uniform(0.3, 3), "eta": 0.0 if rng.random() < 0.5 else rng.uniform(0.1, 1),
             "pi1": rng.uniform(0.1, 1), "pi2": rng.uniform(0.1, 1)}
    point.update(uniform_entries(rng, "x", 3, -3, 3))
    for k in (1, 2):
        unit = rng.standard_normal(N_DIM)
        point.update({f"u{k}_{i + 1}": float(v) for i, v in enumerate(unit / np.linalg.norm(unit))})
    return point


RESULT = TheoryResult(
    name="molrg",
    title="MoLRG posterior mean and component weights",
    statement="For p(x0) = sum_k pi_k N(0, U_k U_k^T + eta^2 I) and x = x0 + sigma eps: E[x0 | x, k] = "
              "(1+eta^2)/(1+tau^2) U_k U_k^T x + eta^2/tau^2 (I - U_k U_k^T) x (tau^2 = sigma^2 + eta^2), weights "
              "w_k = softmax_k(log pi_k + log N(x; 0, U_k U_k^T + tau^2 I)), D = sum_k w_k E[x0 | x, k]. For eta = 0: "
              "D = sum_k w_k U_k U_k^T x / (1 + sigma^2), w_k proportional to pi_k (1+sigma^2)^(-r/2) sigma^-(n-r) "
              "exp(||U_k^T x||^2 / (2 sigma^2 (1 + sigma^2))). Derived for n = 3, r = 1, K = 2, unequal symbolic pi_k.",
    derive=derive,
    check=standard_check(errors_at, random_point, num_points=6),
)

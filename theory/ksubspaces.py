"""Paper 2's Theorem 3 reduction: the hard-max low-rank denoiser's loss is the K-subspaces objective.

Paper 2's network (``mogsim.nets.lowrank``) is ``x_theta(x_t) = c sum_k w_k U_k U_k^T x_t`` with ``c = s/(s^2 + g^2)``
(g: the paper's gamma_t) and soft-max weights ``w = softmax_k(phi ||U_k^T x_t||^2)``,
``phi = s^2 / (2 g^2 (s^2 + g^2))``. Theorem 3 takes the hard-max gate (all weight on ``argmax_k ||U_k^T x||^2``) and
mutually orthogonal bases, ``[U_1 .. U_K]`` with orthonormal columns. Derived here for n = 3, K = 2, d = 1 (bases
u_1, u_2: the columns of a symbolic 3 x 2 matrix U, identities modulo ``U^T U = I``) and a one-hot gate ``(h, 1 - h)``
(identities modulo ``h^2 = h``):

* for a fixed gate, ``E_eps ||c (h P_1 + (1-h) P_2)(s x + g eps) - x||^2 = ||x||^2 - rho (2 - rho) (h ||U_1^T x||^2
  + (1 - h) ||U_2^T x||^2) + c^2 g^2 d`` with ``rho = c s``; summed over the training points with each point's gate
  set by its clean value (the assignment ``C_k(U)``), the loss is ``const - rho (2 - rho) sum_k sum_{i in C_k}
  ||U_k^T x_i||^2``, and ``rho (2 - rho) = s^2 (s^2 + 2 g^2) / (s^2 + g^2)^2 > 0``: minimising it maximises the
  K-subspaces objective ``sum_i max_k ||U_k^T x_i||^2``, i.e. minimises ``sum_i min_k ||x_i - P_k x_i||^2``
  (``||x - P_k x||^2 = ||x||^2 - ||U_k^T x||^2``);
* the hard-max gate is the ``g -> 0`` limit of the soft-max one (``phi -> oo``);
* the paper's (s, g) form is mogsim's ``D(x_t / s; sigma = g / s)`` (the gate and the scale ``c``).

The reduction uses only ``U_k^T U_k = I`` and the one-hot gate; the mutual orthogonality is Theorem 3's feasible set
(and that of :func:`mogsim.subspaces.ksubspaces`). What is *not* derived here is the step from the gate of the noisy
``x_t`` to the gate of the clean point, which the theorem's setting supplies. Numeric checks compare with
:class:`mogsim.nets.lowrank.LowRankDenoiser` (hard and soft gate) and :mod:`mogsim.subspaces`.
"""

from __future__ import annotations

import functools

import numpy as np
import sympy as sp
import torch

from mogsim.nets.lowrank import LowRankDenoiser
from mogsim.subspaces import assign, residuals

from .checks import standard_check
from .core import Derivation, Formula, Identity, Limit, Point, TheoryResult
from .numeric import basis_entries, basis_from, batch, random_orthonormal, rel_err, uniform_entries, vector_from
from .symbolic import gaussian_expectation, orthonormal_basis, sq_norm, vector

N_DIM, RANK = 3, 1
X, Y, EPS = vector("x", N_DIM), vector("y", N_DIM), vector("e", N_DIM)
S, G = sp.symbols("s g", positive=True)
H, HY = sp.symbols("h hy", real=True)  # one-hot gates (h, 1 - h) of x and of y
COEF = S / (S**2 + G**2)
RHO = COEF * S
PHI = S**2 / (2 * G**2 * (S**2 + G**2))
BASIS, STIEFEL = orthonormal_basis("u", N_DIM, 2)  # columns u_1, u_2: U^T U = I (unit and mutually orthogonal)
U1, U2 = BASIS[:, 0], BASIS[:, 1]
P1, P2 = U1 * U1.T, U2 * U2.T
ONE_HOT = (sp.expand(H**2 - H),)


def _gated(h: sp.Expr) -> sp.Matrix:
    """The hard-max denoiser's linear map for the one-hot gate (h, 1 - h): ``c (h P_1 + (1 - h) P_2)``."""
    return COEF * (h * P1 + (1 - h) * P2)


@functools.lru_cache(maxsize=None)
def derive() -> Derivation:
    """Exact expected loss for a one-hot gate, the K-subspaces form, positivity, the hard-max limit, the conversion."""
    loss = sq_norm(_gated(H) * (S * X + G * EPS) - X)
    expected = gaussian_expectation(loss, list(EPS))
    energy = H * sq_norm(U1.T * X) + (1 - H) * sq_norm(U2.T * X)
    reduced = sq_norm(X) - RHO * (2 - RHO) * energy + COEF**2 * G**2 * RANK
    residual = H * sq_norm(X - P1 * X) + (1 - H) * sq_norm(X - P2 * X)
    delta = sp.Symbol("Delta", positive=True)  # ||U_1^T x_t||^2 - ||U_2^T x_t||^2 > 0: component 1 wins
    e1, e2 = sp.symbols("e1 e2", real=True)
    soft_w1 = sp.exp(PHI * e1) / (sp.exp(PHI * e1) + sp.exp(PHI * e2))
    sig = sp.Symbol("sigma", positive=True)
    mogsim_logit = 1 / (2 * sig**2 * (1 + sig**2))  # mogsim's gate: softmax_k(|U_k^T x|^2 / (2 sigma^2 (1+sigma^2)))
    relations = STIEFEL + ONE_HOT
    claims = [
        Identity("one-hot gate (h, 1-h), U^T U = I: E_eps ||c (h P1 + (1-h) P2)(s x + g eps) - x||^2 = ||x||^2 - "
                 "rho (2 - rho) (h |U1^T x|^2 + (1-h) |U2^T x|^2) + c^2 g^2 d", expected, reduced,
                 relations=relations, relations_label="U^T U = I, h^2 = h"),
        Identity("rho (2 - rho) = s^2 (s^2 + 2 g^2) / (s^2 + g^2)^2 > 0, so the loss falls as the K-subspaces energy "
                 "rises", RHO * (2 - RHO), S**2 * (S**2 + 2 * G**2) / (S**2 + G**2) ** 2),
        Identity("residual form: h |x - P1 x|^2 + (1-h) |x - P2 x|^2 = ||x||^2 - (h |U1^T x|^2 + (1-h) |U2^T x|^2)",
                 residual, sq_norm(X) - energy, relations=relations, relations_label="U^T U = I, h^2 = h"),
        Identity("soft-max weight of component 1: exp(phi e1) / (exp(phi e1) + exp(phi e2)) = 1 / (1 + exp(-phi (e1 - "
                 "e2)))", soft_w1, 1 / (1 + sp.exp(-PHI * (e1 - e2))), "simplify"),
        Limit("hard-max limit: the soft-max weight of the winning component -> 1 as g -> 0 (phi -> oo)",
              1 / (1 + sp.exp(-PHI * delta)), G, 0, 1),
        Limit("hard-max limit: the losing component's weight -> 0 as g -> 0",
              1 / (1 + sp.exp(PHI * delta)), G, 0, 0),
        Identity("paper -> mogsim: c = s/(s^2 + g^2) = (1/s) / (1 + sigma^2) at sigma = g/s",
                 COEF, (1 / S / (1 + sig**2)).subs(sig, G / S)),
        Identity("paper -> mogsim: phi |U^T x_t|^2 = |U^T (x_t/s)|^2 / (2 sigma^2 (1 + sigma^2)) at sigma = g/s",
                 PHI, (mogsim_logit / S**2).subs(sig, G / S)),
    ]
    hard_y = _gated(HY) * Y
    w1_y = 1 / (1 + sp.exp(-PHI * (sq_norm(U1.T * Y) - sq_norm(U2.T * Y))))
    entries = tuple(BASIS)
    formulas = {
        "expected hard-max loss": Formula((*X, S, G, *entries, H), reduced,
                                          "exact E over eps with mogsim LowRankDenoiser(gate='hard'): "
                                          "|D(s x) - x|^2 + sum_i |D_k(g e_i)|^2, gate at x"),
        "K-subspaces residual": Formula((*X, *entries, H), sq_norm(X) - energy,
                                        "mogsim.subspaces.residuals(x, U).min() with assign(x, U)"),
        "soft-max weight w_1": Formula((*Y, S, G, *entries), w1_y,
                                       "LowRankDenoiser(gate='soft').weights(y/s, sigma = g/s)"),
        "hard-max denoiser": Formula((*Y, S, G, *entries, HY), hard_y,
                                     "LowRankDenoiser(gate='hard').paper_form(y, s, g)"),
    }
    display = [
        sp.Eq(sp.Symbol(r"\mathbb{E}_{\epsilon} \| c\, U_{k(x)} U_{k(x)}^{T} (s x + \gamma \epsilon) - x \|^{2}"),
              sp.Symbol(r"\|x\|^{2}") - sp.Symbol(r"\rho") * (2 - sp.Symbol(r"\rho"))
              * sp.Symbol(r"\|U_{k(x)}^{T} x\|^{2}") + sp.Symbol("c") ** 2 * sp.Symbol(r"\gamma") ** 2
              * sp.Symbol("d")),
        sp.Eq(sp.Symbol(r"k(x)"), sp.Symbol(r"\arg\max_{k} \|U_{k}^{T} x\|^{2}")),
        sp.Eq(sp.Symbol(r"\rho (2 - \rho)"), RHO * (2 - RHO)),
        sp.Eq(sp.Symbol(r"\min_{U} \sum_i \mathcal{L}(x_i)"),
              sp.Symbol(r"\max_{[U_1 \dots U_K] \in O^{n \times K d}} \sum_i \max_k \|U_k^{T} x_i\|^{2}")),
        sp.Eq(sp.Symbol(r"\phi_t"), PHI),
        sp.Eq(sp.Symbol(r"w_{k}"), sp.Symbol(r"\mathrm{softmax}_k(\phi_t \|U_k^{T} x_t\|^{2})")),
        sp.Eq(sp.Symbol(r"\lim_{\gamma \to 0} w_{k}"), sp.Symbol(r"\mathbb{1}[k = \arg\max_l \|U_l^{T} x_t\|^{2}]")),
    ]
    return Derivation(display, claims, formulas)


def _model(basis: np.ndarray, gate: str) -> LowRankDenoiser:
    """A float64 LowRankDenoiser (K = columns of ``basis``, d = 1) with the given bases."""
    net = LowRankDenoiser(N_DIM, basis.shape[1], RANK, gate=gate, dtype=torch.float64)
    net.set_bases(torch.from_numpy(basis.T[:, :, None].copy()))
    return net


def _gate(net: LowRankDenoiser, v: np.ndarray) -> float:
    """mogsim's hard gate of v for component 1 (1.0 or 0.0)."""
    return float(net.weights(batch(v), 1.0)[0, 0])


@torch.no_grad()
def errors_at(derivation: Derivation, point: Point) -> dict[str, float]:
    """Relative error of each formula against mogsim (keys x1-x3, y1-y3, s, g, u11 .. u32, h, hy; h and hy must be
    the hard gates of x and y, 1.0 when component 1 holds more of the point's energy)."""
    f = derivation.formulas
    basis = basis_from(point, "u", N_DIM, 2)
    x, y = vector_from(point, "x", N_DIM), vector_from(point, "y", N_DIM)
    s, g = float(point["s"]), float(point["g"])
    hard, soft = _model(basis, "hard"), _model(basis, "soft")
    errs: dict[str, float] = {}
    h = _gate(hard, x)
    if h != float(point["h"]) or _gate(hard, y) != float(point["hy"]):
        return {name: float("inf") for name in f}  # the point's gates disagree with mogsim's
    k = 0 if h == 1.0 else 1
    single = _model(basis[:, k:k + 1], "hard")  # the assigned component alone: its map is linear
    mean_part = hard.paper_form(batch(s * x), s, g).numpy()[0] - x
    noise_part = single.paper_form(torch.from_numpy(g * np.eye(N_DIM)), s, g).numpy()
    exact = float(mean_part @ mean_part + (noise_part * noise_part).sum())
    errs["expected hard-max loss"] = rel_err(f["expected hard-max loss"](point), exact)
    bases_t = torch.from_numpy(basis.T[:, :, None].copy())
    res = residuals(batch(x), bases_t)[0]
    label = int(assign(batch(x), bases_t)[0])
    want = float(res.min()) if label == k else float("inf")
    errs["K-subspaces residual"] = rel_err(f["K-subspaces residual"](point), want, float(x @ x))
    w1 = soft.weights(batch(y / s), g / s)[0, 0]
    errs["soft-max weight w_1"] = rel_err(f["soft-max weight w_1"](point), w1, 1.0)
    errs["hard-max denoiser"] = rel_err(f["hard-max denoiser"](point), hard.paper_form(batch(y), s, g)[0],
                                        float(np.abs(y).max()) / s)
    return errs


def gates(point: dict[str, float]) -> dict[str, float]:
    """``h``, ``hy``: 1.0 where component 1 holds at least as much of x (of y) as component 2, else 0.0."""
    basis = basis_from(point, "u", N_DIM, 2)
    out = {}
    for name, key in (("h", "x"), ("hy", "y")):
        v = vector_from(point, key, N_DIM)
        e = (basis.T @ v) ** 2
        out[name] = 1.0 if e[0] >= e[1] else 0.0
    return out


def random_point(rng: np.random.Generator) -> Point:
    """x, y in [-2, 2]^3, s in [0.5, 2], g in [0.3, 2], a random 3 x 2 orthonormal U; h, hy their hard gates."""
    point = {"s": rng.uniform(0.5, 2), "g": rng.uniform(0.3, 2)}
    point.update(basis_entries("u", random_orthonormal(rng, N_DIM, 2)))
    point.update({**uniform_entries(rng, "x", N_DIM, -2, 2), **uniform_entries(rng, "y", N_DIM, -2, 2)})
    point.update(gates(point))
    return point


RESULT = TheoryResult(
    name="ksubspaces",
    title="Paper 2's Theorem 3: hard-max training is K-subspace clustering",
    statement="For the hard-max low-rank denoiser c U_k U_k^T x_t (k the gate, c = s/(s^2 + g^2), rho = c s) with "
              "orthonormal bases: E_eps ||c U_k U_k^T (s x + g eps) - x||^2 = ||x||^2 - rho (2 - rho) ||U_k^T x||^2 + "
              "c^2 g^2 d, with rho (2 - rho) > 0; with each point's gate at its clean value, minimising the loss "
              "over mutually orthogonal bases maximises sum_i max_k ||U_k^T x_i||^2 (K-subspace clustering; "
              "equivalently minimises sum_i min_k ||x_i - U_k U_k^T x_i||^2). The hard-max gate is the g -> 0 limit "
              "of the soft-max gate softmax_k(phi ||U_k^T x_t||^2), phi = s^2/(2 g^2 (s^2 + g^2)).",
    derive=derive,
    check=standard_check(errors_at, random_point),
)

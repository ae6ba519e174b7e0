"""Numeric cross-checks: lambdified formulas against mogsim's implementations at random float64 points.

Errors are relative, ``max|got - want| / max(max|want|, floor)``. The ``floor`` is the natural size of the
quantity (e.g. the data scale for a posterior mean, the size of the terms of ``(s D - x) / (s^2 sigma^2)`` for a
score), so a value that is 0 by cancellation is not judged by its last bits.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from mogsim.conventions import scaled_denoiser

from .core import NUMERIC_TOL, Check, Derivation, Point

ErrorsAt = Callable[[Derivation, Point], dict[str, float]]


def to_numpy(value: Any) -> np.ndarray:
    """A float64 numpy array from a tensor, array or number."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def rel_err(got: Any, want: Any, floor: float = 0.0) -> float:
    """``max|got - want| / max(max|want|, floor)``; 0 when both are exactly 0; NaN when shapes differ."""
    g, w = to_numpy(got).ravel(), to_numpy(want).ravel()
    if g.shape != w.shape:
        return float("nan")
    err = float(np.max(np.abs(g - w))) if g.size else 0.0
    scale = max(float(np.max(np.abs(w))) if w.size else 0.0, float(floor))
    if err == 0.0:
        return 0.0
    return err / scale if scale > 0 else float("inf")


def worst(a: float, b: float) -> float:
    """The larger error; NaN (a failed evaluation) wins."""
    return float("nan") if np.isnan(a) or np.isnan(b) else max(a, b)


def random_orthonormal(rng: np.random.Generator, n: int, r: int) -> np.ndarray:
    """An n x r matrix with orthonormal columns (QR of a Gaussian matrix)."""
    q, _ = np.linalg.qr(rng.standard_normal((n, r)))
    return q


def uniform_entries(rng: np.random.Generator, name: str, n: int, lo: float, hi: float) -> dict[str, float]:
    """Point entries ``{name}1 .. {name}{n}`` (the symbols of :func:`~.symbolic.vector`), each uniform in
    ``[lo, hi)``, drawn in that order."""
    return {f"{name}{i}": rng.uniform(lo, hi) for i in range(1, n + 1)}


def vector_from(point: Point, name: str, n: int) -> np.ndarray:
    """The n-vector stored in ``point`` under ``{name}1 .. {name}{n}``."""
    return np.array([point[f"{name}{i}"] for i in range(1, n + 1)], dtype=np.float64)


def basis_entries(name: str, basis: np.ndarray) -> dict[str, float]:
    """Point entries ``{name}{i}{j}`` (1-based) for the matrix ``basis``, matching :func:`orthonormal_basis`."""
    return {f"{name}{i + 1}{j + 1}": float(basis[i, j]) for i in range(basis.shape[0]) for j in range(basis.shape[1])}


def basis_from(point: Point, name: str, n: int, r: int) -> np.ndarray:
    """The n x r matrix stored in ``point`` under ``{name}{i}{j}``."""
    return np.array([[point[f"{name}{i}{j}"] for j in range(1, r + 1)] for i in range(1, n + 1)], dtype=np.float64)


def batch(x: Sequence[float] | np.ndarray) -> torch.Tensor:
    """One query as a (1, d) float64 tensor."""
    return torch.as_tensor(np.asarray(x, dtype=np.float64).reshape(1, -1))


def denoise_scaled(denoiser: Any, x: torch.Tensor, sigma: float, s: float) -> torch.Tensor:
    """mogsim's ``D_s(x_t) = D(x_t / s)`` for inputs ``x_t = s (x0 + sigma eps)``."""
    return scaled_denoiser(denoiser, s)(x, sigma)


def score_scaled(denoiser: Any, x: torch.Tensor, sigma: float, s: float) -> torch.Tensor:
    """``grad log p_t(x) = grad log p_sigma(x / s) / s``, p_t the law of ``s (x0 + sigma eps)`` (mogsim's score)."""
    return denoiser.score(x / s, sigma) / s


def log_density_scaled(denoiser: Any, x: torch.Tensor, sigma: float, s: float) -> torch.Tensor:
    """``log p_t(x) = log p_sigma(x / s) - d log s`` (change of variables)."""
    return denoiser.log_density(x / s, sigma) - x.shape[1] * np.log(s)


def numeric_checks(derivation: Derivation, errors_at: ErrorsAt, points: Sequence[Point],
                   tol: float = NUMERIC_TOL) -> list[Check]:
    """One numeric check per formula: its worst relative error over ``points``; a formula never compared fails."""
    largest: dict[str, float] = {name: 0.0 for name in derivation.formulas}
    compared: set[str] = set()
    for point in points:
        for name, err in errors_at(derivation, point).items():
            compared.add(name)
            largest[name] = worst(largest.get(name, 0.0), err)
    checks = []
    for name, formula in derivation.formulas.items():
        if name not in compared:
            checks.append(Check("numeric", f"{name}: no comparison with mogsim ran", False))
            continue
        err = largest[name]
        ok = bool(err < tol)
        detail = f"max rel err {err:.1e} over {len(points)} random float64 points (tol {tol:g})"
        checks.append(Check("numeric", f"{name} vs {formula.compared_with}", ok, detail))
    return checks

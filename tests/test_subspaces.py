"""Subspace estimators of paper 2 (PCA, K-subspaces) and distances; plus the hypothesis check of theory/ksubspaces.

* Distances: exact on known cases (same span, orthogonal spans), the cancellation-free form, best pairing.
* Noiseless MoLRG data: every estimator recovers the subspaces exactly (to 1e-9, float64) iff each component has
  N_k >= d points, and fails (error of order 1) below; K-subspaces without the orthogonality constraint cannot tell
  the true clustering from a wrong one at N_k = d (a fact of its objective).
* Degenerate inputs (zeros, duplicates, d = n), seeds, batch independence, one-line errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mogsim import MoLRG
from mogsim.errors import InputError
from mogsim.subspaces import (assign, completion_error, ksubspaces, matched_distance, pca, residuals,
                              subspace_distance)

FEW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EXACT = 1e-9


@pytest.fixture(autouse=True)
def _seeded():
    """Every test draws its unseeded tensors from the same global RNG state, whatever ran before it."""
    torch.manual_seed(0)


def _random_bases(n: int, d: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


# -- distances -------------------------------------------------------------------------------------------------------
def test_distance_of_known_pairs():
    u = _random_bases(10, 3, 0)
    rot, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))
    assert float(subspace_distance(u, u @ rot)) < 1e-14  # same span, other basis
    e = torch.eye(10, dtype=torch.float64)
    assert float(subspace_distance(e[:, :3], e[:, 3:6])) == pytest.approx(math.sqrt(6), abs=1e-14)
    assert float(subspace_distance(e[:, :3], e[:, 1:4])) == pytest.approx(math.sqrt(2), abs=1e-14)
    assert float(subspace_distance(e[:, :2], e[:, :3])) == pytest.approx(1.0, abs=1e-14)  # nested, d1 != d2


@FEW
@given(st.integers(2, 12), st.integers(1, 4), st.integers(0, 10**6))
def test_distance_matches_principal_angle_formula(n, d, seed):
    assume(d <= n)
    u, v = _random_bases(n, d, seed), _random_bases(n, d, seed + 1)
    cos2 = float((u.T @ v).pow(2).sum())
    assert float(subspace_distance(u, v)) == pytest.approx(math.sqrt(max(2 * d - 2 * cos2, 0.0)), abs=1e-7)
    assert float(subspace_distance(u, v)) == pytest.approx(float(subspace_distance(v, u)), abs=1e-15)


def test_matched_distance_finds_the_permutation():
    mol = MoLRG.random(20, 4, 3, seed=2)
    true = mol.bases
    perm = [2, 0, 3, 1]
    got = matched_distance(true[perm], true)
    assert got.max < 1e-14
    assert [perm[i] for i in got.perm] == [0, 1, 2, 3]  # estimate perm[k] holds true component k
    swapped = true.clone()
    swapped[0] = _random_bases(20, 3, 9)
    got = matched_distance(swapped, true)
    assert got.per_component[0] > 1.0 and got.per_component[1:].max() < 1e-14


def test_distances_reject_non_orthonormal_bases():
    with pytest.raises(InputError, match="orthonormal"):
        subspace_distance(torch.ones(4, 2, dtype=torch.float64), torch.eye(4, dtype=torch.float64)[:, :2])
    with pytest.raises(InputError, match="K, n, d"):
        matched_distance(torch.eye(4)[None, :, :2], torch.eye(4)[None, :, :2].expand(2, 4, 2))


# -- PCA (K = 1) ------------------------------------------------------------------------------------------------------
@FEW
@given(st.integers(1, 6), st.integers(1, 14), st.integers(0, 10**6))
def test_pca_recovers_exactly_iff_n_at_least_d(d, n_points, seed):
    n = 4 * d + 8  # room for the random completion to be far from the truth
    mol = MoLRG.random(n, 1, d, seed=seed)
    x, _ = mol.sample(n_points, seed=seed + 1)
    err = float(subspace_distance(pca(x, d, seed=seed), mol.bases[0]))
    if n_points >= d:
        assert err < EXACT
    else:
        assert err > 0.3


def test_pca_is_the_top_principal_subspace_of_uncentred_data():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((50, 6)) * np.array([5, 4, 3, 0.5, 0.4, 0.1]) + 3.0)
    u = pca(x, 2)
    evals, evecs = torch.linalg.eigh(x.T @ x)  # uncentred second moment (the model has zero mean)
    assert float(subspace_distance(u, evecs[:, -2:])) < 1e-10


def test_pca_degenerate_inputs():
    zeros = torch.zeros(5, 8, dtype=torch.float64)
    u = pca(zeros, 3, seed=1)  # nothing determined: a seeded random basis
    assert torch.allclose(u.T @ u, torch.eye(3, dtype=torch.float64), atol=1e-12)
    assert torch.equal(u, pca(zeros, 3, seed=1)) and not torch.equal(u, pca(zeros, 3, seed=2))
    mol = MoLRG.random(12, 1, 3, seed=0)
    x, _ = mol.sample(2, seed=0)
    dup = torch.cat([x, x, 2 * x])  # six points spanning two directions: not enough for d = 3
    assert float(subspace_distance(pca(dup, 3), mol.bases[0])) > 0.3
    full = pca(torch.randn(3, 5, dtype=torch.float64), 5)  # d = n: the whole space
    assert float(subspace_distance(full, torch.eye(5, dtype=torch.float64))) < 1e-12


def test_completion_error_matches_random_completions():
    n, d, n_k = 12, 4, 2
    mol = MoLRG.random(n, 1, d, seed=0)
    x, _ = mol.sample(n_k, seed=0)
    sq = [float(subspace_distance(pca(x, d, seed=s), mol.bases[0])) ** 2 for s in range(400)]
    assert math.sqrt(np.mean(sq)) == pytest.approx(completion_error(n, d, n_k), rel=0.05)
    assert completion_error(n, d, d) == completion_error(n, d, d + 3) == 0.0


# -- K-subspaces ------------------------------------------------------------------------------------------------------
@FEW
@given(st.integers(2, 3), st.integers(1, 6), st.integers(1, 9), st.integers(0, 10**6))
def test_ksubspaces_recovers_exactly_iff_every_component_has_d_points(k, d, n_k, seed):
    mol = MoLRG.random(48, k, d, seed=seed)
    x, _ = mol.sample(k * n_k, seed=seed + 1)
    res = ksubspaces(x, k, d, seed=seed)
    err = matched_distance(res.bases, mol.bases).max
    if n_k >= d:
        assert err < EXACT and float(res.residual) < 1e-20
    else:
        assert err > 0.3


def test_unconstrained_objective_cannot_identify_the_clustering_at_n_k_equal_d():
    """With N_k = d, any split into groups of d points fits exactly without the orthogonality constraint; with it,
    only the true split does."""
    d = 3
    mol = MoLRG.random(16, 2, d, seed=4)
    x, labels = mol.sample(2 * d, seed=5)
    wrong = torch.cat([torch.nonzero(labels == 0)[:2, 0], torch.nonzero(labels == 1)[:1, 0]])  # a mixed group of d
    rest = torch.tensor([i for i in range(2 * d) if i not in wrong.tolist()])
    groups = [pca(x[wrong], d), pca(x[rest], d)]
    fit = residuals(x, torch.stack(groups)).min(dim=-1).values.sum()
    assert float(fit) < 1e-20  # a perfect fit with wrong subspaces
    assert matched_distance(torch.stack(groups), mol.bases).max > 0.5
    overlap = float((groups[0].T @ groups[1]).abs().max())
    assert overlap > 1e-3  # ... that the orthogonality constraint rules out


def test_ksubspaces_free_recovers_from_d_plus_one_points():
    for seed in range(3):
        mol = MoLRG.random(48, 3, 4, seed=seed)
        x, _ = mol.sample(3 * 5, seed=seed)
        res = ksubspaces(x, 3, 4, orthogonal=False, seed=seed)
        assert matched_distance(res.bases, mol.bases).max < EXACT


def test_ksubspaces_labels_and_residual_are_consistent():
    mol = MoLRG.random(30, 3, 2, seed=1)
    x, labels = mol.sample(30, seed=2)
    res = ksubspaces(x, 3, 2, seed=0)
    assert torch.equal(res.labels, assign(x, res.bases))
    perm = matched_distance(res.bases, mol.bases).perm  # estimate perm[k] is true component k
    assert torch.equal(torch.as_tensor(perm)[labels], res.labels)
    assert float(res.residual) == pytest.approx(float(residuals(x, res.bases).min(-1).values.sum()), abs=1e-25)
    assert bool(res.converged) and int(res.iterations) >= 1


def test_ksubspaces_batch_is_independent_of_its_companions():
    mols = [MoLRG.random(24, 2, 3, seed=s) for s in range(3)]
    data = torch.stack([m.sample(2 * n_k, seed=s)[0] for s, (m, n_k) in enumerate(zip(mols, (2, 2, 2)))])
    together = ksubspaces(data, 2, 3, seed=[7, 8, 9])
    for b, s in enumerate((7, 8, 9)):
        alone = ksubspaces(data[b], 2, 3, seed=s)
        torch.testing.assert_close(alone.bases, together.bases[b], rtol=0, atol=1e-12)
        assert torch.equal(alone.labels, together.labels[b])


def test_ksubspaces_degenerate_and_bad_inputs():
    res = ksubspaces(torch.zeros(6, 10, dtype=torch.float64), 2, 2)  # nothing to cluster: still a valid answer
    assert torch.allclose(res.bases.transpose(-1, -2) @ res.bases, torch.eye(2, dtype=torch.float64), atol=1e-12)
    with pytest.raises(InputError, match="exceeds n"):
        ksubspaces(torch.randn(6, 10), 3, 4)
    with pytest.raises(InputError, match="d <= n"):
        ksubspaces(torch.randn(6, 10), 1, 11)
    with pytest.raises(InputError, match="restarts"):
        ksubspaces(torch.randn(6, 10), 2, 2, restarts=0)
    with pytest.raises(InputError, match="NaN"):
        pca(torch.full((3, 4), float("nan")), 2)
    with pytest.raises(InputError, match="shape"):
        pca(torch.randn(4), 1)
    with pytest.raises(InputError, match="K="):
        ksubspaces(torch.randn(6, 10), 0, 2)


# -- theory/ksubspaces.py: the derived formulas against mogsim at hypothesis points ------------------------------------
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_theory_ksubspaces_matches_mogsim(data):
    from mogsim.theory import NUMERIC_TOL
    from mogsim.theory import ksubspaces as result

    draw = data.draw
    floats = lambda lo, hi: st.floats(lo, hi, allow_nan=False, allow_infinity=False)  # noqa: E731
    m = np.array(draw(st.lists(floats(-1, 1), min_size=6, max_size=6))).reshape(3, 2)
    assume(np.linalg.svd(m, compute_uv=False).min() > 0.1)
    basis, _ = np.linalg.qr(m)
    point = {"s": draw(floats(0.3, 2)), "g": draw(floats(0.2, 3))}
    point.update({f"u{i + 1}{j + 1}": float(basis[i, j]) for i in range(3) for j in range(2)})
    point.update({f"{k}{i}": draw(floats(-3, 3)) for k in ("x", "y") for i in (1, 2, 3)})
    for key in ("x", "y"):  # the gate must be decided, not a tie
        v = np.array([point[f"{key}{i}"] for i in (1, 2, 3)])
        e = (basis.T @ v) ** 2
        assume(abs(e[0] - e[1]) > 1e-6 * (1 + v @ v))
    point.update(result.gates(point))
    derivation = result.derive()
    errs = result.errors_at(derivation, point)
    assert set(errs) == set(derivation.formulas)
    assert all(v < NUMERIC_TOL for v in errs.values()), errs

"""Metrics of the score-matching experiment: per-sigma errors, copies, reproducibility."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mogsim.closed_forms import EmpiricalDenoiser, MoLRG
from mogsim.metrics.copies import copy_fraction, nearest_two, nn_ratio
from mogsim.metrics.reproducibility import relative_distance, reproducibility, similarity
from mogsim.metrics.score_error import SigmaErrors, noisy_queries, sigma_errors



@pytest.fixture(scope="module")
def problem():
    mol = MoLRG.random(12, 2, 2, seed=3)
    train, _ = mol.sample(10, seed=4)
    return mol, train, EmpiricalDenoiser(train, compute_dtype=torch.float64)


SIGMAS = [2.0, 0.5, 0.1, 0.02]


def _errors(net, problem, x0=None):
    mol, train, emp = problem
    x0 = mol.sample(64, seed=5)[0] if x0 is None else x0
    return sigma_errors(net, mol, emp, noisy_queries(x0, SIGMAS, 64, seed=6), SIGMAS)


def test_truth_as_model_has_zero_error_to_truth(problem):
    mol, _, _ = problem
    err = _errors(mol, problem)
    assert np.all(err.l_score_true < 1e-20)
    assert err.total("true") < 1e-20
    assert np.all(err.l_score_emp > 1e-3)
    np.testing.assert_allclose(err.position, 1.0, atol=1e-9)
    assert np.all(err.offset < 1e-6 * np.sqrt(err.gap))


def test_empirical_as_model_has_zero_error_to_empirical(problem):
    _, train, emp = problem
    err = _errors(emp, problem, x0=train)
    assert np.all(err.l_score_emp < 1e-20)
    assert err.total("empirical") < 1e-20
    np.testing.assert_allclose(err.position, 0.0, atol=1e-9)


def test_position_of_a_mixture_is_its_weight(problem):
    mol, _, emp = problem

    def mix(x, s):
        return 0.3 * mol(x, s) + 0.7 * emp(x, s)

    err = _errors(mix, problem)
    np.testing.assert_allclose(err.position, 0.3, atol=1e-9)
    np.testing.assert_allclose(err.l_score_true, 0.49 * err.gap / err.norm_true, rtol=1e-9)


def test_total_is_sigma_weighted_ratio():
    err = SigmaErrors(np.array([1.0, 0.1]), np.array([1.0, 0.01]), np.array([2.0, 0.02]), np.array([1.0, 1.0]),
                      np.array([4.0, 4.0]), np.array([4.0, 4.0]))
    # sum e/s^2 = 1 + 1 = 2; sum norm/s^2 = 4 + 400 = 404
    assert err.total("true") == pytest.approx(2 / 404)
    assert err.total("true", mask=np.array([1.0, 0.0])) == pytest.approx(1 / 4)


def test_queries_are_seeded_and_shared():
    x0 = torch.randn(5, 3, dtype=torch.float64)
    a = noisy_queries(x0, [1.0, 0.1], 7, seed=1)
    b = noisy_queries(x0, [1.0, 0.1], 7, seed=1)
    c = noisy_queries(x0, [1.0, 0.1], 7, seed=2)
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_nn_ratio_copies_and_non_copies():
    train = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], dtype=torch.float64)
    samples = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0]], dtype=torch.float64)
    r = nn_ratio(samples, train)
    assert r[0] == 0 and r[1] == pytest.approx(0.1 / math.hypot(9.9, 0.0))
    assert r[2] == pytest.approx(1.0)
    assert copy_fraction(r) == pytest.approx(2 / 3)
    d1, d2, idx = nearest_two(samples, train)
    assert idx.tolist() == [0, 0, 0] or idx[2] in (1, 2)
    assert d1[1] == pytest.approx(0.1)


def test_nn_ratio_single_training_point():
    r = nn_ratio(torch.ones(3, 2), torch.zeros(1, 2))
    assert torch.all(r == 0)


def test_relative_distance_and_rp():
    a = torch.randn(1000, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    b = torch.randn(1000, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert torch.all(relative_distance(a, a) == 0)
    assert torch.allclose(relative_distance(a, -a), torch.full((1000,), 2.0, dtype=torch.float64))
    assert float(relative_distance(a, b).mean()) == pytest.approx(math.sqrt(2), rel=0.05)
    assert reproducibility(a, a) == 1.0
    assert reproducibility(a, b) < 0.01
    assert reproducibility(a, a + 0.01 * b) == 1.0
    assert torch.allclose(similarity(a, a), torch.ones(1000, dtype=torch.float64))
    assert relative_distance(torch.zeros(1, 3), torch.zeros(1, 3)).item() == 0


def _fake(position: float, offset_rel: float, sigmas=(1.0, 0.2, 0.05)) -> SigmaErrors:
    """SigmaErrors of a net at ``position`` along the emp->true segment with a perpendicular offset."""
    s = np.array(sigmas)
    gap = np.ones_like(s)
    off2 = (offset_rel**2) * gap
    e_emp = position**2 * gap + off2
    e_true = (1 - position) ** 2 * gap + off2
    return SigmaErrors(s, e_true, e_emp, gap, 4 * gap, 4 * gap)


@pytest.mark.parametrize("position, offset", [(0.02, 0.05), (0.97, 0.0), (0.5, 3.0), (-0.4, 0.2), (1.6, 1.0)])
def test_position_and_offset_recover_the_construction(position, offset):
    err = _fake(position, offset)
    assert np.allclose(err.position, position, rtol=0, atol=1e-12)
    assert np.allclose(err.offset, offset, rtol=0, atol=1e-7)
    assert np.allclose(err.l_score_true, (1 - position) ** 2 / 4 + offset**2 / 4)

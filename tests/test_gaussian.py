"""GaussianDenoiser against the textbook formula, its score against autograd, and its low-rank form."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, strategies as st

from mogsim import GaussianDenoiser, InputError
from reference import relative_error


def random_gaussian(seed: int, d: int, rank: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(d, generator=g, dtype=torch.float64)
    f = torch.randn(d, rank or d, generator=g, dtype=torch.float64)
    return mean, f @ f.T


@given(seed=st.integers(0, 10_000), d=st.integers(1, 12), log_sigma=st.floats(-3, 3))
def test_matches_direct_solve(seed, d, log_sigma):
    mean, cov = random_gaussian(seed, d)
    cov = cov + 0.1 * torch.eye(d, dtype=torch.float64)
    sigma = 10**log_sigma
    x = torch.randn(5, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 1))
    direct = mean + torch.linalg.solve(cov + sigma**2 * torch.eye(d, dtype=torch.float64), (x - mean).T).T @ cov.T
    assert relative_error(GaussianDenoiser(mean, cov)(x, sigma), direct) < 1e-10


@given(seed=st.integers(0, 10_000), log_sigma=st.floats(-2, 2))
def test_score_is_autograd_of_log_density(seed, log_sigma):
    mean, cov = random_gaussian(seed, 6, rank=3)
    den = GaussianDenoiser(mean, cov)
    x = torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(seed), requires_grad=True)
    (grad,) = torch.autograd.grad(den.log_density(x, 10**log_sigma).sum(), x)
    assert relative_error(den.score(x.detach(), 10**log_sigma), grad) < 1e-9
    assert relative_error(den.score(x.detach(), 10**log_sigma),
                          (den(x.detach(), 10**log_sigma) - x.detach()) / 10 ** (2 * log_sigma)) < 1e-6


def test_log_density_matches_torch_distribution():
    mean, cov = random_gaussian(1, 5)
    x = torch.randn(7, 5, dtype=torch.float64)
    ref = torch.distributions.MultivariateNormal(mean, cov + 0.25 * torch.eye(5, dtype=torch.float64)).log_prob(x)
    assert torch.allclose(GaussianDenoiser(mean, cov).log_density(x, 0.5), ref, rtol=1e-12, atol=1e-12)


def test_from_factor_equals_full_covariance():
    g = torch.Generator().manual_seed(3)
    mean = torch.randn(10, dtype=torch.float64, generator=g)
    f = torch.randn(10, 3, dtype=torch.float64, generator=g)
    x = torch.randn(6, 10, dtype=torch.float64, generator=g)
    low, full = GaussianDenoiser.from_factor(mean, f), GaussianDenoiser(mean, f @ f.T)
    for sigma in (1e-3, 0.3, 30.0):
        assert relative_error(low(x, sigma), full(x, sigma)) < 1e-10
        assert torch.allclose(low.log_density(x, sigma), full.log_density(x, sigma), rtol=1e-10)


def test_limits():
    mean, cov = random_gaussian(4, 4, rank=2)
    den = GaussianDenoiser(mean, cov)
    x = torch.randn(3, 4, dtype=torch.float64)
    assert relative_error(den(x, 1e6), mean.expand(3, 4)) < 1e-10
    # sigma -> 0: projection of x onto the support mean + range(cov)
    basis = torch.linalg.eigh(cov).eigenvectors[:, -2:]
    proj = mean + ((x - mean) @ basis) @ basis.T
    assert relative_error(den(x, 1e-6), proj) < 1e-9


def test_bad_covariance():
    with pytest.raises(InputError, match="expected"):
        GaussianDenoiser(torch.zeros(3), torch.eye(2))
    with pytest.raises(InputError, match="symmetric"):
        GaussianDenoiser(torch.zeros(2), torch.tensor([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(InputError, match="negative eigenvalue"):
        GaussianDenoiser(torch.zeros(2), -torch.eye(2))


def test_python_lists_keep_float64_precision():
    """Lists go through float64, not torch's float32 default (a bug found by the theory checks)."""
    g = GaussianDenoiser([0.1], [[0.7]])
    assert g.mean.item() == 0.1
    x = torch.tensor([[0.3]], dtype=torch.float64)
    exact = 0.1 + 0.7 / (0.7 + 0.25) * (0.3 - 0.1)
    assert abs(g(x, 0.5).item() - exact) < 1e-15

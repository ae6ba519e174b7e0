"""MoLRG: score vs autograd of log-density, denoiser vs Monte Carlo and vs the Gaussian case, sampling."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, strategies as st

from mogsim import GaussianDenoiser, InputError, MoLRG
from reference import relative_error


def test_random_bases_are_orthonormal_and_mutually_orthogonal():
    mix = MoLRG.random(12, 3, 4, seed=5)
    u = mix.bases.permute(1, 0, 2).reshape(12, 12)  # all blocks side by side
    assert torch.allclose(u.T @ u, torch.eye(12, dtype=torch.float64), atol=1e-12)
    assert torch.equal(MoLRG.random(12, 3, 4, seed=5).bases, mix.bases)
    assert not torch.equal(MoLRG.random(12, 3, 4, seed=6).bases, mix.bases)


def test_random_refuses_too_many_dimensions():
    with pytest.raises(InputError, match="exceeds n = 10"):
        MoLRG.random(10, 3, 4)


@given(seed=st.integers(0, 1000), k=st.integers(1, 3), r=st.integers(1, 3), eta=st.sampled_from([0.0, 0.3]),
       log_sigma=st.floats(-3, 3), unequal=st.booleans())
def test_score_is_autograd_of_log_density(seed, k, r, eta, log_sigma, unequal):
    weights = [1.0 + i for i in range(k)] if unequal else None
    mix = MoLRG.random(9, k, r, seed=seed, weights=weights, noise_std=eta)
    sigma = 10**log_sigma
    x = mix.sample(5, seed=seed)[0] + sigma * torch.randn(5, 9, dtype=torch.float64,
                                                          generator=torch.Generator().manual_seed(seed))
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(mix.log_density(x, sigma).sum(), x)
    assert relative_error(mix.score(x.detach(), sigma), grad) < 1e-8
    assert relative_error(mix.score(x.detach(), sigma), (mix(x.detach(), sigma) - x.detach()) / sigma**2) < 1e-6


def test_single_component_equals_gaussian():
    mix = MoLRG.random(8, 1, 3, seed=1, noise_std=0.2)
    u = mix.bases[0]
    gauss = GaussianDenoiser(torch.zeros(8, dtype=torch.float64), u @ u.T + 0.04 * torch.eye(8, dtype=torch.float64))
    x = torch.randn(6, 8, dtype=torch.float64)
    for sigma in (1e-3, 0.1, 1.0, 50.0):
        assert relative_error(mix(x, sigma), gauss(x, sigma)) < 1e-10
        assert torch.allclose(mix.log_density(x, sigma), gauss.log_density(x, sigma), rtol=1e-12)


def test_denoiser_matches_monte_carlo_posterior_mean():
    """E[x0 | x] by self-normalised importance sampling from the prior, at a few query points."""
    mix = MoLRG.random(6, 2, 2, seed=3, weights=[0.3, 0.7])
    sigma = 0.8
    x0, _ = mix.sample(400_000, seed=11, balanced=False)
    queries = mix.sample(3, seed=12)[0] + sigma * torch.randn(3, 6, dtype=torch.float64)
    for q in queries:
        logw = -((x0 - q) ** 2).sum(1) / (2 * sigma**2)
        w = torch.softmax(logw, 0)
        mc = w @ x0
        ess = 1.0 / (w * w).sum()
        tol = 6.0 * float(torch.sqrt((w[:, None] * (x0 - mc) ** 2).sum(0).sum() / ess))
        assert float((mix(q[None], sigma)[0] - mc).norm()) < tol


def test_sample_covariance_and_balance():
    mix = MoLRG.random(10, 2, 3, seed=2)
    x, labels = mix.sample(40_000, seed=0)
    assert torch.equal(labels.bincount(), torch.tensor([20_000, 20_000]))
    expected = sum(0.5 * b @ b.T for b in mix.bases)
    assert torch.allclose(x.T @ x / x.shape[0], expected, atol=0.03)
    for k in range(2):  # every sample lies on its own subspace
        pts = x[labels == k]
        proj = pts @ mix.bases[k] @ mix.bases[k].T
        assert torch.allclose(proj, pts, atol=1e-12)
    assert float(mix.subspace_residual(x).max()) < 1e-12


def test_unequal_weights_balanced_counts():
    mix = MoLRG.random(6, 3, 2, seed=0, weights=[1, 2, 3])
    _, labels = mix.sample(61, seed=1)
    assert labels.bincount().tolist() == [10, 20, 31] or labels.bincount().tolist() == [10, 21, 30]
    assert labels.numel() == 61


def test_stable_at_extreme_sigmas():
    mix = MoLRG.random(48, 2, 4, seed=0)
    x = mix.sample(8, seed=1)[0]
    for sigma in (1e-6, 1e-4, 1e4, 1e6):
        for out in (mix(x, sigma), mix.score(x, sigma), mix.log_density(x, sigma)):
            assert torch.isfinite(out).all()
    assert relative_error(mix(x, 1e-6), x) < 1e-9  # sigma -> 0: points on the support are fixed
    assert float(mix(x, 1e6).abs().max()) < 1e-10  # sigma -> infinity: the mean, 0


def test_log_density_normalised_in_two_dimensions():
    mix = MoLRG.random(2, 2, 1, seed=0, weights=[0.25, 0.75])
    g = torch.linspace(-9, 9, 801, dtype=torch.float64)
    xx, yy = torch.meshgrid(g, g, indexing="ij")
    dens = mix.log_density(torch.stack([xx.reshape(-1), yy.reshape(-1)], 1), 0.7).exp().reshape(801, 801)
    total = torch.trapezoid(torch.trapezoid(dens, g, dim=1), g)
    assert math.isclose(float(total), 1.0, rel_tol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    ({"bases": torch.ones(1, 3, 2)}, "orthonormal"),
    ({"bases": torch.eye(3)[None, :, :2], "weights": [1, 2]}, "1 positive"),
    ({"bases": torch.eye(3)[None, :, :2], "noise_std": -1}, "noise_std"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(InputError, match=message):
        MoLRG(**kwargs)

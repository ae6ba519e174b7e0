"""Closed forms at noise levels where sigma^2 under- or overflows float64 (sigma = 1e-300, 1e300): the denoisers
return their exact limits (nearest point / projection onto the support at sigma -> 0; the mean at sigma -> oo),
never NaN, and log-densities are the finite limits where those are representable."""

from __future__ import annotations

import math

import pytest
import torch

from mogsim import EmpiricalDenoiser, GaussianDenoiser, MoLRG
from reference import relative_error

TINY, HUGE = 1e-300, 1e300


def _queries(train: torch.Tensor, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return train[:4] + 0.05 * torch.randn(4, train.shape[1], dtype=torch.float64, generator=g)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_empirical_limits(dtype):
    train = torch.randn(20, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    den = EmpiricalDenoiser(train)
    x = _queries(train).to(dtype)
    tol = 1e-15 if dtype == torch.float64 else 3e-7  # float32: the rounding of (y - mean) + mean
    assert relative_error(den(x, TINY), train[den.nearest(x)].to(dtype)) < tol
    assert relative_error(den(x, HUGE), train.mean(0).expand(4, 6).to(dtype)) < tol
    for sigma in (TINY, 1e-160, 1e-30, HUGE):  # no NaN anywhere along the way
        assert bool(torch.isfinite(den(x, sigma)).all())


def test_empirical_log_density_limits():
    train = torch.randn(20, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    den = EmpiricalDenoiser(train)
    d, n = 6, 20
    # on a training point: log(1/N) - d/2 log(2 pi sigma^2), finite (about +8290 at 1e-300)
    on_point = den.log_density(train[:3], TINY)
    expected = -math.log(n) - 0.5 * d * (math.log(2 * math.pi) + 2 * math.log(TINY))
    assert torch.allclose(on_point, torch.full((3,), expected, dtype=torch.float64), rtol=1e-14)
    # off the points: -||x - y||^2 / (2 sigma^2) is beyond float64, so -inf (the honest float64 answer)
    assert bool((den.log_density(_queries(train), TINY) == -math.inf).all())
    # far noise: every point equally likely, log p = -d/2 log(2 pi sigma^2) - log-mean-exp of a vanishing term
    far = den.log_density(_queries(train), HUGE)
    assert torch.allclose(far, torch.full((4,), -0.5 * d * (math.log(2 * math.pi) + 2 * math.log(HUGE)),
                                          dtype=torch.float64), rtol=1e-15)


def test_molrg_limits():
    mix = MoLRG.random(8, 2, 2, seed=0, weights=[0.3, 0.7])
    train, _ = mix.sample(6, seed=1)
    x = _queries(train)
    bases = mix.bases
    best = mix.posterior_weights(x, 1e-3).argmax(dim=1)  # the nearest subspace
    proj = torch.einsum("bnr,bmr,bm->bn", bases[best], bases[best], x)
    assert relative_error(mix(x, TINY), proj) < 1e-14
    assert torch.equal(mix.posterior_weights(x, TINY).argmax(dim=1), best)
    assert float(mix(x, HUGE).abs().max()) == 0.0  # P x / (1 + 1e600)
    assert torch.allclose(mix.posterior_weights(x, HUGE), mix.weights.expand(4, 2), rtol=1e-15)
    # off every subspace, -||x - P x||^2 / (2 sigma^2) is beyond float64: -inf, the honest float64 answer
    assert bool((mix.log_density(x, TINY) == -math.inf).all())
    far = mix.log_density(x, HUGE)
    assert torch.allclose(far, torch.full((4,), -4 * math.log(2 * math.pi) - 8 * math.log(HUGE),
                                          dtype=torch.float64), rtol=1e-15)
    assert bool(torch.isfinite(mix.score(x, HUGE)).all())


def test_molrg_log_density_on_a_subspace_stays_finite():
    """Axis-aligned subspaces, so the residual of a point on one is exactly 0 in float64: at sigma = 1e-300,
    log p = log pi_k + log N(U_k^T x; 0, I_r) - (n - r) log(sqrt(2 pi) sigma), about +4140 here."""
    eye = torch.eye(8, dtype=torch.float64)
    mix = MoLRG(torch.stack([eye[:, :2], eye[:, 2:4]]), weights=[0.3, 0.7])
    x = torch.zeros(3, 8, dtype=torch.float64)
    x[:, 2:4] = torch.tensor([[0.5, -1.0], [2.0, 0.25], [0.0, 1.5]], dtype=torch.float64)
    coef = x[:, 2:4]
    expected = (math.log(0.7) - 0.5 * 8 * math.log(2 * math.pi) - 0.5 * (coef * coef).sum(1) - 6 * math.log(TINY))
    assert torch.allclose(mix.log_density(x, TINY), expected, rtol=1e-14)
    assert torch.equal(mix(x, TINY), x)


@pytest.mark.parametrize("low_rank", [False, True])
def test_gaussian_limits(low_rank):
    g = torch.Generator().manual_seed(3)
    mean = torch.randn(5, dtype=torch.float64, generator=g)
    factor = torch.randn(5, 2, dtype=torch.float64, generator=g)
    den = (GaussianDenoiser.from_factor(mean, factor) if low_rank else
           GaussianDenoiser(mean, factor @ factor.T + 0.1 * torch.eye(5, dtype=torch.float64)))
    x = mean + torch.randn(4, 5, dtype=torch.float64, generator=g)
    q, _ = torch.linalg.qr(factor)
    support = mean + (x - mean) @ q @ q.T if low_rank else x
    assert relative_error(den(x, TINY), support) < 1e-12
    assert relative_error(den(x, HUGE), mean.expand(4, 5)) < 1e-15
    assert bool(torch.isfinite(den.score(x, HUGE)).all()) and float(den.score(x, HUGE).abs().max()) < 1e-300
    if low_rank:  # a point exactly on an axis-aligned support: log p stays finite at 1e-300 (about +2070)
        axis = GaussianDenoiser.from_factor(torch.zeros(5), torch.eye(5, dtype=torch.float64)[:, :2] * 2.0)
        on = torch.zeros(3, 5, dtype=torch.float64)
        on[:, :2] = torch.tensor([[1.0, -2.0], [0.5, 0.0], [3.0, 1.0]], dtype=torch.float64)
        expected = (-0.5 * (on * on).sum(1) / 4 - 2 * math.log(2.0) - 2.5 * math.log(2 * math.pi)
                    - 3 * math.log(TINY))
        assert torch.allclose(axis.log_density(on, TINY), expected, rtol=1e-14)
    far = den.log_density(x, HUGE)
    assert torch.allclose(far, torch.full((4,), -2.5 * math.log(2 * math.pi) - 5 * math.log(HUGE),
                                          dtype=torch.float64), rtol=1e-15)

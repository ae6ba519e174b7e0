"""EDM grid, per-seed noise, and the deterministic Euler/Heun sampler over closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mogsim import EmpiricalDenoiser, GaussianDenoiser, InputError, MoLRG, edm_sigmas, noise_for_seeds, sample


def test_edm_grid_values():
    s = edm_sigmas()
    assert s.shape == (19,) and s.dtype == torch.float64
    expected_head = [80.0, 57.586, 40.786, 28.375]
    assert np.allclose(s[:4].numpy(), expected_head, atol=1e-3)
    assert np.allclose(s[-3:].numpy(), [0.0075, 0.002, 0.0], atol=5e-5)
    assert s[-2] == pytest.approx(0.002, rel=1e-12) and s[-1] == 0.0
    assert bool((s[1:] < s[:-1]).all())


@pytest.mark.parametrize("kwargs", [{"steps": 0}, {"sigma_min": 0.0}, {"sigma_min": 5.0, "sigma_max": 1.0},
                                    {"rho": -1.0}])
def test_edm_grid_bad_arguments(kwargs):
    with pytest.raises(InputError):
        edm_sigmas(**kwargs)


def test_noise_depends_only_on_seed():
    a = noise_for_seeds([3, 7, 11], (2, 5))
    b = noise_for_seeds([11], (2, 5))
    c = noise_for_seeds([7, 3], (2, 5), dtype=torch.float64)
    assert torch.equal(a[2], b[0])
    assert torch.equal(a[1], c[0].float()) and torch.equal(a[0], c[1].float())
    assert a.dtype == torch.float32 and a.shape == (3, 2, 5)
    big = noise_for_seeds(range(2000), (64,), dtype=torch.float64)
    assert abs(float(big.mean())) < 0.01 and abs(float(big.std()) - 1) < 0.01


def test_noise_rejects_bad_seeds():
    for bad in ([-1], [1.5], []):
        with pytest.raises(InputError):
            noise_for_seeds(bad, (3,))


class CountingDenoiser:
    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def __call__(self, x, sigma):
        self.calls += 1
        return self.inner(x, sigma)


@pytest.mark.parametrize("solver, calls", [("heun", 35), ("euler", 18)])
def test_number_of_denoiser_calls(solver, calls):
    den = CountingDenoiser(MoLRG.random(6, 2, 2, seed=0))
    sample(den, noise_for_seeds(range(4), (6,), dtype=torch.float64), edm_sigmas(18), solver)
    assert den.calls == calls


def test_empirical_samples_end_on_training_points_and_repeat_exactly():
    train = torch.from_numpy(np.random.default_rng(0).standard_normal((32, 3, 4, 4)))
    den = EmpiricalDenoiser(train)
    seeds = list(range(40))
    noise = noise_for_seeds(seeds, (3, 4, 4), dtype=torch.float64)
    out1 = sample(den, noise, edm_sigmas(), "heun")
    out2 = sample(den, noise_for_seeds(seeds, (3, 4, 4), dtype=torch.float64), edm_sigmas(), "heun")
    assert torch.equal(out1, out2)
    nearest = den.nearest(out1)
    dist = (out1 - train[nearest]).flatten(1).norm(dim=1)
    assert float(dist.max()) < 1e-3


def test_same_seeds_same_samples_in_any_batch_size():
    train = torch.from_numpy(np.random.default_rng(1).standard_normal((50, 12)))
    den = EmpiricalDenoiser(train)
    seeds = list(range(17))
    whole = sample(den, noise_for_seeds(seeds, (12,), dtype=torch.float64))
    for size in (1, 4, 5):
        parts = torch.cat([sample(den, noise_for_seeds(seeds[i:i + size], (12,), dtype=torch.float64))
                           for i in range(0, len(seeds), size)])
        assert torch.equal(whole, parts)  # bitwise: the empirical denoiser is batch-invariant on the CPU
    mix = MoLRG.random(12, 2, 3, seed=0)
    whole = sample(mix, noise_for_seeds(seeds, (12,), dtype=torch.float64))
    ones = torch.cat([sample(mix, noise_for_seeds([s], (12,), dtype=torch.float64)) for s in seeds])
    assert torch.allclose(whole, ones, rtol=0, atol=1e-13)  # BLAS picks other kernels for batch 1


def test_molrg_samples_lie_on_subspaces():
    mix = MoLRG.random(16, 3, 2, seed=4)
    out = sample(mix, noise_for_seeds(range(64), (16,), dtype=torch.float64), edm_sigmas(), "heun")
    assert float(mix.subspace_residual(out).max()) < 1e-6


def test_gaussian_sampler_transports_the_distribution():
    """Heun on a 1-D Gaussian: the exact flow maps N(0, 1 + 80^2) to N(mu, s^2); check the sample moments."""
    den = GaussianDenoiser(torch.tensor([1.5], dtype=torch.float64), torch.tensor([[0.25]], dtype=torch.float64))
    out = sample(den, noise_for_seeds(range(4000), (1,), dtype=torch.float64), edm_sigmas(40), "heun")
    assert abs(float(out.mean()) - 1.5) < 0.03 and abs(float(out.std()) - 0.5) < 0.02


def test_trajectory_and_progress():
    mix = MoLRG.random(4, 1, 2, seed=0)
    ticks = []
    x, traj = sample(mix, noise_for_seeds([0, 1], (4,), dtype=torch.float64), edm_sigmas(5), "euler",
                     progress=ticks.append, return_trajectory=True)
    assert traj.shape == (6, 2, 4) and torch.equal(traj[-1], x) and sum(ticks) == 5
    assert torch.allclose(traj[0], 80 * noise_for_seeds([0, 1], (4,), dtype=torch.float64))


def test_sampler_bad_arguments():
    mix = MoLRG.random(4, 1, 2, seed=0)
    z = noise_for_seeds([0], (4,), dtype=torch.float64)
    with pytest.raises(InputError, match="solver"):
        sample(mix, z, edm_sigmas(), "rk4")
    with pytest.raises(InputError, match="decreasing"):
        sample(mix, z, [1.0, 2.0, 0.0])


def test_sampler_runs_on_cuda(cuda):
    train = torch.randn(64, 8, dtype=torch.float64)
    seeds = list(range(16))
    cpu = sample(EmpiricalDenoiser(train), noise_for_seeds(seeds, (8,), dtype=torch.float64))
    gpu = sample(EmpiricalDenoiser(train.to(cuda)), noise_for_seeds(seeds, (8,), dtype=torch.float64, device=cuda))
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-10)

"""Jacobian of a denoiser and its numerical rank (mogsim.metrics.jacobian; paper 2, Fig. 3).

* The forward-mode Jacobian equals autograd's reverse-mode Jacobian (float64 closed form, a float32 network).
* Known answers: a linear denoiser of known singular values, the identity, zero, the data mean, projections; the
  rank rule's edges; no spectrum's rank exceeds a flat one's.
* The Gaussian closed form's Jacobian spectrum equals the forward-mode one.
* The MoLRG closed form has rank d at high SNR and K d at low SNR, on random MoLRGs; the same along trajectories.
* A sample's Jacobian does not depend on its batch or on the chunking; bad inputs are one-line errors.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mogsim import EmpiricalDenoiser, GaussianDenoiser, MoLRG, noise_for_seeds
from mogsim.errors import InputError
from mogsim.metrics.jacobian import (denoiser_jacobian, jacobian_rank, numerical_rank, singular_values,
                                     trajectory_ranks)
from mogsim.nets import MLP, PreconditionedDenoiser, build_network
from mogsim.nets.lowrank import LowRankDenoiser

FEW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def _seeded():
    """Every test draws its unseeded tensors from the same global RNG state, whatever ran before it."""
    torch.manual_seed(0)


def _autograd_jacobian(denoiser, x: torch.Tensor, sigma: float) -> torch.Tensor:
    return torch.stack([torch.autograd.functional.jacobian(lambda z: denoiser(z[None], sigma)[0], x[i])
                        for i in range(x.shape[0])])


def test_jacobian_matches_autograd_for_the_closed_form_and_a_network():
    mol = MoLRG.random(12, 2, 3, seed=0)
    x0, _ = mol.sample(4, seed=1)
    for sigma in (0.01, 0.5, 20.0):
        x = x0 + sigma * torch.randn(4, 12, dtype=torch.float64)
        torch.testing.assert_close(denoiser_jacobian(mol, x, sigma), _autograd_jacobian(mol, x, sigma),
                                   rtol=1e-10, atol=1e-13)
    torch.manual_seed(0)
    net = PreconditionedDenoiser(MLP(6, width=16, depth=2)).eval()
    x = torch.randn(3, 6)
    torch.testing.assert_close(denoiser_jacobian(net, x, 0.7), _autograd_jacobian(net, x, 0.7).detach(),
                               rtol=1e-4, atol=1e-6)
    low = LowRankDenoiser(12, 2, 3, dtype=torch.float64)
    torch.testing.assert_close(denoiser_jacobian(low, x0, 0.3), _autograd_jacobian(low, x0, 0.3).detach(),
                               rtol=1e-10, atol=1e-13)


def test_jacobian_of_a_unet_with_attention():
    """Attention runs through forward-mode AD: torch's fused kernels (flash on CPU for contiguous inputs, flash and
    memory-efficient on CUDA) have no JVP, so the Jacobian uses the math backend."""
    def attend(x: torch.Tensor, sigma) -> torch.Tensor:  # (B, 24) as 6 tokens of 4 features, contiguous
        tokens = x.reshape(-1, 1, 6, 4).contiguous()
        return torch.nn.functional.scaled_dot_product_attention(tokens, tokens, tokens).reshape(-1, 24)

    x = torch.randn(2, 24, dtype=torch.float64)
    torch.testing.assert_close(denoiser_jacobian(attend, x, 1.0), _autograd_jacobian(attend, x, 1.0),
                               rtol=1e-10, atol=1e-12)
    net = build_network("unet-tiny", (3, 4, 4), channel_mult=(1, 2), attn_resolutions=(4,))
    den = PreconditionedDenoiser(net).eval()
    x = torch.randn(2, 3, 4, 4)
    ref = _autograd_jacobian(den, x, 0.5).detach().reshape(2, 48, 48)
    torch.testing.assert_close(denoiser_jacobian(den, x, 0.5, max_batch=40), ref, rtol=1e-4, atol=1e-5)


def test_linear_denoiser_of_known_spectrum():
    q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    spectrum = torch.tensor([4.0, 3.0, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    a = q @ torch.diag(spectrum) @ q.T

    def linear(x, sigma):
        return x @ a.T

    x = torch.randn(2, 6, dtype=torch.float64)
    jac = denoiser_jacobian(linear, x, 1.0)
    torch.testing.assert_close(jac, a.expand(2, 6, 6), rtol=0, atol=1e-14)
    torch.testing.assert_close(singular_values(jac)[0, :2], spectrum[:2], rtol=0, atol=1e-13)
    # ||J||_F = 5: the top value holds 4/5 = 0.8 of the norm, both hold all of it
    assert jacobian_rank(linear, x, 1.0, energy=0.79).tolist() == [1, 1]
    assert jacobian_rank(linear, x, 1.0, energy=0.81).tolist() == [2, 2]
    assert jacobian_rank(linear, x, 1.0, energy=1.0).tolist() == [2, 2]


def test_rank_rule_on_known_spectra():
    equal = torch.ones(48, dtype=torch.float64)
    # sqrt(k / 48) >= 0.99 first at k = 48 (0.9801 * 48 = 47.04): the identity keeps full rank
    assert int(numerical_rank(equal)) == 48
    assert int(numerical_rank(torch.cat([torch.ones(5), torch.zeros(43)]).double())) == 5
    assert int(numerical_rank(torch.zeros(10, dtype=torch.float64))) == 0
    # the rule is on the norm, not its square: 0.99 of the norm is 0.9801 of the squared sum
    s = torch.tensor([math.sqrt(0.98), math.sqrt(0.02)], dtype=torch.float64)
    assert int(numerical_rank(s, 0.99)) == 2 and int(numerical_rank(s, 0.98)) == 1
    assert numerical_rank(torch.ones(3, 4, dtype=torch.float64)).tolist() == [4, 4, 4]


def test_degenerate_denoisers():
    x = torch.randn(3, 10, dtype=torch.float64)
    mean = torch.randn(10, dtype=torch.float64)
    assert jacobian_rank(lambda z, s: z * 1.0, x, 1.0).tolist() == [10, 10, 10]  # identity: all directions
    assert jacobian_rank(lambda z, s: mean.expand_as(z) + 0 * z, x, 1.0).tolist() == [0, 0, 0]  # the data mean
    assert jacobian_rank(lambda z, s: 0 * z, x, 1.0).tolist() == [0, 0, 0]
    data = torch.randn(5, 10, dtype=torch.float64)
    emp = EmpiricalDenoiser(data)
    # the empirical optimum snaps to the nearest point at small sigma (J = 0) and tends to the mean at large sigma,
    # with a Jacobian inside the data's span (rank <= N - 1)
    assert jacobian_rank(emp, data + 1e-3 * torch.randn(5, 10, dtype=torch.float64), 1e-3).tolist() == [0] * 5
    assert max(jacobian_rank(emp, 50 * torch.randn(5, 10, dtype=torch.float64), 50.0).tolist()) <= 4


def test_identity_and_projections_of_an_image_shape():
    """On a 3x8x8 sample (n = 192) the 0.99-of-the-norm rule keeps ceil(0.9801 r) of r equal singular values: the
    identity has rank 189 (all 192 with energy 1), an orthogonal projection (of any scale) of rank 5 has 5, one of
    rank 60 has 59 (0.9801 * 60 = 58.8)."""
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    assert jacobian_rank(lambda z, s: z * 1.0, x, 0.5).tolist() == [189, 189]
    assert jacobian_rank(lambda z, s: z * 1.0, x, 0.5, energy=1.0).tolist() == [192, 192]
    for r, expected in ((5, 5), (60, 59)):
        u, _ = torch.linalg.qr(torch.randn(192, r, dtype=torch.float64))
        for scale in (1.0, 1e-3):
            def project(z, s, u=u, scale=scale):
                return scale * ((z.reshape(-1, 192) @ u) @ u.T).reshape(z.shape)

            assert jacobian_rank(project, x, 0.5).tolist() == [expected, expected]
            assert jacobian_rank(project, x, 0.5, energy=1.0).tolist() == [r, r]


@FEW
@given(st.integers(0, 10**6), st.sampled_from((0.002, 0.3, 1.0, 80.0)), st.booleans())
def test_gaussian_jacobian_spectrum_matches_forward_mode(seed, sigma, low_rank):
    """GaussianDenoiser.jacobian_singular_values (lam / (lam + sigma^2), the same at every x) equals the singular
    values of the forward-mode Jacobian at random points, for a full and a low-rank (thin factor) covariance."""
    gen = torch.Generator().manual_seed(seed)
    factor = torch.randn(12, 5 if low_rank else 20, generator=gen, dtype=torch.float64)
    factor = factor * torch.logspace(0, -3, factor.shape[1], dtype=torch.float64)  # a decaying spectrum
    mean = torch.randn(3, 2, 2, generator=gen, dtype=torch.float64)
    gauss = GaussianDenoiser.from_factor(mean, factor) if low_rank else GaussianDenoiser(mean, factor @ factor.T)
    x = 3 * torch.randn(4, 3, 2, 2, generator=gen, dtype=torch.float64)
    values = gauss.jacobian_singular_values(sigma)
    assert values.shape == (12,) and bool((values[:-1] >= values[1:]).all())
    lam = gauss.eigenvalues
    torch.testing.assert_close(lam, torch.linalg.eigvalsh(gauss.cov).flip(0).clamp_min(0), rtol=1e-9, atol=1e-12)
    # squares: the Gram route's zero singular values are square roots of ~1e-16 round-off
    torch.testing.assert_close(singular_values(denoiser_jacobian(gauss, x, sigma)) ** 2, values.expand(4, 12) ** 2,
                               rtol=1e-9, atol=1e-12)
    assert jacobian_rank(gauss, x, sigma).tolist() == [int(numerical_rank(values))] * 4
    with pytest.raises(InputError, match="sigma"):
        gauss.jacobian_singular_values(0.0)


@FEW
@given(st.integers(1, 4000), st.integers(0, 10**6), st.floats(0.5, 1.0))
def test_no_spectrum_outranks_a_flat_one(n, seed, energy):
    """The top k of n singular values hold at least k / n of the squared norm, so no Jacobian's numerical rank
    exceeds the identity's, ceil(energy^2 n) (3,011 of 3,072 at 0.99): the ceiling of the figures' rank axis."""
    flat = int(numerical_rank(torch.ones(n, dtype=torch.float64), energy))
    gen = torch.Generator().manual_seed(seed)
    spectrum = torch.rand(n, generator=gen, dtype=torch.float64).pow(3).sort(descending=True).values
    assert int(numerical_rank(spectrum, energy)) <= flat
    for size, ceiling in ((48, 48), (60, 59), (192, 189), (3072, 3011)):  # ceil(0.9801 n)
        assert int(numerical_rank(torch.ones(size, dtype=torch.float64))) == ceiling


@FEW
@given(st.sampled_from((16, 32, 48)), st.integers(1, 3), st.integers(1, 6), st.integers(0, 10**6))
def test_closed_form_rank_is_d_at_high_snr_and_kd_at_low_snr(n, k, d, seed):
    if k * d > n:
        d = n // k
    mol = MoLRG.random(n, k, d, seed=seed)
    x0, _ = mol.sample(6, seed=seed + 1)
    gen = torch.Generator().manual_seed(seed)
    high = x0 + 1e-3 * torch.randn(6, n, generator=gen, dtype=torch.float64)
    assert jacobian_rank(mol, high, 1e-3).tolist() == [d] * 6
    low = 80.0 * torch.randn(6, n, generator=gen, dtype=torch.float64)
    assert jacobian_rank(mol, low, 80.0).tolist() == [k * d] * 6


def test_ranks_along_trajectories():
    mol = MoLRG.random(48, 2, 3, seed=2)
    noise = noise_for_seeds(range(6), (48,), dtype=torch.float64)
    tr = trajectory_ranks(mol, noise)
    assert tr.ranks.shape == (18, 6) and tr.sigmas[0] == 80.0 and float(tr.sigmas[-1]) == pytest.approx(0.002)
    assert tr.ranks[0].tolist() == [6] * 6 and tr.ranks[-1].tolist() == [3] * 6
    assert bool((tr.ranks[1:] <= tr.ranks[:-1] + 0).all())  # for the closed form, the rank only falls with sigma
    assert tr.dtype == "float64" and tr.dim == 48 and tr.solver == "heun"
    assert torch.allclose(tr.relative, tr.ranks.double() / 48)
    rows = tr.rows()
    assert len(rows) == 18 * 6 and rows[0]["snr"] == pytest.approx(1 / 80)
    untrained = LowRankDenoiser(48, 2, 3, seed=0, dtype=torch.float64)  # random bases: the same structure
    assert trajectory_ranks(untrained, noise[:2], solver="euler").ranks[0].tolist() == [6, 6]


def test_jacobian_is_independent_of_batch_and_chunking():
    mol = MoLRG.random(20, 3, 2, seed=3)
    x0, _ = mol.sample(5, seed=4)
    x = x0 + 0.4 * torch.randn(5, 20, dtype=torch.float64)
    sig = torch.tensor([0.1, 0.4, 1.0, 3.0, 0.4], dtype=torch.float64)
    full = denoiser_jacobian(mol, x, sig)
    torch.testing.assert_close(denoiser_jacobian(mol, x, sig, max_batch=7), full, rtol=0, atol=1e-15)
    for i in range(5):
        torch.testing.assert_close(denoiser_jacobian(mol, x[i:i + 1], sig[i:i + 1])[0], full[i], rtol=1e-12,
                                   atol=1e-14)
    assert jacobian_rank(mol, x, sig).tolist() == [int(jacobian_rank(mol, x[i:i + 1], sig[i:i + 1])) for i in range(5)]


def test_bad_inputs():
    mol = MoLRG.random(8, 2, 2, seed=0)
    x = torch.randn(2, 8, dtype=torch.float64)
    for energy in (0, 1.5, -0.1, float("nan")):
        with pytest.raises(InputError, match="energy"):
            jacobian_rank(mol, x, 1.0, energy=energy)
    with pytest.raises(InputError, match="sigma"):
        jacobian_rank(mol, x, -1.0)
    with pytest.raises(InputError, match="sigma has shape"):
        jacobian_rank(mol, x, torch.ones(3))
    with pytest.raises(InputError, match="floating-point"):
        jacobian_rank(mol, torch.ones(2, 8, dtype=torch.int64), 1.0)
    with pytest.raises(InputError, match="max_batch"):
        jacobian_rank(mol, x, 1.0, max_batch=0)


@FEW
@given(st.integers(2, 40), st.integers(0, 10**6), st.floats(0.05, 1.0))
def test_singular_values_from_the_gram_matrix_match_the_svd(n, seed, decay):
    gen = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    spectrum = decay ** torch.arange(n, dtype=torch.float64) * 3.0
    jac = (u * spectrum) @ v.T  # a generic (non-symmetric) Jacobian of known singular values
    values = singular_values(jac[None])[0]
    torch.testing.assert_close(values[values > 1e-6], spectrum[spectrum > 1e-6], rtol=1e-9, atol=1e-9)
    assert int(numerical_rank(values)) == int(numerical_rank(torch.linalg.svdvals(jac)))

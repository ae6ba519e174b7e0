"""Noise parametrisations and the denoiser <-> score <-> noise conversions."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, strategies as st

from mogsim import (EDMPrecond, GaussianDenoiser, VEPrecond, VPPrecond, VPSchedule, denoiser_from_eps,
                    denoiser_from_score, eps_from_denoiser, scaled_denoiser, score_from_denoiser)
from mogsim.conventions import EDMSchedule, VESchedule, vp_scale


@given(log_sigma=st.floats(-3, 3), scale=st.floats(0.05, 1.0))
def test_conversions_round_trip(log_sigma, scale):
    sigma = 10**log_sigma
    x = torch.randn(4, 3, dtype=torch.float64)
    d = torch.randn(4, 3, dtype=torch.float64)
    s = score_from_denoiser(d, x, sigma, scale)
    assert torch.allclose(denoiser_from_score(s, x, sigma, scale), d, rtol=1e-9, atol=1e-9)
    e = eps_from_denoiser(d, x, sigma, scale)
    assert torch.allclose(denoiser_from_eps(e, x, sigma, scale), d, rtol=1e-9, atol=1e-9)
    assert torch.allclose(s, -e / (scale * sigma), rtol=1e-9)  # score = -eps / (s sigma)


def test_vp_scaled_gaussian_score_matches_density():
    """x_t = s (x0 + sigma eps) for x0 ~ N(m, v): score of N(s m, s^2 (v + sigma^2)) equals Tweedie's formula."""
    m, v = 0.7, 0.3
    den = GaussianDenoiser(torch.tensor([m], dtype=torch.float64), torch.tensor([[v]], dtype=torch.float64))
    sched = VPSchedule()
    t = torch.tensor(0.4, dtype=torch.float64)
    sigma, scale = sched.sigma(t), sched.scale(t)
    assert torch.allclose(scale, vp_scale(sigma))
    xt = torch.linspace(-2, 2, 9, dtype=torch.float64)[:, None]
    d = scaled_denoiser(den, scale)(xt, float(sigma))
    score = score_from_denoiser(d, xt, float(sigma), float(scale))
    exact = -(xt - scale * m) / (scale**2 * (v + sigma**2))
    assert torch.allclose(score, exact, rtol=1e-12)


@pytest.mark.parametrize("sched", [EDMSchedule(), VESchedule(), VPSchedule()])
def test_schedule_inverse(sched):
    sig = torch.tensor([0.002, 0.1, 1.0, 80.0], dtype=torch.float64)
    assert torch.allclose(sched.sigma(sched.t_of_sigma(sig)), sig, rtol=1e-10)


def test_vp_schedule_unit_variance():
    t = torch.linspace(0.01, 1, 7, dtype=torch.float64)
    sched = VPSchedule()
    s, sig = sched.scale(t), sched.sigma(t)
    assert torch.allclose(s * s * (1 + sig * sig), torch.ones_like(t))


@pytest.mark.parametrize("pre", [EDMPrecond(), VPPrecond(), VEPrecond()])
def test_preconditioning_matches_loss_weight(pre):
    """lambda(sigma) c_out(sigma)^2 = 1 for EDM; VP and VE weight 1 / sigma^2 with c_out = -+sigma."""
    sig = torch.tensor([0.01, 0.5, 3.0, 80.0], dtype=torch.float64)
    assert torch.allclose(pre.loss_weight(sig) * pre.c_out(sig) ** 2, torch.ones_like(sig))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_table_one_coefficients_exactly(dtype):
    """The shared defaults of ``Preconditioning`` give Table 1's VP, VE and identity coefficients bit for bit,
    including the loss weights 1 / sigma^2 (VP, VE) and 1 (identity) through the one rule 1 / c_out^2."""
    from mogsim.nets import IdentityPrecond

    sig = torch.logspace(-4, 4, 1001, dtype=torch.float64).to(dtype)
    one, zero = torch.ones_like(sig), torch.zeros_like(sig)
    table = {VPPrecond(): (one, -sig, torch.rsqrt(sig * sig + 1.0), 1.0 / (sig * sig)),
             VEPrecond(): (one, sig, one, 1.0 / (sig * sig)),
             IdentityPrecond(): (zero, one, one, one)}
    for pre, (c_skip, c_out, c_in, weight) in table.items():
        got = (pre.c_skip(sig), pre.c_out(sig), pre.c_in(sig), pre.loss_weight(sig))
        assert all(torch.equal(a, b) and a.dtype == dtype for a, b in zip(got, (c_skip, c_out, c_in, weight))), pre
    assert torch.equal(VEPrecond().c_noise(sig), torch.log(0.5 * sig)) and IdentityPrecond().c_noise(sig) is sig


def test_edm_precond_unit_variance():
    pre = EDMPrecond(sigma_data=0.5)
    sig = torch.tensor([0.1, 1.0, 10.0], dtype=torch.float64)
    # input variance after c_in is one for data of std sigma_data
    assert torch.allclose(pre.c_in(sig) ** 2 * (0.25 + sig**2), torch.ones_like(sig))
    # c_skip -> 1 as sigma -> 0, -> 0 as sigma -> infinity
    assert float(pre.c_skip(torch.tensor(1e-6))) == pytest.approx(1.0)
    assert float(pre.c_skip(torch.tensor(1e6))) == pytest.approx(0.0, abs=1e-12)

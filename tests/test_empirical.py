"""EmpiricalDenoiser against a brute-force float64 posterior mean, its limits, and its invariances."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from mogsim import EmpiricalDenoiser, InputError
from reference import brute_force_log_density, brute_force_posterior_mean, relative_error

SIGMAS = [1e-4, 1e-3, 1e-2, 0.1, 0.5, 1.0, 3.0, 10.0, 100.0, 1e3, 1e4]


def make_data(seed: int, n: int, d: int, kind: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(n, d, generator=g, dtype=torch.float64)
    if kind == "clustered":  # tight clusters, far from the origin, with exact duplicates
        centres = 5 * torch.randn(3, d, generator=g, dtype=torch.float64) + 40
        y = centres[torch.arange(n) % 3] + 1e-3 * y
        y[: n // 4] = y[n // 4: 2 * (n // 4)]
    return y


@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 40), d=st.integers(1, 24),
       kind=st.sampled_from(["random", "clustered"]), far=st.booleans(),
       chunk=st.one_of(st.none(), st.integers(1, 17)), log_sigma=st.floats(-4, 4))
def test_matches_brute_force_float64(seed, n, d, kind, far, chunk, log_sigma):
    y = make_data(seed, n, d, kind)
    g = torch.Generator().manual_seed(seed + 1)
    x = y[torch.randint(0, n, (6,), generator=g)] + 0.3 * torch.randn(6, d, generator=g, dtype=torch.float64)
    if far:  # 1e3 away from all the data
        direction = torch.randn(6, d, generator=g, dtype=torch.float64)
        x = x + 1e3 * direction / direction.norm(dim=1, keepdim=True) + y.abs().max()
    sigma = 10.0 ** log_sigma
    out = EmpiricalDenoiser(y, chunk_size=chunk)(x, sigma)
    assert out.dtype == torch.float64
    assert relative_error(out, brute_force_posterior_mean(y, x, sigma)) < 1e-10


@pytest.mark.parametrize("kind", ["random", "clustered"])
@pytest.mark.parametrize("sigma", SIGMAS)
def test_grid_of_sigmas(kind, sigma):
    y = make_data(3, 50, 12, kind)
    x = torch.cat([y[:5] + 0.05 * torch.randn(5, 12, dtype=torch.float64), 1e3 + torch.randn(3, 12).double()])
    out = EmpiricalDenoiser(y, chunk_size=7)(x, sigma)
    assert torch.isfinite(out).all()
    assert relative_error(out, brute_force_posterior_mean(y, x, sigma)) < 1e-10


def test_chunked_equals_unchunked():
    y = make_data(0, 101, 9, "random")
    x = torch.randn(13, 9, dtype=torch.float64)
    ref = EmpiricalDenoiser(y, chunk_size=10_000)(x, 0.7)
    for chunk in (1, 2, 7, 50, 100, 101):
        assert relative_error(EmpiricalDenoiser(y, chunk_size=chunk)(x, 0.7), ref) < 1e-13


@given(seed=st.integers(0, 10_000), log_sigma=st.floats(-2, 2))
def test_permutation_invariant(seed, log_sigma):
    y = make_data(seed, 30, 5, "random")
    x = torch.randn(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(seed + 7))
    a = EmpiricalDenoiser(y, chunk_size=8)(x, 10**log_sigma)
    b = EmpiricalDenoiser(y[perm], chunk_size=8)(x, 10**log_sigma)
    assert relative_error(a, b) < 1e-12


def test_small_sigma_gives_nearest_training_point():
    y = make_data(1, 64, 10, "random")
    x = torch.randn(20, 10, dtype=torch.float64) * 2
    den = EmpiricalDenoiser(y)
    nearest = torch.cdist(x, y).argmin(dim=1)
    assert torch.equal(den.nearest(x), nearest)
    out = den(x, 1e-4)
    assert torch.equal(out, y[nearest]) or relative_error(out, y[nearest]) < 1e-14


def test_large_sigma_gives_training_mean():
    y = make_data(2, 64, 10, "clustered")
    x = torch.randn(5, 10, dtype=torch.float64)
    out = EmpiricalDenoiser(y)(x, 1e8)
    assert relative_error(out, y.mean(0).expand_as(out)) < 1e-8


def test_far_queries_stay_finite_and_correct():
    y = make_data(4, 40, 6, "random")
    x = 1e3 * torch.randn(8, 6, dtype=torch.float64)
    for sigma in (1e-4, 1e-2, 1.0, 1e2):
        out = EmpiricalDenoiser(y, chunk_size=5)(x, sigma)
        assert torch.isfinite(out).all()
        assert relative_error(out, brute_force_posterior_mean(y, x, sigma)) < 1e-10


def test_per_sample_sigma_tensor():
    y = make_data(5, 30, 4, "random")
    x = torch.randn(6, 4, dtype=torch.float64)
    sig = torch.tensor([1e-3, 0.1, 0.5, 1.0, 10.0, 1e3], dtype=torch.float64)
    out = EmpiricalDenoiser(y, chunk_size=4)(x, sig)
    rows = torch.cat([EmpiricalDenoiser(y)(x[i:i + 1], float(sig[i])) for i in range(6)])
    assert relative_error(out, rows) < 1e-13
    assert relative_error(out, brute_force_posterior_mean(y, x, sig)) < 1e-10


def test_image_shaped_data_and_numpy_input():
    y = np.random.default_rng(0).standard_normal((12, 3, 4, 4))
    den = EmpiricalDenoiser(y)
    x = torch.randn(5, 3, 4, 4, dtype=torch.float64)
    out = den(x, 0.8)
    assert out.shape == x.shape and den.sample_shape == (3, 4, 4)
    assert relative_error(out, brute_force_posterior_mean(torch.from_numpy(y), x, 0.8)) < 1e-10


def test_float32_output_dtype_and_accuracy():
    y = make_data(6, 200, 32, "random")
    x = y[:16] + 0.2 * torch.randn(16, 32, dtype=torch.float64)
    for sigma in (0.01, 0.3, 3.0):
        out32 = EmpiricalDenoiser(y.float())(x.float(), sigma)
        assert out32.dtype == torch.float32
        assert relative_error(out32, brute_force_posterior_mean(y, x, sigma)) < 1e-4


def test_float32_ignores_global_reduced_precision_setting():
    """A user who turns on TF32 / bf16 float32 matmuls globally still gets float32-accurate closed forms."""
    matmul_backends = [torch.backends.cuda.matmul, torch.backends.mkldnn.matmul]
    if not all(hasattr(b, "fp32_precision") for b in matmul_backends):
        pytest.skip("this torch has no per-backend fp32_precision setting")
    saved = [b.fp32_precision for b in matmul_backends]
    torch.backends.cuda.matmul.fp32_precision = "tf32"
    torch.backends.mkldnn.matmul.fp32_precision = "bf16"
    try:
        y = make_data(7, 64, 16, "random")
        x = y[:8] + 0.1 * torch.randn(8, 16, dtype=torch.float64)
        out = EmpiricalDenoiser(y.float())(x.float(), 0.05)
        assert relative_error(out, brute_force_posterior_mean(y, x, 0.05)) < 1e-5
        assert torch.backends.cuda.matmul.fp32_precision == "tf32"  # restored after the call
        assert torch.backends.mkldnn.matmul.fp32_precision == "bf16"
    finally:
        for b, value in zip(matmul_backends, saved):
            b.fp32_precision = value


@given(seed=st.integers(0, 10_000), log_sigma=st.floats(-1.5, 1.5))
def test_score_is_autograd_of_log_density(seed, log_sigma):
    """score = (D - x) / sigma^2 against autograd of an independent brute-force log-density; values agree too."""
    sigma = 10**log_sigma
    y = make_data(seed, 25, 5, "random")
    den = EmpiricalDenoiser(y, chunk_size=6)
    x = y[:7] + sigma * torch.randn(7, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    x.requires_grad_(True)
    log_p = brute_force_log_density(y, x, sigma)
    (grad,) = torch.autograd.grad(log_p.sum(), x)
    assert relative_error(den.score(x.detach(), sigma), grad) < 1e-8
    assert torch.allclose(den.log_density(x.detach(), sigma), log_p.detach(), rtol=1e-12, atol=1e-12)


def test_log_density_normalised_in_one_dimension():
    y = torch.tensor([[-1.0], [0.5], [2.0]], dtype=torch.float64)
    grid = torch.linspace(-12, 14, 20001, dtype=torch.float64)[:, None]
    dens = EmpiricalDenoiser(y).log_density(grid, 0.8).exp()
    assert math.isclose(float(torch.trapezoid(dens, grid[:, 0])), 1.0, rel_tol=1e-9)


@pytest.mark.parametrize(
    "args, message",
    [((torch.zeros(0, 3),), "N >= 1"), ((torch.zeros(3),), "(N, *sample_shape)"),
     ((torch.tensor([[float("nan")]]),), "NaN"), (("abc",), "torch.Tensor or numpy")],
)
def test_bad_data_is_rejected(args, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        EmpiricalDenoiser(*args)


def test_bad_queries_are_rejected():
    den = EmpiricalDenoiser(torch.randn(4, 3))
    with pytest.raises(InputError, match="sample_shape"):
        den(torch.randn(2, 4), 1.0)
    with pytest.raises(InputError, match="sigma must be finite and > 0"):
        den(torch.randn(2, 3), 0.0)
    with pytest.raises(InputError, match="one value per sample"):
        den(torch.randn(2, 3), torch.ones(3))


def test_cuda_matches_cpu(cuda):
    y = make_data(9, 500, 64, "random")
    x = y[:32] + 0.1 * torch.randn(32, 64, dtype=torch.float64)
    for dt in (torch.float64, torch.float32):
        cpu = EmpiricalDenoiser(y.to(dt))(x.to(dt), 0.2)
        gpu = EmpiricalDenoiser(y.to(dt).to(cuda))(x.to(dt).to(cuda), 0.2)
        assert gpu.device.type == "cuda"
        assert relative_error(gpu.cpu(), cpu) < (1e-12 if dt == torch.float64 else 1e-4)

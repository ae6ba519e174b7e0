"""The public API's argument checks: wrong types and values are one-line InputErrors naming the argument; noise
levels are checked in float64; the shared whole-number / finite-number helpers; a denoiser returning NaN stops the
sampler at the step where it happened."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from mogsim import (EmpiricalDenoiser, GaussianDenoiser, InputError, MoLRG, edm_sigmas, noise_for_seeds, sample,
                    score_from_denoiser)
from mogsim.conventions import check_positive_sigma, sigma_like
from mogsim.devices import resolve_device, resolve_dtype
from mogsim.parsing import MAX_SEEDS, SEED_LIMIT, finite_number, parse_seeds, seeds_record, whole_number
from mogsim.sampling import NonFiniteDenoiserError

MIX = MoLRG.random(6, 2, 2, seed=0)
X = torch.randn(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
EMP = EmpiricalDenoiser(X)
GAUSS = GaussianDenoiser(torch.zeros(6), torch.eye(6))
Z = noise_for_seeds([0, 1], (6,), dtype=torch.float64)

BAD_CALLS = [
    # (call, the argument the message must name)
    (lambda: EMP(X, "0.5"), "sigma"),
    (lambda: MIX(X, "0.5"), "sigma"),
    (lambda: GAUSS(X, None), "sigma"),
    (lambda: MIX(X, True), "sigma"),
    (lambda: MIX(X, [0.5, 0.5, 0.5]), "sigma"),
    (lambda: MIX(X, torch.tensor([0.5, 0.5])), "sigma"),
    (lambda: MIX(X, math.nan), "sigma"),
    (lambda: MIX(X, -1.0), "sigma"),
    (lambda: MIX(X, 0.0), "sigma"),
    (lambda: MIX(X, math.inf), "sigma"),
    (lambda: MIX(X, torch.tensor([0.5, math.nan, 0.5])), "sigma"),
    (lambda: MIX(X.tolist(), 0.5), "x"),
    (lambda: MIX(X.long(), 0.5), "x"),
    (lambda: MIX.score(X, "1"), "sigma"),
    (lambda: EMP.log_density(X, "1"), "sigma"),
    (lambda: score_from_denoiser(X, X, "0.5"), "sigma"),
    (lambda: MoLRG.random(n=8.5, K=2, r=2), "n"),
    (lambda: MoLRG.random(n=True, K=1, r=1), "n"),
    (lambda: MoLRG.random(n="8", K=2, r=2), "n"),
    (lambda: MoLRG.random(n=8, K=2.0, r=2), "K"),
    (lambda: MoLRG.random(n=8, K=2, r=None), "r"),
    (lambda: MoLRG.random(n=10**20, K=2, r=2), "n"),
    (lambda: MoLRG.random(n=8, K=2, r=2, seed=-1), "seed"),
    (lambda: MoLRG.random(n=8, K=2, r=2, seed=2.5), "seed"),
    (lambda: MoLRG.random(n=8, K=2, r=2, noise_std="0.1"), "noise_std"),
    (lambda: MoLRG.random(n=8, K=2, r=2, noise_std=math.nan), "noise_std"),
    (lambda: MoLRG.random(n=8, K=2, r=2, weights=["a", "b"]), "weights"),
    (lambda: MIX.sample(2.5), "num"),
    (lambda: MIX.sample(10**20), "num"),
    (lambda: MIX.sample(4, seed="1"), "seed"),
    (lambda: MIX.sample(4, balanced="yes"), "balanced"),
    (lambda: GaussianDenoiser(["a"], [[1.0]]), "mean"),
    (lambda: GaussianDenoiser([0.0], [[True]]), "cov"),
    (lambda: GaussianDenoiser(torch.zeros(4), torch.eye(4), sample_shape=(2.5, 2)), "sample_shape"),
    (lambda: GaussianDenoiser(torch.zeros(4), torch.eye(4), sample_shape=4), "sample_shape"),
    (lambda: GaussianDenoiser.from_factor(torch.zeros(2), "F"), "factor"),
    (lambda: EmpiricalDenoiser([[1.0, 2.0]]), "data"),
    (lambda: EmpiricalDenoiser(X, chunk_size=1.5), "chunk_size"),
    (lambda: EmpiricalDenoiser(X, chunk_size=0), "chunk_size"),
    (lambda: noise_for_seeds([1.5], (6,)), "seeds[0]"),
    (lambda: noise_for_seeds([0, True], (6,)), "seeds[1]"),
    (lambda: noise_for_seeds([2**63], (6,)), "seeds[0]"),
    (lambda: noise_for_seeds(5, (6,)), "seeds"),
    (lambda: noise_for_seeds("0-3", (6,)), "seeds"),
    (lambda: noise_for_seeds([0], 6), "shape"),
    (lambda: noise_for_seeds([0], (8.5,)), "shape[0]"),
    (lambda: noise_for_seeds([0], (6,), dtype="float32"), "dtype"),
    (lambda: noise_for_seeds([0], (6,), dtype=torch.int64), "dtype"),
    (lambda: noise_for_seeds([0], (6,), device="tpu"), "device"),
    (lambda: edm_sigmas(8.5), "steps"),
    (lambda: edm_sigmas(10**20), "steps"),
    (lambda: edm_sigmas(sigma_min="0.1"), "sigma_min"),
    (lambda: edm_sigmas(sigma_max=math.inf), "sigma_max"),
    (lambda: edm_sigmas(rho=math.nan), "rho"),
    (lambda: edm_sigmas(dtype="float64"), "dtype"),
    (lambda: sample(5, Z), "denoiser"),
    (lambda: sample(MIX, Z.numpy()), "noise"),
    (lambda: sample(MIX, Z, ["a", "b"]), "sigmas"),
    (lambda: sample(MIX, Z, [1.0, math.nan, 0.0]), "sigmas"),
    (lambda: sample(MIX, Z, solver=2), "solver"),
    (lambda: sample(MIX, Z, progress=5), "progress"),
    (lambda: sample(MIX, Z, return_trajectory="yes"), "return_trajectory"),
    (lambda: sample(MIX, Z * math.nan), "noise"),
    (lambda: sample(lambda x, s: x[:1], Z), "denoiser"),
]


@pytest.mark.parametrize("call, name", BAD_CALLS, ids=[f"{i}-{n}" for i, (_, n) in enumerate(BAD_CALLS)])
def test_bad_arguments_are_input_errors_naming_the_argument(call, name):
    with pytest.raises(InputError) as info:
        call()
    message = str(info.value)
    assert name in message and "\n" not in message, message


@pytest.mark.parametrize("sigma", [1e-300, 1e300, 5e-324, 1.7e308])
def test_extreme_sigmas_are_valid_in_float64(sigma):
    """Checks run in float64: 1e-300 is not rounded to 0, nor 1e300 to inf (float32 would)."""
    assert float(check_positive_sigma(sigma)) == sigma
    assert float(sigma_like(sigma, X)) == sigma  # x is float64: kept exactly
    assert check_positive_sigma(np.float64(sigma)).dtype == torch.float64


def test_sigma_errors_name_the_value_in_float64():
    with pytest.raises(InputError, match=r"got -1e-300"):
        check_positive_sigma(-1e-300)
    with pytest.raises(InputError, match=r"tau.*got nan"):
        check_positive_sigma(torch.tensor([1.0, math.nan]), name="tau")


@given(value=st.integers(-10, 10), lo=st.integers(-5, 5), width=st.integers(0, 5))
def test_whole_number_accepts_exactly_the_integers_in_range(value, lo, width):
    hi = lo + width
    for form in (value, np.int64(value), torch.tensor(value)):
        if lo <= value <= hi:
            assert whole_number(form, "k", lo=lo, hi=hi) == value
            assert type(whole_number(form, "k", lo=lo, hi=hi)) is int
        else:
            with pytest.raises(InputError, match="k="):
                whole_number(form, "k", lo=lo, hi=hi)


@pytest.mark.parametrize("bad", [8.5, 8.0, True, np.bool_(False), "8", None, [8], torch.tensor([1, 2]),
                                 torch.tensor(2.0)])
def test_whole_number_refuses_non_integers(bad):
    with pytest.raises(InputError, match="pass a whole number") as info:
        whole_number(bad, "dim", lo=0)
    assert info.value.parameter == "dim"


def test_whole_number_and_finite_number_messages_name_the_parameter_range_and_fix():
    with pytest.raises(InputError, match=r"^dim=99: must be >= 1 and <= 48; fix it$"):
        whole_number(99, "dim", lo=1, hi=48, fix="fix it")
    with pytest.raises(InputError, match=r"^n=0: must be >= 1$"):
        whole_number(0, "n", lo=1)
    with pytest.raises(InputError, match=r"^k=3: must be >= 0 and < 3$"):
        whole_number(np.int64(3), "k", hi=3, hi_open=True)
    with pytest.raises(InputError, match=r"^seed=9223372036854775808: must be >= 0 and <= 9223372036854775807$"):
        whole_number(SEED_LIMIT, "seed", hi=SEED_LIMIT - 1)  # integer bounds are shown exactly, not as 9.2e+18
    with pytest.raises(InputError, match=r"^rho=nan: pass a finite number > 0$"):
        finite_number(math.nan, "rho", lo=0.0, lo_open=True)
    with pytest.raises(InputError, match=r"^rho=0.0: must be > 0$"):
        finite_number(0.0, "rho", lo=0.0, lo_open=True)
    with pytest.raises(InputError, match=r"^x=3.0: must be <= 2$"):
        finite_number(3.0, "x", hi=2.0)
    assert finite_number(1e-300, "x", lo=0.0, lo_open=True) == 1e-300
    assert finite_number(np.float32(0.5), "x") == 0.5
    for bad in ("0.5", True, None, math.inf, -math.inf, 1e999, 10**400):
        with pytest.raises(InputError, match="pass a finite number"):
            finite_number(bad, "x")


@given(value=st.floats(allow_nan=True, allow_infinity=True), lo=st.floats(-5, 5), width=st.floats(0, 5),
       lo_open=st.booleans(), hi_open=st.booleans())
def test_finite_number_accepts_exactly_the_finite_numbers_in_range(value, lo, width, lo_open, hi_open):
    hi = lo + width
    inside = (math.isfinite(value) and (lo < value if lo_open else lo <= value)
              and (value < hi if hi_open else value <= hi))
    if inside:
        assert finite_number(value, "x", lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open) == value
    else:
        with pytest.raises(InputError, match=r"^x=") as info:
            finite_number(value, "x", lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open)
        assert info.value.parameter == "x" and "\n" not in str(info.value)


def test_device_and_dtype_errors_name_the_parameter_not_a_flag(monkeypatch):
    for call, name in [(lambda: resolve_device("tpu"), "device"), (lambda: resolve_dtype("float16"), "dtype"),
                       (lambda: resolve_dtype(torch.int64), "dtype")]:
        with pytest.raises(InputError) as info:
            call()
        assert str(info.value).startswith(f"{name}=") and "--" not in str(info.value)
        assert info.value.parameter == name
    assert resolve_dtype(" Float32 ") is torch.float32
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # torch.device() only parses the name
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(InputError, match=r"^device='cuda:x': pass auto, cpu, cuda or cuda:N$"):
        resolve_device("cuda:x")  # torch's RuntimeError, as one line


def test_seed_lists_are_bounded_before_they_are_built():
    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7]
    for text, fragment in [("0-99999999999999999999", r"0\.\.2\^63-1"), (f"0-{MAX_SEEDS}", "at most 10,000,000"),
                           (f"1-{MAX_SEEDS},0", "at most"), ("-3", r"0\.\.2\^63-1"), ("1,x", "0-99 or 1,5,9")]:
        with pytest.raises(InputError, match=fragment):
            parse_seeds(text)
    with pytest.raises(InputError, match=r"^seeds is empty") as info:
        parse_seeds(" , ")
    assert info.value.parameter == "seeds"


def test_seeds_record_says_what_was_sampled():
    assert seeds_record("1,5,9", [1, 5, 9]) == {"spec": "1,5,9", "count": 3, "first": 1, "last": 9,
                                                "values": [1, 5, 9]}
    long = seeds_record("0-99", list(range(100)))
    assert long["count"] == 100 and long["first"] == 0 and long["last"] == 99 and long["values"] is None


class NaNAfter:
    """A denoiser that returns NaN for sample ``row`` from its ``call``-th call on (counting from 0)."""

    def __init__(self, call: int, row: int = 1) -> None:
        self.calls, self.bad_call, self.row = 0, call, row

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        out = MIX(x, sigma)
        if self.calls >= self.bad_call:
            out[self.row, 0] = math.nan
        self.calls += 1
        return out


@pytest.mark.parametrize("solver, call, step, stage", [("heun", 0, 0, "Euler step"), ("heun", 5, 2, "Heun correction"),
                                                       ("heun", 6, 3, "Euler step"), ("euler", 4, 4, "Euler step")])
def test_sampler_names_the_step_where_the_denoiser_first_returned_nan(solver, call, step, stage):
    sigmas = edm_sigmas(18)
    with pytest.raises(NonFiniteDenoiserError) as info:
        sample(NaNAfter(call), noise_for_seeds(range(3), (6,), dtype=torch.float64), sigmas, solver)
    err = info.value
    expected_sigma = float(sigmas[step + 1] if stage == "Heun correction" else sigmas[step])
    assert err.step == step and err.stage == stage and err.sigma == expected_sigma
    message = str(err)
    assert f"step {step + 1} of 18 (index {step}; {stage} at sigma = {expected_sigma:g})" in message
    assert "1 of 3 samples (first: row 1)" in message and "\n" not in message
    assert isinstance(err, InputError)  # the CLI shows it as one line, exit 2


def test_sampler_says_when_its_own_state_overflowed():
    z = noise_for_seeds(range(2), (6,), dtype=torch.float32)
    with pytest.raises(NonFiniteDenoiserError, match="input had already overflowed"):
        sample(MIX, z, edm_sigmas(4, sigma_max=1e300))

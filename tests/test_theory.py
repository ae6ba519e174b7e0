"""mogsim.theory: every derivation is proved symbolically and matches mogsim's numerics; broken ones fail.

* ``run_all()`` reports every registered result verified (symbolic claims reduce to 0, formulas match mogsim).
* Hypothesis draws random float64 inputs; each derived formula, lambdified, matches mogsim to 1e-10.
* Mutations: a perturbed formula fails its numeric check, a perturbed claim fails its symbolic check, a crashing
  derivation is reported failed, and ``mogsim theory`` then exits 1.
* The command: output, ``--latex``, ``--only``, and one-line errors with exit code 2 for bad input.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import sympy as sp
import typer
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mogsim.theory import (NUMERIC_TOL, RESULT_MODULES, Derivation, Formula, Identity, Limit, TheoryResult,
                           all_results, run_all, run_result)
from mogsim.theory.latex import escape, render
from mogsim.theory.numeric import numeric_checks
from mogsim.theory.proof import is_zero, prove, prove_all
from mogsim.theory.symbolic import gaussian_expectation, orthonormal_basis

MODULES: dict[str, ModuleType] = {name: importlib.import_module(f"mogsim.theory.{name}") for name in RESULT_MODULES}
HYPOTHESIS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Any]:
    return {o.result.name: o for o in run_all()}


# --- every registered result is verified ------------------------------------------------------------------------

def test_registry_lists_one_result_per_module() -> None:
    names = [r.name for r in all_results()]
    assert names == list(RESULT_MODULES)
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("name", RESULT_MODULES)
def test_result_is_verified(outcomes: dict[str, Any], name: str) -> None:
    outcome = outcomes[name]
    failed = [f"{c.kind}: {c.description} -- {c.detail}" for c in outcome.checks if not c.passed]
    assert outcome.error is None, outcome.error
    assert not failed, "\n".join(failed)
    assert outcome.status == "verified"
    kinds = [c.kind for c in outcome.checks]
    assert "symbolic" in kinds and "numeric" in kinds
    numeric = [c for c in outcome.checks if c.kind == "numeric"]
    assert len(numeric) == len(outcome.derivation.formulas)  # every derived formula was compared with mogsim


@pytest.mark.parametrize("name", RESULT_MODULES)
def test_derive_returns_sympy_objects(name: str) -> None:
    derivation = MODULES[name].derive()
    assert derivation.display and all(isinstance(e, sp.Basic) for e in derivation.display)
    assert derivation.claims and derivation.formulas
    for formula in derivation.formulas.values():
        assert isinstance(formula.expr, (sp.Expr, sp.MatrixBase))
        assert formula.expr.free_symbols <= set(formula.args)
    assert MODULES[name].RESULT.statement and MODULES[name].derive.__doc__


# --- hypothesis: lambdified formulas against mogsim ---------------------------------------------------------------

def _assert_matches(name: str, point: dict[str, float]) -> None:
    module = MODULES[name]
    derivation = module.derive()
    errs = module.errors_at(derivation, point)
    assert set(errs) == set(derivation.formulas)
    bad = {k: v for k, v in errs.items() if not v < NUMERIC_TOL}
    assert not bad, f"{name}: {bad} at {point}"


def _floats(lo: float, hi: float) -> st.SearchStrategy[float]:
    """Finite floats without subnormals: BLAS kernels may flush subnormal inputs to zero (denormals-are-zero), so a
    point such as an atom at 1e-308 measures the CPU's flush mode, not the formula (a hypothesis draw found one)."""
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def _unit(draw: Any, n: int = 3) -> np.ndarray:
    v = np.array(draw(st.lists(_floats(-1, 1), min_size=n, max_size=n)))
    assume(np.linalg.norm(v) > 0.1)
    return v / np.linalg.norm(v)


def _orthonormal(draw: Any, n: int, r: int) -> np.ndarray:
    m = np.array(draw(st.lists(_floats(-1, 1), min_size=n * r, max_size=n * r))).reshape(n, r)
    assume(np.linalg.svd(m, compute_uv=False).min() > 0.1)
    q, _ = np.linalg.qr(m)
    return q


def _entries(name: str, basis: np.ndarray) -> dict[str, float]:
    return {f"{name}{i + 1}{j + 1}": float(basis[i, j]) for i in range(basis.shape[0]) for j in range(basis.shape[1])}


@HYPOTHESIS
@given(st.data())
def test_tweedie_matches_mogsim(data: st.DataObject) -> None:
    d = data.draw
    point = {"x": d(_floats(-3, 3)), "s": d(_floats(0.5, 2)), "sigma": d(_floats(0.5, 3)), "mu": d(_floats(-2, 2)),
             "v": d(_floats(0.1, 3))}
    point.update({f"a{i}": d(_floats(-2, 2)) for i in (1, 2, 3)})
    point.update({f"w{i}": float(d(st.integers(1, 3))) for i in (1, 2, 3)})
    _assert_matches("tweedie", point)


@HYPOTHESIS
@given(st.data())
def test_empirical_matches_mogsim(data: st.DataObject) -> None:
    d = data.draw
    point = {"x1": d(_floats(-2, 2)), "x2": d(_floats(-2, 2)), "s": d(_floats(0.5, 2)), "sigma": d(_floats(0.5, 3))}
    point.update({f"y{i}{k}": d(_floats(-1.5, 1.5)) for i in (1, 2, 3) for k in (1, 2)})
    x = np.array([point["x1"], point["x2"]])
    d2 = sorted(float(((np.array([point[f"y{i}1"], point[f"y{i}2"]]) - x) ** 2).sum()) for i in (1, 2, 3))
    assume(d2[1] - d2[0] > 1e-3)  # the sigma -> 0 limit needs a unique nearest point
    _assert_matches("empirical", point)


@HYPOTHESIS
@given(st.data())
def test_gaussian_matches_mogsim(data: st.DataObject) -> None:
    d = data.draw
    l11, l22, l21 = d(_floats(0.3, 2)), d(_floats(0.3, 2)), d(_floats(-1, 1))
    point = {"s": d(_floats(0.5, 2)), "sigma": d(_floats(0.3, 3)),
             "a": l11 * l11, "b": l11 * l21, "c": l21 * l21 + l22 * l22}
    point.update({f"{k}{i}": d(_floats(-2, 2)) for k in ("x", "m", "f") for i in (1, 2, 3)})
    _assert_matches("gaussian", point)


@HYPOTHESIS
@given(st.data())
def test_woodbury_matches_mogsim(data: st.DataObject) -> None:
    d = data.draw
    point = {"theta": d(_floats(0, np.pi)), "phi": d(_floats(0, 2 * np.pi)), "sigma": d(_floats(0.3, 3))}
    point.update(_entries("u", _orthonormal(d, 3, 2)))
    point.update({f"x{i}": d(_floats(-3, 3)) for i in (1, 2, 3)})
    _assert_matches("woodbury", point)


@HYPOTHESIS
@given(st.data())
def test_molrg_matches_mogsim(data: st.DataObject) -> None:
    d = data.draw
    point = {"sigma": d(_floats(0.3, 3)), "eta": d(st.one_of(st.just(0.0), _floats(0.1, 1))),
             "pi1": d(_floats(0.1, 1)), "pi2": d(_floats(0.1, 1))}
    point.update({f"x{i}": d(_floats(-3, 3)) for i in (1, 2, 3)})
    for k in (1, 2):
        point.update({f"u{k}_{i + 1}": float(v) for i, v in enumerate(_unit(d))})
    _assert_matches("molrg", point)


@HYPOTHESIS
@given(st.data())
def test_pca_matches_mogsim(data: st.DataObject) -> None:
    d = data.draw
    point = {"s": d(_floats(0.2, 2)), "g": d(_floats(0.1, 3))}
    point.update(_entries("u", _orthonormal(d, 3, 2)))
    point.update({f"{k}{i}": d(_floats(-3, 3)) for k in ("x", "y") for i in (1, 2, 3)})
    _assert_matches("pca", point)


# --- a broken derivation must fail ------------------------------------------------------------------------------

def _perturbed(formula: Formula) -> Formula:
    return Formula(formula.args, formula.expr * (1 + sp.Rational(1, 10**6)), formula.compared_with)


@pytest.mark.parametrize("name", RESULT_MODULES)
def test_perturbed_formula_fails_numeric_check(name: str) -> None:
    module = MODULES[name]
    derivation = module.derive()
    rng = np.random.Generator(np.random.PCG64(1))
    points = [module.random_point(rng) for _ in range(3)]
    for key, formula in derivation.formulas.items():
        broken = dataclasses.replace(derivation, formulas={**derivation.formulas, key: _perturbed(formula)})
        checks = {c.description.split(" vs ")[0]: c.passed for c in numeric_checks(broken, module.errors_at, points)}
        assert checks[key] is False, f"{name}: a 1e-6 error in {key!r} went unnoticed"
        assert all(v for k, v in checks.items() if k != key)


@pytest.mark.parametrize("name", RESULT_MODULES)
def test_perturbed_claim_fails_symbolic_check(name: str) -> None:
    claim = next(c for c in MODULES[name].derive().claims if isinstance(c, Identity))
    assert prove(claim).passed
    broken = dataclasses.replace(claim, rhs=claim.rhs * (1 + sp.Rational(1, 1000)))
    assert not prove(broken).passed


def test_false_identities_and_limits_are_rejected() -> None:
    s, sig = sp.symbols("s sigma", positive=True)
    basis, stiefel = orthonormal_basis("u", 3, 2)
    eye = sp.eye(3)
    proj = basis * basis.T
    wrong = (eye - proj) / sig**2 + proj / (2 + sig**2)  # 2 instead of 1
    assert not is_zero((proj + sig**2 * eye) * wrong - eye, relations=stiefel)
    right = (eye - proj) / sig**2 + proj / (1 + sig**2)
    assert is_zero((proj + sig**2 * eye) * right - eye, relations=stiefel)
    assert not is_zero(sp.log(s**2) - sp.log(s), "log")
    assert is_zero(sp.log(s**2) - 2 * sp.log(s), "log")
    assert not prove(Limit("wrong limit", 1 / (1 + sp.exp(-1 / sig**2)), sig, 0, sp.Rational(1, 2))).passed
    assert prove(Limit("right limit", 1 / (1 + sp.exp(-1 / sig**2)), sig, 0, 1)).passed


def test_gaussian_moments() -> None:
    e1, e2, s = sp.symbols("e1 e2 s", real=True)
    poly = 3 * e1**4 * e2**2 + 5 * e1 + 7 + e1 * e2 + s * e2**2 + e1**2 * e2**3
    assert gaussian_expectation(poly, [e1, e2]) == s + 16  # 3 * 3 * 1 + 7 + s


def _broken_result(raises: bool = False) -> TheoryResult:
    def derive() -> Derivation:
        if raises:
            raise RuntimeError("cannot derive")
        return Derivation([sp.Eq(sp.Symbol("a"), sp.Symbol("b"))], [Identity("1 = 2", sp.Integer(1), sp.Integer(2))],
                          {})

    return TheoryResult("broken", "A broken result", "One equals two.", derive, lambda d: prove_all(d.claims))


def test_failed_and_crashing_results_are_reported() -> None:
    failed = run_result(_broken_result())
    assert failed.status == "failed" and not failed.checks[0].passed
    crashed = run_result(_broken_result(raises=True))
    assert crashed.status == "failed" and "cannot derive" in crashed.error
    text = render([failed, crashed])
    assert "0 of 2 results verified" in text and "FAILED" in text


def test_symbolic_checks_alone_are_not_verified() -> None:
    only_symbolic = TheoryResult("s", "s", "s", lambda: Derivation([], [Identity("1 = 1", 1, 1)], {}),
                                 lambda d: prove_all(d.claims))
    assert run_result(only_symbolic).status == "failed"


def test_latex_escape() -> None:
    assert escape("a_b^2 50% {x} |y| <z>") == (r"a\_b\^{}2 50\% \{x\} \textbar{}y\textbar{} \textless{}z\textgreater{}")


# --- the command --------------------------------------------------------------------------------------------------

@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``main(argv)`` of mogsim's app with only the theory command registered (other commands are not needed)."""
    from mogsim.cli import app as app_module
    from mogsim.cli import theory as theory_cmd

    fresh = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
    fresh.callback()(lambda: None)
    theory_cmd.register(fresh)
    monkeypatch.setattr(app_module, "build_app", lambda: fresh)

    def run(*argv: str) -> int:
        with pytest.raises(SystemExit) as exc:
            app_module.main(list(argv))
        return int(exc.value.code or 0)

    return run


def test_theory_is_a_registered_command() -> None:
    from mogsim.cli.app import COMMAND_MODULES

    assert "theory" in COMMAND_MODULES


def test_command_prints_and_writes_latex(cli: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "sub" / "theory.tex"
    assert cli("theory", "--only", "gaussian,woodbury", "--latex", str(target)) == 0
    out = capsys.readouterr().out
    assert "[verified] gaussian" in out and "[verified] woodbury" in out and "tweedie" not in out
    assert "ok   symbolic" in out and "ok   numeric" in out
    assert "theory: 2 of 2 results verified" in out
    tex = target.read_text()
    assert r"\subsubsection*{Gaussian posterior mean" in tex and r"\begin{align*}" in tex
    assert not [p for p in target.parent.iterdir() if p.name != "theory.tex"]  # no temporary file left


def test_command_exits_1_when_a_result_fails(cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from mogsim.theory import registry

    monkeypatch.setattr(registry, "all_results", lambda: [_broken_result()])
    target = tmp_path / "theory.tex"
    assert cli("theory", "--latex", str(target)) == 1
    out = capsys.readouterr().out
    assert "[failed] broken" in out and "FAIL symbolic 1 = 2" in out and "0 of 1 results verified" in out
    assert "failed" in target.read_text()


@pytest.mark.parametrize("argv, message", [
    (["--only", "nope"], "--only nope: no such result"),
    (["--latex", "{dir}"], "is a folder"),
    (["--latex", "{file}/theory.tex"], "--latex"),
])
def test_bad_input_is_one_line_and_exit_2(cli: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          argv: list[str], message: str) -> None:
    (tmp_path / "file").write_text("x")
    args = [a.format(dir=tmp_path, file=tmp_path / "file") for a in argv]
    assert cli("theory", *args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("mogsim: error:") and message in err

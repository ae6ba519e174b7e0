"""The installed package: public names, docstrings, and no generic top-level import names."""

from __future__ import annotations

import importlib.util
from importlib import metadata

import mogsim

PUBLIC = ["EmpiricalDenoiser", "GaussianDenoiser", "MoLRG", "edm_sigmas", "sample", "noise_for_seeds", "Denoiser"]


def test_public_names_exist_with_docstrings():
    for name in PUBLIC:
        obj = getattr(mogsim, name)
        assert obj.__doc__ and len(obj.__doc__.strip()) > 20, name
    for method in ("random", "sample", "denoise", "score", "log_density"):
        assert getattr(mogsim.MoLRG, method).__doc__, method


def test_denoisers_implement_the_protocol():
    import torch
    mix = mogsim.MoLRG.random(4, 1, 2, seed=0)
    for den in (mix, mogsim.EmpiricalDenoiser(torch.zeros(2, 4)),
                mogsim.GaussianDenoiser(torch.zeros(4), torch.eye(4))):
        assert isinstance(den, mogsim.Denoiser)


def test_cli_and_theory_live_under_mogsim():
    assert importlib.util.find_spec("mogsim.cli") is not None
    assert importlib.util.find_spec("mogsim.theory") is not None
    files = metadata.files("mogsim") or []
    tops = {str(f).split("/")[0] for f in files if str(f).endswith(".py") and not str(f).startswith("__editable__")}
    assert tops <= {"mogsim"}, tops
    assert importlib.util.find_spec("cli") is None and importlib.util.find_spec("theory") is None


def test_every_package_folder_is_installed():
    """pyproject.toml lists packages by hand: a new subpackage left out would be missing from a wheel install."""
    from pathlib import Path

    import pytest
    tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11")

    root = Path(__file__).resolve().parents[1]
    if not (root / "pyproject.toml").exists():
        pytest.skip("no pyproject.toml beside the tests (installed package without the repository)")
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {"mogsim": root / "mogsim", **{name: root / path for name, path in config["package-dir"].items()}}
    found = set()
    for name, folder in folders.items():
        for init in folder.rglob("__init__.py"):
            if "__pycache__" not in init.parts:
                rel = init.parent.relative_to(folder).parts
                found.add(".".join((name, *rel)))
    assert found == set(config["packages"]), found ^ set(config["packages"])

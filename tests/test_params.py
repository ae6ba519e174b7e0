"""Declared parameters (checks, config files, precedence, flags), the one seed derivation, the progress display and
the command-line options generated from the config dataclasses."""

from __future__ import annotations

import argparse
import io
import math
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mogsim.errors import InputError
from mogsim.params import (Spec, add_arguments, bounds_of, check_params, declared, dumps_strict, flags, loads_strict,
                           param, read_config_file, resolve, to_flags, unknown_keys)
from mogsim.progress import PlainProgress, progress_display
from mogsim.seeds import derive_seed


@dataclass(frozen=True)
class Example:
    num_train: int = param(8, "N.", flag="--n", min=1, max=100)
    lr: float = param(1e-3, "Learning rate.", positive=True, max=1.0)
    arch: str = param("mlp", "Network.", choices=("mlp", "unet"))
    sizes: tuple[int, ...] = param((1, 2), "Sizes.", min=1)
    width: int | None = param(None, "Width.", min=1, shown="256")
    fast: bool = param(False, "Go fast.")

    def __post_init__(self) -> None:
        check_params(self)


@pytest.mark.parametrize("change, message", [
    (dict(num_train=0), r"num_train=0: must be >= 1 and <= 100"),
    (dict(num_train=10**20), r"num_train=100000000000000000000: must be"),
    (dict(num_train=8.5), r"num_train=8.5: pass a whole number"),
    (dict(num_train=True), r"num_train=True: pass a whole number"),
    (dict(lr=float("nan")), r"lr=nan: pass a finite number"),
    (dict(lr=float("inf")), r"lr=inf: pass a finite number"),
    (dict(lr=0.0), r"lr=0.0: must be > 0"),
    (dict(arch="resnet"), r"arch='resnet': choose one of mlp, unet"),
    (dict(sizes=(1, 0)), r"sizes=\(1, 0\): must be >= 1"),
    (dict(width=0), r"width=0"),
    (dict(fast="yes"), r"fast='yes': pass true or false"),
])
def test_checks_name_the_parameter(change, message):
    with pytest.raises(InputError, match=message) as info:
        Example(**change)
    assert info.value.parameter == next(iter(change))


def test_bounds_are_the_tighter_of_the_declared_ones():
    assert bounds_of(Spec("h", min=0.5, positive=True)).text() == ">= 0.5"
    assert bounds_of(Spec("h", min=-1.0, positive=True, max=1)).text() == "> 0 and <= 1"
    assert bounds_of(Spec("h", min=0, below=1.0, max=2)).text() == ">= 0 and < 1"
    assert bounds_of(Spec("h")).text() == ""


def test_an_integer_beyond_float64_is_refused_not_a_crash():
    with pytest.raises(InputError, match=r"lr=10{400}: pass a finite number") as info:
        resolve(Example, {}, {"lr": 10**400})  # e.g. from a JSON file; float() would overflow
    assert info.value.parameter == "config"


def test_sources_merge_in_one_order(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"n": 20, "lr": 0.5, "sizes": [3, 4]}')
    file = read_config_file(path)
    got = resolve(Example, {"num_train": None, "lr": 0.25}, file)
    assert (got.num_train, got.lr, got.sizes, got.arch) == (20, 0.25, (3, 4), "mlp")  # cli > file > default
    assert resolve(Example, {"sizes": "5,6"}).sizes == (5, 6)
    assert unknown_keys({"n": 1, "rnak": 2, "sweep": 1}, Example, extra=("sweep",)) == ["rnak"]
    path.write_text('{"num_train": "two"}')
    with pytest.raises(InputError, match=r"config=.*num_train='two': pass a whole number") as info:
        resolve(Example, {}, read_config_file(path), source=f"config={str(path)!r}")
    assert info.value.parameter == "config"


@pytest.mark.parametrize("text", ['{"lr": NaN}', '{"lr": Infinity}', '[1, 2]', '{"lr": '])
def test_config_files_are_strict_json_objects(tmp_path, text):
    path = tmp_path / "c.json"
    path.write_text(text)
    with pytest.raises(InputError, match="config="):
        read_config_file(path)
    with pytest.raises(ValueError):
        dumps_strict({"x": math.nan})
    assert loads_strict(dumps_strict({"x": [1.5, None]})) == {"x": [1.5, None]}


def test_messages_are_rewritten_to_flags():
    table = flags(Example)
    assert table["num_train"] == "--n" and table["sizes"] == "--sizes"
    assert to_flags("num_train=63: must be a multiple of components=2", {**table, "components": "--components"},
                    "num_train") == "--n 63: must be a multiple of --components 2"
    assert to_flags("give exactly one of steps, images (got steps)", {"steps": "--steps", "images": "--images"},
                    ("steps", "images")) == "give exactly one of --steps, --images (got --steps)"
    assert to_flags("the steps of num_train", {"steps": "--steps", "num_train": "--n"}) == "the steps of --n"


def test_argparse_options_come_from_the_declarations():
    parser = argparse.ArgumentParser()
    add_arguments(parser, Example)
    ns = vars(parser.parse_args(["--n", "5", "--fast", "--sizes", "7,8"]))
    assert resolve(Example, ns) == Example(num_train=5, fast=True, sizes=(7, 8))
    assert "[default: 256]" in parser.format_help() and [d.name for d in declared(Example)][0] == "num_train"


@given(st.lists(st.one_of(st.integers(0, 2**70), st.text(max_size=5)), min_size=1, max_size=5))
def test_derive_seed_is_a_deterministic_63_bit_function_of_its_parts(parts):
    seed = derive_seed(*parts)
    assert seed == derive_seed(*parts) and 0 <= seed < 2**63
    assert derive_seed(*parts, "more") != seed


def test_derive_seed_separates_streams_and_refuses_negatives():
    assert len({derive_seed(0, "noise", k) for k in range(1000)}) == 1000
    assert derive_seed(0, "noise", 1) != derive_seed(0, "init", 1)
    with pytest.raises(InputError):
        derive_seed(-1)


def test_plain_progress_prints_at_once_then_throttled():
    out = io.StringIO()
    advance = PlainProgress(out, interval=3600)("train", 4)
    assert out.getvalue() == "train: 0/4 (0 s)\n"  # a line as soon as the task starts
    advance(1, "loss 0.5")
    advance(2)
    assert out.getvalue().count("\n") == 1  # throttled
    advance(1)
    assert out.getvalue().splitlines()[-1].startswith("train: 4/4") and "loss 0.5" in out.getvalue()
    with progress_display("auto", io.StringIO()) as factory:  # not a terminal: plain lines
        assert isinstance(factory, PlainProgress)
    with pytest.raises(InputError, match="progress"):
        with progress_display("fancy"):
            pass


def test_cli_options_and_shown_defaults_come_from_the_dataclasses():
    from typer.testing import CliRunner

    from mogsim.cli.app import build_app

    runner = CliRunner()
    train_help = runner.invoke(build_app(), ["train", "--help"], terminal_width=200).output
    for text in ("--lr-warmup-images", "[default: 200000]", "--attn-resolutions", "--grad-clip", "[default: 0]",
                 "--compile / --no-compile", "[default: on for CUDA]", "--checkpoint-every"):
        assert text in train_help, text
    sm_help = runner.invoke(build_app(), ["score-match", "--help"], terminal_width=200).output
    for text in ("--n ", "[default: 512]", "--rank", "--ns", "[default: 256 for mlp, 64 for unet]", "--time-limit"):
        assert text in sm_help, text

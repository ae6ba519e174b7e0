"""``mogsim sample``: results, seeds record, image grids, progress, help, and the README's commands.

Bad input (one line, exit 2, no files) is tested in ``test_bad_inputs.py``."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cifar_like import write_edm_zip
from mogsim.cli.app import main


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


README = Path(__file__).resolve().parents[1] / "README.md"


def test_help_shows_full_descriptions_and_examples(capsys):
    from mogsim.cli.app import EXAMPLES, build_app

    code, out, _ = run_cli(["--help"], capsys)
    assert code == 0 and "Quick start:" in out
    flat = " ".join(out.split())
    for info in build_app().registered_commands:
        doc = " ".join((info.callback.__doc__ or "").strip().split("\n\n")[0].split())
        assert doc and doc in flat, info.name  # the whole first paragraph, never cut with "..."
        assert info.name in EXAMPLES or info.epilog, f"{info.name} has no example"
    assert "..." not in out.split("Commands:")[1].split("Quick start:")[0]
    for name, lines in EXAMPLES.items():
        code, out, _ = run_cli([name, "--help"], capsys)
        assert code == 0 and ("Example" in out) and all(line in out for line in lines), name


def test_sample_molrg_writes_results(tmp_path, capsys):
    code, out, _ = run_cli(["sample", "--seeds", "0-7", "--dim", "12", "--rank", "2", "--steps", "6",
                            "--out", str(tmp_path / "run")], capsys)
    assert code == 0 and "lie on a subspace" in out
    with np.load(tmp_path / "run" / "samples.npz") as z:
        assert z["samples"].shape == (8, 12) and z["seeds"].tolist() == list(range(8))
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["summary"]["fraction_on_subspace"] == 1.0
    assert meta["config"]["rank"] == 2 and "versions" in meta["provenance"]


def test_sample_empirical_copies_training_points(tmp_path, capsys):
    data = np.random.default_rng(0).standard_normal((10, 2, 3))
    np.save(tmp_path / "train.npy", data)
    code, out, _ = run_cli(["sample", "--model", "empirical", "--data", str(tmp_path / "train.npy"),
                            "--seeds", "0-5", "--batch", "4", "--out", str(tmp_path / "emp")], capsys)
    assert code == 0
    meta = json.loads((tmp_path / "emp" / "meta.json").read_text())
    assert meta["summary"]["fraction_copies"] == 1.0
    with np.load(tmp_path / "emp" / "samples.npz") as z:
        idx = meta["summary"]["nearest_index"]
        assert np.allclose(z["samples"], data[idx], atol=1e-3)


def test_sample_empirical_from_cifar_folder_with_subset(tmp_path, capsys):
    """A class-folder CIFAR-like set (PNG), a nested class-balanced subset of 6, samples copying its points."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("airplane", "automobile", "bird"):
        (tmp_path / "set" / c).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "set" / c / f"{i}.png")
    code, _, _ = run_cli(["sample", "--model", "empirical", "--data", str(tmp_path / "set"), "--n", "6",
                          "--seeds", "0-3", "--steps", "10", "--out", str(tmp_path / "o")], capsys)
    assert code == 0
    meta = json.loads((tmp_path / "o" / "meta.json").read_text())
    assert meta["config"]["num_points"] == 6 and meta["summary"]["fraction_copies"] == 1.0
    with np.load(tmp_path / "o" / "samples.npz") as z:
        assert z["samples"].shape == (4, 3, 32, 32) and len(set(z["subset_indices"].tolist())) == 6
    code, _, err = run_cli(["sample", "--model", "empirical", "--data", str(tmp_path / "set"), "--n", "0",
                            "--out", str(tmp_path / "o2")], capsys)
    assert code == 2 and "--n 0" in err


def test_meta_records_the_seeds_explicitly(tmp_path, capsys):
    for spec, values in [("1,5,9", [1, 5, 9]), ("0-19", None)]:
        code, _, _ = run_cli(["sample", "--seeds", spec, "--dim", "6", "--rank", "2", "--steps", "3",
                              "--out", str(tmp_path / spec)], capsys)
        assert code == 0
        seeds = json.loads((tmp_path / spec / "meta.json").read_text())["config"]["seeds"]
        count = 3 if values else 20
        assert seeds == {"spec": spec, "count": count, "first": 1 if values else 0, "last": 9 if values else 19,
                         "values": values}


def test_image_data_gives_a_png_grid_and_vectors_do_not(tmp_path, capsys):
    from PIL import Image

    images = np.random.default_rng(0).uniform(-1, 1, (5, 1, 6, 6))
    np.save(tmp_path / "grey.npy", images)
    code, out, _ = run_cli(["sample", "--model", "empirical", "--data", str(tmp_path / "grey.npy"), "--seeds",
                            "0-9", "--steps", "8", "--out", str(tmp_path / "g")], capsys)
    assert code == 0 and "samples.png" in out
    with Image.open(tmp_path / "g" / "samples.png") as im:
        assert im.mode == "L" and im.size == (8 * 7 + 1, 2 * 7 + 1)  # 10 samples: 8 columns, 2 rows
        grid = np.asarray(im)
    with np.load(tmp_path / "g" / "samples.npz") as z:
        first = np.clip(np.rint((z["samples"][0, 0] + 1) * 127.5), 0, 255)
    assert np.array_equal(grid[1:7, 1:7], first)
    meta = json.loads((tmp_path / "g" / "meta.json").read_text())
    assert meta["summary"]["files"] == ["samples.npz", "meta.json", "samples.png"]
    code, _, _ = run_cli(["sample", "--seeds", "0-3", "--steps", "3", "--out", str(tmp_path / "v")], capsys)
    assert code == 0 and not (tmp_path / "v" / "samples.png").exists()


def test_progress_is_plain_lines_when_stderr_is_not_a_terminal(tmp_path, capsys):
    code, _, err = run_cli(["sample", "--seeds", "0-3", "--steps", "5", "--out", str(tmp_path / "p")], capsys)
    assert code == 0
    lines = err.splitlines()  # mogsim.progress's plain lines: one as the task starts, one at its end
    assert lines[0].startswith("sampling molrg: 0/5 (") and lines[-1].startswith("sampling molrg: 5/5 (")


def test_options_help_and_checks_come_from_sample_config():
    from typer.testing import CliRunner

    from mogsim.cli.app import build_app
    from mogsim.cli.sample import FLAGS, SampleConfig
    from mogsim.errors import InputError

    text = CliRunner().invoke(build_app(), ["sample", "--help"], terminal_width=200).output
    for declared in ("--subset-seed", "--sigma-min", "[default: 0-63]", "[default: 0.002]", "(1..16384)",
                     "[default: all]"):
        assert declared in text, declared
    assert FLAGS["subset_seed"] == "--subset-seed" and FLAGS["n"] == "--n"
    assert SampleConfig().seed_list() == list(range(64)) and float(SampleConfig().sigmas()[0]) == 80.0
    with pytest.raises(InputError) as info:  # the library names parameters; the command line maps them
        SampleConfig(rank=49)
    assert str(info.value).startswith("components=2 * rank=49 = 98 exceeds dim=48")
    assert info.value.parameter == ("components", "rank", "dim")
    with pytest.raises(InputError, match=r"^steps=0: must be >= 1 and <= 10000$"):
        SampleConfig(steps=0)


@pytest.fixture
def cifar_like_zip(tmp_path) -> Path:
    """1,100 random images in EDM's zip layout: enough for the README's --n 1024."""
    return write_edm_zip(tmp_path / "cifar-like.zip", 1100)


def _readme_commands() -> list[tuple[list[str], list[str]]]:
    """Every ``mogsim sample`` and ``python -c`` command of the README, in order, each with the output lines the
    README shows after it (in console blocks, the lines after ``$ command``)."""
    commands: list[tuple[list[str], list[str]]] = []
    output = False  # inside the shown output of a console-block sample command
    for line in README.read_text().replace("\\\n", " ").splitlines():
        text = line.strip()
        if output and text and not text.startswith("```"):
            commands[-1][1].append(text)
            continue
        prompt = text.startswith("$ ")
        text = text[2:] if prompt else text
        runnable = text.startswith(("mogsim sample", "python -c"))
        if runnable:
            commands.append((shlex.split(text, comments=True), []))
        output = prompt and runnable
    return commands


def test_the_readme_sample_commands_run_as_written(tmp_path, cifar_like_zip, monkeypatch, capsys):
    """Each README command runs in order in a fresh folder (so runs/molrg/samples.npz and train.npy come from the
    README's own earlier commands); only --seeds is shortened to 0-7 and the CIFAR-10 path points to a small
    CIFAR-like zip, to keep the suite fast. Printed lines must match the README's, up to the sample count."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    commands = _readme_commands()
    assert sum(argv[0] == "mogsim" for argv, _ in commands) >= 5 and any(out for _, out in commands)
    for argv, shown in commands:
        if argv[0] == "python":
            subprocess.run([sys.executable, *argv[1:]], check=True, cwd=work, timeout=120)
            continue
        args = [str(cifar_like_zip) if a == "../shared/data/cifar10-jpeg/train.zip" else a for a in argv[1:]]
        args[args.index("--seeds") + 1] = "0-7"
        code, out, err = run_cli(args, capsys)
        assert code == 0, (argv, err)
        folder = work / args[args.index("--out") + 1]
        assert (folder / "samples.npz").exists() and (folder / "meta.json").exists()
        for expected in shown:
            assert re.sub(r"^\d+ samples", "8 samples", expected) == out.strip(), (expected, out)
    assert (work / "runs" / "cifar-1024" / "samples.png").exists() and (work / "train.npy").exists()

"""``mogsim sample`` and the CLI's one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mogsim.cli.app import main


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


def test_help_lists_commands(capsys):
    code, out, _ = run_cli(["--help"], capsys)
    assert code == 0 and "sample" in out


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


@pytest.mark.parametrize("args, fragment", [
    (["sample", "--rank", "40"], "exceeds dim"),
    (["sample", "--seeds", "3-1"], "--seeds"),
    (["sample", "--solver", "rk4"], "--solver"),
    (["sample", "--model", "empirical"], "needs --data"),
    (["sample", "--model", "empirical", "--data", "missing.npy"], "no such file"),
    (["sample", "--device", "tpu"], "--device"),
    (["sample", "--dtype", "float16"], "--dtype"),
    (["sample", "--steps", "0"], "steps"),
    (["nonsense"], "No such command"),
])
def test_bad_input_one_line_exit_2(args, fragment, capsys, tmp_path):
    code, _, err = run_cli(args + (["--out", str(tmp_path / "o")] if args[0] == "sample" else []), capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("mogsim: error:") and fragment in err


def test_unwritable_out(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run_cli(["sample", "--out", str(blocker / "sub")], capsys)
    assert code == 2 and "--out" in err


def test_corrupt_data_file(tmp_path, capsys):
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not numpy")
    code, _, err = run_cli(["sample", "--model", "empirical", "--data", str(bad), "--out", str(tmp_path / "o")],
                           capsys)
    assert code == 2 and "cannot read" in err


def test_console_script_runs(tmp_path):
    """The installed ``mogsim`` console script answers --help, and a user mistake exits 2 with one line."""
    script = Path(sys.executable).parent / "mogsim"
    if not script.exists():
        pytest.skip(f"no mogsim console script beside {sys.executable}; is the package installed?")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0 and "sample" in result.stdout
    result = subprocess.run([str(script), "sample", "--rank", "99"], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


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

"""``mogsim train`` end to end on a tiny CIFAR-like EDM zip, resume behaviour, and one-line errors (exit 2)."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mogsim.cli.app import main

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")



@pytest.fixture(scope="module")
def edm_zip(tmp_path_factory) -> Path:
    """12 random 32x32 RGB PNGs in EDM's dataset-tool layout (dataset.json with labels)."""
    from PIL import Image

    path = tmp_path_factory.mktemp("data") / "tiny-cifar.zip"
    rng = np.random.default_rng(0)
    labels = []
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(12):
            name = f"{CLASSES[i % 10]}/{i:04d}.png"
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), "RGB").save(buf, format="PNG")
            zf.writestr(name, buf.getvalue())
            labels.append([name, i % 10])
        zf.writestr("dataset.json", json.dumps({"labels": labels}))
    return path


def run_cli(args: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main(args)
    code = info.value.code
    return 0 if code is None else int(code)


def base_args(data: Path, out: Path) -> list[str]:
    return ["train", "--data", str(data), "--out", str(out), "--n", "6", "--arch", "unet-tiny", "--width", "8",
            "--batch", "4", "--device", "cpu", "--precond", "edm", "--checkpoint-every", "1", "--log-every", "1",
            "--no-progress"]


def test_train_cli_runs_resumes_extends_and_guards_its_folder(edm_zip, tmp_path, capsys):
    import mogsim.data

    if not hasattr(mogsim.data, "load_cifar10"):
        pytest.skip("the data layer (mogsim.data.load_cifar10) is not in this checkout yet")
    out = tmp_path / "run"
    assert run_cli(base_args(edm_zip, out) + ["--steps", "2"]) == 0
    printed = capsys.readouterr().out
    assert "parameters:" in printed and "trained to step 2" in printed
    for name in ("config.json", "subset.json", "log.csv", "summary.json", "checkpoints/ckpt-000000002.pt"):
        assert (out / name).exists(), name
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["n"] == 6 and config["data"]["format"] == "cifar10"
    assert config["budget"] == {"kind": "steps", "value": 2, "steps": 2, "images": 8, "epochs": 8 / 6, "batch": 4}
    assert config["train"]["net"]["kwargs"]["model_channels"] == 8 and config["train"]["precision"] == "fp32"
    assert config["runtime"]["compile"] is None and config["provenance"]["device"] == "cpu"
    assert len(json.loads((out / "subset.json").read_text())["indices"]) == 6
    with open(out / "log.csv", newline="") as fh:
        assert [r["step"] for r in csv.DictReader(fh)] == ["1", "2"]

    assert run_cli(base_args(edm_zip, out) + ["--steps", "2"]) == 0  # nothing left to do
    assert "resumed from ckpt-000000002.pt" in capsys.readouterr().out
    assert run_cli(base_args(edm_zip, out) + ["--images", "12"]) == 0  # a larger budget extends the run
    assert "trained to step 3" in capsys.readouterr().out

    assert run_cli(base_args(edm_zip, out) + ["--steps", "3", "--lr", "0.002"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mogsim: error:") and "\n" not in err and "train.lr" in err and "--force" in err
    assert run_cli(base_args(edm_zip, out) + ["--steps", "1", "--lr", "0.002", "--force"]) == 0
    assert json.loads((out / "config.json").read_text())["train"]["lr"] == 0.002


def test_train_report_writes_the_runs_pdf(edm_zip, tmp_path, capsys):
    from pypdf import PdfReader

    out = tmp_path / "run"
    assert run_cli(base_args(edm_zip, out) + ["--steps", "2", "--report"]) == 0
    assert f"report: {out / 'report.pdf'}" in capsys.readouterr().out
    text = " ".join(page.extract_text() for page in PdfReader(out / "report.pdf").pages)
    assert "Training unet-tiny on 6 items" in " ".join(text.split())


@pytest.mark.parametrize("extra, message", [
    ([], "exactly one of --steps, --images or --epochs"),
    (["--steps", "2", "--images", "100"], "exactly one"),
    (["--steps", "0"], "positive"),
    (["--steps", "2", "--arch", "unet-9"], "--arch"),
    (["--steps", "2", "--precond", "ve"], "--precond"),
    (["--steps", "2", "--n", "100"], "larger than the data set"),
    (["--steps", "2", "--batch", "0"], "--batch"),
    (["--steps", "2", "--device", "tpu"], "--device"),
    (["--steps", "2", "--steps-typo", "1"], "No such option"),
])
def test_bad_inputs_give_one_line_and_exit_2(edm_zip, tmp_path, capsys, extra, message):
    args = base_args(edm_zip, tmp_path / "run")
    if "--n" in extra:
        i = args.index("--n")
        del args[i:i + 2]
    assert run_cli(args + extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mogsim: error:") and "\n" not in err, err
    assert message in err, err


def test_missing_data_and_unwritable_out(tmp_path, capsys, edm_zip):
    assert run_cli(["train", "--data", str(tmp_path / "nope.zip"), "--out", str(tmp_path / "r"), "--steps", "1",
                    "--device", "cpu"]) == 2
    assert "--data" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert run_cli(base_args(edm_zip, blocker) + ["--steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--out" in err and "\n" not in err


def test_divergence_is_one_line_and_exit_1(edm_zip, tmp_path, capsys, monkeypatch):
    from mogsim.training import Trainer, TrainingDiverged

    def diverge(self, step):
        raise TrainingDiverged(step, step * 4)

    monkeypatch.setattr(Trainer, "train_step", diverge)
    assert run_cli(base_args(edm_zip, tmp_path / "run") + ["--steps", "2"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("mogsim: error: training diverged") and "at step 0" in err and "\n" not in err


def test_progress_lines_without_a_terminal_and_attention_for_small_images(tmp_path, capsys):
    """Not on a terminal, train prints a progress line as it starts (not minutes later); unet-tiny on 8x8 images
    puts its attention at the same relative place (4) or where --attn-resolutions says; config.json is strict."""
    from mogsim.params import loads_strict

    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(0).uniform(-1, 1, (6, 3, 8, 8)).astype(np.float32))
    args = ["train", "--data", str(data), "--arch", "unet-tiny", "--width", "8", "--batch", "4", "--device", "cpu",
            "--steps", "2", "--log-every", "1"]
    assert run_cli(args + ["--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert err.splitlines()[0].startswith("train: 0/2") and "train: 2/2" in err and "loss" in err
    config = loads_strict((tmp_path / "a" / "config.json").read_text())
    assert config["train"]["net"]["kwargs"]["attn_resolutions"] == [4]
    assert run_cli(args + ["--out", str(tmp_path / "b"), "--attn-resolutions", "8,2", "--no-progress"]) == 0
    assert capsys.readouterr().err == ""
    config = loads_strict((tmp_path / "b" / "config.json").read_text())
    assert config["train"]["net"]["kwargs"]["attn_resolutions"] == [8, 2]

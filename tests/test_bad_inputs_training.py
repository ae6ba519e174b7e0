"""Bad command-line input for ``mogsim train`` and ``mogsim score-match``: one line on stderr starting
``mogsim: error:`` that names the option, exit code 2, no traceback, and no files left behind.

A table of (argv, expected substring) rows, the shape of ``tests/test_bad_inputs.py`` (the two tables are meant to
be merged). Most rows run in-process (what a subprocess would add is the interpreter start); a few run through the
installed console script. Inputs the rows need live outside the folder that must stay empty.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mogsim.cli.app import main

SM = ["score-match", "--device", "cpu", "--quiet"]


def _train(data: str = "{inputs}/data.npy", *extra: str) -> list[str]:
    return ["train", "--data", data, "--out", "run", "--arch", "unet-tiny", "--width", "8", "--steps", "2",
            "--device", "cpu", "--no-progress", *extra]


ROWS = [
    # score-match: sizes and counts with upper bounds, checked before any work
    (SM + ["--n", "99999999999999999999"], "--n 99999999999999999999"),
    (SM + ["--steps", "99999999999999999999"], "--steps 99999999999999999999"),
    (SM + ["--batch", "0"], "--batch 0"),
    (SM + ["--n", "63"], "--n 63: must be a multiple of --components 2"),
    (SM + ["--rank", "30"], "--rank 30"),
    (SM + ["--lr", "nan"], "--lr nan: pass a finite number"),
    (SM + ["--p-std", "inf"], "--p-std inf"),
    (SM + ["--arch", "resnet"], "--arch 'resnet'"),
    (SM + ["--arch", "unet", "--dim", "20"], "--dim 20"),
    (SM + ["--time-limit", "0"], "--time-limit 0"),
    (SM + ["--seeds", "0-2"], "--seeds: need --sweep"),
    (SM + ["--sweep", "--ns", "16,x"], "--ns '16,x'"),
    (SM + ["--sweep", "--ranks", "2,2"], "--ranks 2,2: a value appears twice"),
    (SM + ["--config", "{inputs}/rank_two.json"], "--rank 'two': pass a whole number"),
    (SM + ["--config", "{inputs}/nan.json"], "--config"),
    (SM + ["--config", "{inputs}/typo.json"], "unknown key(s) rnak"),
    (SM + ["--config", "{inputs}/missing.json"], "--config"),
    (SM + ["--out", "{inputs}/data.npy"], "--out"),
    # train
    (_train("{inputs}/data.npy", "--batch", "99999999999999999999"), "--batch 99999999999999999999"),
    (_train("{inputs}/data.npy", "--grad-clip", "nan"), "--grad-clip nan: pass a finite number"),
    (_train("{inputs}/data.npy", "--lr", "inf"), "--lr inf"),
    (_train("{inputs}/data.npy", "--ema-halflife-images", "-1"), "--ema-halflife-images -1"),
    (_train("{inputs}/data.npy", "--steps", "99999999999999999999"), "--steps 99999999999999999999"),
    (_train("{inputs}/data.npy", "--n", "0"), "--n 0"),
    (_train("{inputs}/data.npy", "--attn-resolutions", "16"), "--attn-resolutions [16]"),
    (_train("{inputs}/data.npy", "--width", "0"), "--width 0"),
    (_train("{inputs}/nan.npy"), "--data: item 1 (and 0 more) holds NaN or Inf"),
    (_train("{inputs}/data.npy", "--out", "{inputs}/notes"), "holds other files (notes.txt)"),
    (["train", "--data", "{inputs}/vectors.npy", "--out", "run", "--arch", "mlp", "--dropout", "0.1", "--steps", "1",
      "--device", "cpu"], "--dropout: applies to UNets"),
]
#: rows also run through the installed console script (the rest run in-process)
SCRIPT_ROWS = (0, 13, 18, 26)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    np.save(folder / "data.npy", rng.standard_normal((6, 3, 8, 8)).astype(np.float32))
    np.save(folder / "vectors.npy", rng.standard_normal((6, 48)).astype(np.float32))
    bad = rng.standard_normal((6, 3, 8, 8)).astype(np.float32)
    bad[1, 0, 2, 2] = np.nan
    np.save(folder / "nan.npy", bad)
    (folder / "rank_two.json").write_text(json.dumps({"rank": "two"}))
    (folder / "nan.json").write_text('{"lr": NaN}')
    (folder / "typo.json").write_text(json.dumps({"rnak": 2}))
    (folder / "notes").mkdir()
    (folder / "notes" / "notes.txt").write_text("someone else's folder")
    return folder


def _check(code: int, err: str, needle: str, workdir: Path, inputs: Path) -> None:
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("mogsim: error:"), err
    assert "Traceback" not in err and needle in lines[0], lines[0]
    assert not any(workdir.iterdir()), sorted(p.name for p in workdir.rglob("*"))
    assert sorted(p.name for p in (inputs / "notes").iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("row", range(len(ROWS)))
def test_bad_input_in_process(row, inputs, tmp_path, monkeypatch, capsys):
    argv, needle = ROWS[row]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main([a.format(inputs=inputs) for a in argv])
    _check(info.value.code, capsys.readouterr().err, needle, tmp_path, inputs)


@pytest.mark.parametrize("row", SCRIPT_ROWS)
def test_bad_input_through_the_console_script(row, inputs, tmp_path):
    argv, needle = ROWS[row]
    exe = shutil.which("mogsim") or str(Path(sys.executable).with_name("mogsim"))
    proc = subprocess.run([exe, *[a.format(inputs=inputs) for a in argv]], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    _check(proc.returncode, proc.stderr, needle, tmp_path, inputs)

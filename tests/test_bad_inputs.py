"""Bad command-line input: exit code 2, one error line on stderr naming the option (last, after the plain progress
lines of a task that had started), no traceback, no files left behind.

``BAD_INPUTS`` is the table: ``(argv, expected substring of the error line)``. ``{inputs}`` in an argument is
replaced by a folder of prepared bad files (see :func:`inputs`); every row runs in its own empty working folder,
which must still be empty afterwards (so ``--out`` folders must not be created or must be removed again), and the
inputs folder must be unchanged. Add rows for new commands and options here. Every row runs in-process (fast);
``CONSOLE_ROWS`` also go through the installed ``mogsim`` console script.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cifar_like import write_edm_zip
from mogsim.cli.app import main

BAD_INPUTS: list[tuple[list[str], str]] = [
    # -- unknown command / option ------------------------------------------------------------------------------------
    (["nonsense"], "No such command"),
    (["--bogus"], "No such option"),
    (["sample", "--bogus", "1"], "No such option"),
    # -- sample: seeds -----------------------------------------------------------------------------------------------
    (["sample", "--seeds", "0-99999999999999999999"], "--seeds"),
    (["sample", "--seeds", "9223372036854775808"], "--seeds"),
    (["sample", "--seeds", "0-10000000"], "at most 10,000,000"),
    (["sample", "--seeds", "3-1"], "--seeds"),
    (["sample", "--seeds", "1,1"], "appears twice"),
    (["sample", "--seeds", ","], "--seeds is empty"),
    (["sample", "--seeds", "-5"], "--seeds"),
    # -- sample: sizes, counts and their upper bounds ----------------------------------------------------------------
    (["sample", "--dim", "99999999999999999999"], "--dim"),
    (["sample", "--dim", "-3"], "--dim -3: must be >= 1"),
    (["sample", "--dim", "8.5"], "--dim"),
    (["sample", "--components", "0"], "--components 0: must be >= 1"),
    (["sample", "--components", "99999999999999999999"], "--components"),
    (["sample", "--rank", "49"], "--rank 49 = 98 exceeds --dim 48"),
    (["sample", "--rank", "40"], "--components * --rank"),
    (["sample", "--steps", "0"], "--steps 0: must be >= 1"),
    (["sample", "--steps", "99999999999999999999"], "--steps"),
    (["sample", "--batch", "0"], "--batch 0: must be >= 1"),
    (["sample", "--batch", "-5"], "--batch"),
    (["sample", "--batch", "99999999999999999999"], "--batch"),
    (["sample", "--batch", "65536", "--dim", "4096", "--components", "64", "--rank", "2"], "pass --batch 512"),
    (["sample", "--mix-seed", "-1"], "--mix-seed"),
    (["sample", "--mix-seed", "99999999999999999999"], "--mix-seed"),
    # -- sample: NaN / inf / out-of-range floats ---------------------------------------------------------------------
    (["sample", "--sigma-min", "nan"], "--sigma-min nan: pass a finite number"),
    (["sample", "--sigma-min", "0"], "--sigma-min"),
    (["sample", "--sigma-max", "inf"], "--sigma-max inf: pass a finite number"),
    (["sample", "--sigma-max", "1e999"], "--sigma-max"),
    (["sample", "--sigma-min", "5", "--sigma-max", "1"], "--sigma-max"),
    (["sample", "--sigma-min", "1", "--sigma-max", "1"], "equal levels"),
    (["sample", "--rho", "nan"], "--rho nan"),
    (["sample", "--rho", "-1"], "--rho"),
    (["sample", "--noise-std", "inf"], "--noise-std inf"),
    (["sample", "--noise-std", "-0.5"], "--noise-std"),
    # -- sample: choices ---------------------------------------------------------------------------------------------
    (["sample", "--solver", "rk4"], "--solver"),
    (["sample", "--model", "gmm"], "--model"),
    (["sample", "--device", "tpu"], "--device"),
    (["sample", "--dtype", "float16"], "--dtype 'float16': pass float32 or float64"),
    (["sample", "--seeds", "abc"], "--seeds 'abc': write a seed list"),
    # -- sample: data ------------------------------------------------------------------------------------------------
    (["sample", "--model", "empirical"], "needs --data"),
    (["sample", "--data", "{inputs}/train.npy"], "--data applies to --model empirical only"),
    (["sample", "--n", "5"], "--n applies to --model empirical only"),
    (["sample", "--model", "empirical", "--data", "missing.npy"], "--data missing.npy: no such file"),
    (["sample", "--model", "empirical", "--data", "{inputs}/corrupt.npy"], "cannot read it"),
    (["sample", "--model", "empirical", "--data", "{inputs}/nan.npy"], "contain NaN or inf (first: item 3)"),
    (["sample", "--model", "empirical", "--data", "{inputs}/inf.pt"], "contain NaN or inf"),
    (["sample", "--model", "empirical", "--data", "{inputs}/vector.npy"], "shape (10,)"),
    (["sample", "--model", "empirical", "--data", "{inputs}/strings.npy"], "need real numbers"),
    (["sample", "--model", "empirical", "--data", "{inputs}/two.npz"], "name the training set 'data'"),
    (["sample", "--model", "empirical", "--data", "{inputs}/dict.pt"], "not a tensor"),
    (["sample", "--model", "empirical", "--data", "{inputs}/not-cifar"], "CIFAR-10 path"),
    (["sample", "--model", "empirical", "--data", "{inputs}/train.npy", "--n", "0"], "--n 0: must be >= 1"),
    (["sample", "--model", "empirical", "--data", "{inputs}/train.npy", "--n", "11"], "--n 11 is larger"),
    # -- sample: output folder and run-time failures -----------------------------------------------------------------
    (["sample", "--out", "{inputs}/train.npy"], "--out"),
    (["sample", "--out", "{inputs}/train.npy/sub"], "--out"),
    (["sample", "--dtype", "float32", "--sigma-max", "1e300", "--seeds", "0-3"], "at step 1 of 18"),
    # -- train: the shared data loader refuses NaN data before any work -----------------------------------------------
    (["train", "--data", "{inputs}/nan.npy", "--out", "run", "--steps", "1", "--arch", "mlp", "--device", "cpu"],
     "contain NaN or inf"),
    # -- theory ------------------------------------------------------------------------------------------------------
    (["theory", "--only", "nonsense"], "nonsense"),
    (["theory", "--only", "tweedie", "--latex", "{inputs}"], "--latex"),
]

SM = ["score-match", "--device", "cpu", "--quiet"]


def _train(data: str = "{inputs}/images.npy", *extra: str) -> list[str]:
    return ["train", "--data", data, "--out", "run", "--arch", "unet-tiny", "--width", "8", "--steps", "2",
            "--device", "cpu", "--no-progress", *extra]


#: ``mogsim score-match`` and ``mogsim train``: bounds before any work, strict config files, foreign folders
TRAINING_ROWS: list[tuple[list[str], str]] = [
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
    (SM + ["--eval-steps", "0"], "--eval-steps 0"),
    (SM + ["--eval-cost-cap", "-1"], "--eval-cost-cap -1"),
    (SM + ["--eval-queries", "8"], "--eval-queries 8"),
    (SM + ["--budget-per-sample", "0"], "--budget-per-sample 0"),
    (SM + ["--budget-per-sample", "nan"], "--budget-per-sample nan"),
    (SM + ["--steps", "100", "--budget-per-sample", "10"], "--steps and --budget-per-sample: give one budget"),
    (SM + ["--shard", "0/2"], "--shard: need --sweep"),
    (SM + ["--sweep", "--shard", "2/2"], "--shard '2/2': write i/M with 0 <= i < M"),
    (SM + ["--sweep", "--shard", "first"], "--shard 'first'"),
    (SM + ["--sweep", "--shard", "0/200"], "fewer than 200 shards"),
    (SM + ["--sweep", "--widths", "0"], "--widths"),
    (SM + ["--sweep", "--widths", "64,64"], "--widths 64,64: a value appears twice"),
    (SM + ["--config", "{inputs}/rank_two.json"], "--rank 'two': pass a whole number"),
    (SM + ["--config", "{inputs}/nan.json"], "--config"),
    (SM + ["--config", "{inputs}/typo.json"], "unknown key(s) rnak"),
    (SM + ["--config", "{inputs}/missing.json"], "--config"),
    (SM + ["--out", "{inputs}/images.npy"], "--out"),
    # train
    (_train("{inputs}/images.npy", "--batch", "99999999999999999999"), "--batch 99999999999999999999"),
    (_train("{inputs}/images.npy", "--grad-clip", "nan"), "--grad-clip nan: pass a finite number"),
    (_train("{inputs}/images.npy", "--lr", "inf"), "--lr inf"),
    (_train("{inputs}/images.npy", "--ema-halflife-images", "-1"), "--ema-halflife-images -1"),
    (_train("{inputs}/images.npy", "--steps", "99999999999999999999"), "--steps 99999999999999999999"),
    (_train("{inputs}/images.npy", "--n", "0"), "--n 0"),
    (_train("{inputs}/images.npy", "--attn-resolutions", "16"), "--attn-resolutions [16]"),
    (_train("{inputs}/images.npy", "--width", "0"), "--width 0"),
    (_train("{inputs}/images.npy", "--out", "{inputs}/notes"), "holds other files (notes.txt)"),
    (_train("{inputs}/images.npy", "--precision", "fp16"), "--precision 'fp16': choose one of fp32, tf32, bf16"),
    (_train("{inputs}/images.npy", "--cuda-graph"), "--cuda-graph: needs a CUDA device"),
    (["train", "--data", "{inputs}/vectors48.npy", "--out", "run", "--arch", "mlp", "--dropout", "0.1", "--steps", "1",
      "--device", "cpu"], "--dropout: applies to UNets"),
]
BAD_INPUTS += TRAINING_ROWS

SR = ["subspace-recovery", "--quiet"]
#: ``mogsim subspace-recovery`` (paper 2, Fig. 4): grids, the trained method's recipe, config files, --out
RECOVERY_ROWS: list[tuple[list[str], str]] = [
    (SR + ["--ranks", "2,49"], "--ranks: d = 49 exceeds --dim n = 48"),
    (SR + ["--components", "7", "--ranks", "8"], "K * d = 7 * 8 = 56 exceeds --dim n = 48"),
    (SR + ["--nks", "0,2"], "--nks '0,2': values must be >= 1"),
    (SR + ["--nks", "2,x"], "--nks '2,x'"),
    (SR + ["--ranks", "2,2"], "--ranks 2,2: a value is listed twice"),
    (SR + ["--dim", "0"], "--dim 0"),
    (SR + ["--methods", "pca,bogus"], "--methods"),
    (SR + ["--trials", "0"], "--trials 0"),
    (SR + ["--threshold", "nan"], "--threshold nan"),
    (SR + ["--time-limit", "0"], "--time-limit 0"),
    (SR + ["--components", "1", "--methods", "ksubspaces"], "not applicable"),
    (SR + ["--methods", "lowrank-net", "--net-ranks", "49"], "--net-ranks: d = 49 exceeds --dim n = 48"),
    (SR + ["--net-components", "7", "--net-ranks", "8"], "--net-components * --net-ranks: K * d = 7 * 8"),
    (SR + ["--net-nks", "0"], "--net-nks '0': values must be >= 1"),
    (SR + ["--net-sigma-min", "0.5"], "--net-sigma-min 0.5 >= --net-sigma-max 0.1"),
    (SR + ["--net-lr", "inf"], "--net-lr inf"),
    (SR + ["--net-starts", "0"], "--net-starts 0"),
    (SR + ["--net-trials", "99999999999999999999"], "--net-trials"),
    (SR + ["--net-trials", "1000", "--net-starts", "1000"], "networks per cell"),
    (SR + ["--config", "{inputs}/typo.json"], "unknown key(s) rnak"),
    (SR + ["--config", "{inputs}/nan.json"], "--config"),
    (SR + ["--out", "{inputs}/images.npy"], "--out"),
]
BAD_INPUTS += RECOVERY_ROWS

JR = ["jacobian-rank", "--quiet", "--device", "cpu"]
#: ``mogsim jacobian-rank`` (paper 2, Fig. 3): the MoLRG's sizes, the model and run folder, the grid, the rank rule
JACOBIAN_ROWS: list[tuple[list[str], str]] = [
    (JR + ["--rank", "49"], "--rank 49 exceeds --dim 48"),
    (JR + ["--components", "13", "--rank", "4"], "--components * --rank = 13 * 4 = 52 exceeds --dim 48"),
    (JR + ["--dim", "0"], "--dim 0"),
    (JR + ["--model", "net"], "--model net: needs --run"),
    (JR + ["--model", "gmm"], "--model"),
    (JR + ["--model", "molrg", "--run", "{inputs}"], "--run: applies to --model net; leave it out"),
    (JR + ["--run", "{inputs}"], "not a folder written by mogsim train or mogsim score-match"),
    (JR + ["--run", "{inputs}/missing-run"], "not a folder written by"),
    (JR + ["--run", "{inputs}/untrained-run"], "has no checkpoints"),
    (JR + ["--seeds", "0-5000"], "at most 4,096"),
    (JR + ["--seeds", "x"], "--seeds 'x'"),
    (JR + ["--energy", "0"], "--energy 0"),
    (JR + ["--energy", "1.5"], "--energy 1.5"),
    (JR + ["--energy", "nan"], "--energy nan"),
    (JR + ["--sigma-min", "100"], "--sigma-min 100.0 >= --sigma-max 80.0"),
    (JR + ["--sampler-steps", "1"], "--sampler-steps 1"),
    (JR + ["--solver", "rk4"], "--solver"),
    (JR + ["--max-batch", "0"], "--max-batch 0"),
    (JR + ["--precision", "fp16"], "--precision"),
    (JR + ["--precision", "bf16"], "--precision bf16: applies to --model net"),
    (["jacobian-rank", "--quiet", "--device", "tpu"], "--device"),
    (JR + ["--out", "{inputs}/images.npy"], "--out"),
    (JR + ["--config", "{inputs}/typo.json"], "unknown key(s) rnak"),
]
BAD_INPUTS += JACOBIAN_ROWS
GAP = ["cifar-optimal-gap", "--device", "cpu", "--quiet", "--out", "exp", "--data", "{inputs}/cifar20"]
#: ``mogsim cifar-optimal-gap``: the grid, the budget, the data and the similarity, all before any file is written
GAP_ROWS: list[tuple[list[str], str]] = [
    (GAP + ["--ns", "64"], "--ns 64 is above the size of the training split (20 images"),
    (GAP + ["--ns", "8", "--archs", "unet-999"], "--archs ('unet-999',): choose one of"),
    (GAP + ["--ns", "8", "--archs", "unet-64", "--widths", "7"], "--widths 7: unet-64 cannot be built"),
    (GAP + ["--ns", ""], "--ns is empty"),
    (GAP + ["--ns", "8", "--seeds", "0,0"], "--seeds '0,0': a seed appears twice"),
    (GAP + ["--ns", "8", "--images", "100", "--eval-at", "200"], "--eval-at 200 is beyond the budget"),
    (GAP[:-2] + ["--data", "{inputs}/not-cifar"], "CIFAR-10 path"),
    (GAP[:-2], "--data: required"),
    (GAP + ["--ns", "8", "--similarity", "{inputs}/corrupt.npy"], "--similarity"),
    (GAP + ["--ns", "8", "--shard", "2/2"], "--shard '2/2': need 0 <= i < M"),
    (GAP + ["--ns", "8", "--launcher", "submitit", "--shard", "0/2"], "makes the shards itself; leave --shard out"),
    (GAP + ["--ns", "8", "--resolution", "12"], "--resolution 12: choose 32, 16 or 8"),
    (GAP + ["--ns", "8", "--time-limit", "0"], "--time-limit 0"),
]
BAD_INPUTS += GAP_ROWS

#: Rows (their argv joined by spaces) that also run through the installed console script: a subprocess each,
#: a second or more of start-up, so only a few.
CONSOLE_ROWS = ["nonsense", "sample --seeds 0-99999999999999999999",
                "sample --model empirical --data {inputs}/nan.npy",
                "score-match --device cpu --quiet --n 99999999999999999999"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """A folder of bad (and one good) input files, shared by the rows."""
    folder = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    train = rng.standard_normal((10, 4))
    np.save(folder / "train.npy", train)
    (folder / "corrupt.npy").write_bytes(b"\x93NUMPY this is not an array")
    nan = train.copy()
    nan[3, 1] = np.nan
    np.save(folder / "nan.npy", nan)
    torch.save(torch.tensor([[1.0, float("inf")], [0.0, 1.0]]), folder / "inf.pt")
    np.save(folder / "vector.npy", np.arange(10.0))
    np.save(folder / "strings.npy", np.array([["a", "b"], ["c", "d"]]))
    np.savez(folder / "two.npz", a=train, b=train)
    torch.save({"weights": torch.zeros(3)}, folder / "dict.pt")
    (folder / "cifar20").mkdir()
    write_edm_zip(folder / "cifar20" / "train.zip", 20)
    (folder / "not-cifar").mkdir()
    (folder / "not-cifar" / "readme.txt").write_text("no images here")
    np.save(folder / "images.npy", rng.standard_normal((6, 3, 8, 8)).astype(np.float32))
    np.save(folder / "vectors48.npy", rng.standard_normal((6, 48)).astype(np.float32))
    (folder / "rank_two.json").write_text(json.dumps({"rank": "two"}))
    (folder / "nan.json").write_text('{"lr": NaN}')
    (folder / "typo.json").write_text(json.dumps({"rnak": 2}))
    (folder / "untrained-run").mkdir()  # a mogsim train run folder that never wrote a checkpoint
    (folder / "untrained-run" / "config.json").write_text(json.dumps({"format": "mogsim-train-run", "train": {"net": {
        "name": "mlp", "family": "mlp", "sample_shape": [48], "kwargs": {"dim": 48}}}}))
    (folder / "notes").mkdir()
    (folder / "notes" / "notes.txt").write_text("someone else's folder")
    return folder


def _argv(row: list[str], inputs: Path) -> list[str]:
    return [arg.replace("{inputs}", str(inputs)) for arg in row]


def _snapshot(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


#: A plain progress line (``mogsim.progress.PlainProgress``): a run-time failure may follow the lines of a task.
PROGRESS_LINE = re.compile(r"^[\w -]+: \d+/\d+ \(\d+ s\)")


def _check(code: int, err: str, expected: str, cwd: Path, inputs: Path, before: list[str]) -> None:
    assert code == 2, err
    assert "Traceback" not in err, err
    *progress, last = err.splitlines() or [""]
    assert last.startswith("mogsim: error: ") and all(PROGRESS_LINE.match(line) for line in progress), err
    assert expected in last, err
    assert _snapshot(cwd) == [], f"left files behind: {_snapshot(cwd)}"
    assert _snapshot(inputs) == before, "changed the inputs folder"


@pytest.mark.parametrize("row, expected", BAD_INPUTS, ids=[" ".join(r)[:60] for r, _ in BAD_INPUTS])
def test_bad_input_in_process(row, expected, inputs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    before = _snapshot(inputs)
    with pytest.raises(SystemExit) as info:
        main(_argv(row, inputs))
    _check(info.value.code, capsys.readouterr().err, expected, tmp_path, inputs, before)


@pytest.mark.parametrize("joined", CONSOLE_ROWS)
def test_bad_input_through_console_script(joined, inputs, tmp_path):
    script = Path(sys.executable).parent / "mogsim"
    if not script.exists():
        pytest.skip(f"no mogsim console script beside {sys.executable}; is the package installed?")
    row, expected = next((r, e) for r, e in BAD_INPUTS if " ".join(r) == joined)
    before = _snapshot(inputs)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([str(script), *_argv(row, inputs)], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path, env=env)
    _check(result.returncode, result.stderr, expected, tmp_path, inputs, before)

"""The GPU calls' scripts plan before they train: a call whose groups cannot finish within its seconds is refused
(exit 2, one line, no output folder), since checkpoints stay on the device and no later call can resume it.

Only the planning runs here (``--plan-only`` and the refusals need bash and a Python, no torch, no GPU)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GRID = ROOT / "reports" / "unet-molrg-grid" / "gpu_call.sh"
JACOBIAN = ROOT / "reports" / "jacobian-trained" / "gpu_call.sh"
pytestmark = pytest.mark.skipif(not GRID.is_file() or shutil.which("bash") is None,
                                reason="no reports/ beside the tests, or no bash")
SETTLING = ["--ranks", "3,6", "--nk-over-d", "16,23,32,45,64,90,128,181", "--eval-steps", "9"]


def call(script: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(["bash", str(script), str(out), *args], capture_output=True, text=True, timeout=60,
                          env=env, cwd=ROOT)


def test_settling_call_fits_one_call(tmp_path: Path):
    """The README's plan: one group of 8 at 4,800 steps of 512 per call of 540 s, predicted within it."""
    done = call(GRID, tmp_path / "out", "540", *SETTLING, "--steps", "4800", "--shard", "0/2", "--plan-only")
    assert done.returncode == 0, done.stderr
    plan = re.search(r"(\d+) of (\d+) group\(s\) x (\d+) models x 4800 steps x 512 = 2457600 images per model; "
                     r"about (\d+) s of SECONDS = 540", done.stdout)
    assert plan, done.stdout
    mine, groups, members, predicted = map(int, plan.groups())
    assert (mine, groups, members) == (1, 2, 8)
    assert 8 * 4800 * 512 / 50000 < predicted <= 540
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("shard, most", [("0/2", 5200), (None, 2350)])
def test_default_steps_are_the_most_that_fit(tmp_path: Path, shard: str | None, most: int):
    """Without --steps the call takes the most steps (in 50s) whose prediction fits: one group, or both."""
    extra = ["--shard", shard] if shard else []
    done = call(GRID, tmp_path / "out", "540", *SETTLING, *extra, "--plan-only")
    assert done.returncode == 0, done.stderr
    assert f"x {most} steps x 512" in done.stdout, done.stdout
    refused = call(GRID, tmp_path / "out", "540", *SETTLING, *extra, "--steps", str(most + 100), "--plan-only")
    assert refused.returncode == 2


def test_grid_refuses_groups_that_cannot_finish(tmp_path: Path):
    done = call(GRID, tmp_path / "out", "540", *SETTLING, "--steps", "6000", "--shard", "1/2")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_call.sh: error:") and "--steps" in lines[0], done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("script", [GRID, JACOBIAN], ids=["grid", "jacobian"])
def test_unknown_option_is_refused(tmp_path: Path, script: Path):
    done = call(script, tmp_path / "out", "100", "--no-such-option")
    assert done.returncode == 2 and "gpu_call.sh: error: unknown option --no-such-option" in done.stderr


def test_cifar_only_refuses_a_budget_that_leaves_no_time_for_jacobians(tmp_path: Path):
    """--cifar-only IMAGES: start-up + IMAGES at 2,825 images/s + 110 s of Jacobians must fit SECONDS."""
    done = call(JACOBIAN, tmp_path / "out", "450", "--cifar-only", "1000000")  # 25 + 353 + 110 = 488 > 450
    assert done.returncode == 2 and "lower IMAGES" in done.stderr, done.stderr

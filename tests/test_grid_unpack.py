"""reports/unet-molrg-grid/unpack.sh on the archives two H200 calls returned (reports/unet-molrg-grid-2m5): the second
call's combined files already cover every cell, so they are taken as they are (no sweep re-run, which on a CPU would
key a new sweep folder by device type and train the CUDA shards again from scratch); shards whose combined files
cover only part of the grid need their device to merge, and without it the script stops with exit 2, writing
nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
UNPACK = ROOT / "reports" / "unet-molrg-grid" / "unpack.sh"
RUN = ROOT / "reports" / "unet-molrg-grid-2m5"
pytestmark = pytest.mark.skipif(not (RUN / "raw-2.tar.gz").is_file() or shutil.which("bash") is None,
                                reason="no reports/ beside the tests, or no bash")


def returned(tmp: Path, name: str, archive: str, log: str) -> Path:
    """A folder laid out as a call brings it back: unet-molrg-grid.tar.gz and run.log."""
    folder = tmp / name
    folder.mkdir()
    shutil.copy(RUN / archive, folder / "unet-molrg-grid.tar.gz")
    shutil.copy(RUN / log, folder / "run.log")
    return folder


def unpack(dest: Path, *calls: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PY": sys.executable, "DEST": str(dest)}
    return subprocess.run(["bash", str(UNPACK), *map(str, calls)], capture_output=True, text=True, timeout=300,
                          env=env, cwd=ROOT)


def test_a_call_holding_every_cell_is_taken(tmp_path: Path):
    a = returned(tmp_path, "a", "raw.tar.gz", "gpu_call.log")
    b = returned(tmp_path, "b", "raw-2.tar.gz", "gpu_call-2.log")
    done = unpack(tmp_path / "dest", a, b)
    assert done.returncode == 0, done.stderr
    got = json.loads((tmp_path / "dest" / "sweep_collapse.json").read_text())["final"]
    want = json.loads((RUN / "sweep_collapse.json").read_text())["final"]
    assert got["per_d"]["6"]["crossing"] == want["per_d"]["6"]["crossing"]
    assert got["pooled"]["crossing"] == want["pooled"]["crossing"]
    assert json.loads((tmp_path / "dest" / "sweep_metrics.json").read_text())["cells_done"] == 16
    assert (tmp_path / "dest" / "raw-2.tar.gz").read_bytes() == (RUN / "raw-2.tar.gz").read_bytes()
    assert "Sweep:" not in done.stdout  # no sweep ran


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the CUDA shards would merge")
def test_partial_cuda_shards_without_a_gpu_stop_with_nothing_written(tmp_path: Path):
    a = returned(tmp_path, "a", "raw.tar.gz", "gpu_call.log")
    again = returned(tmp_path, "again", "raw.tar.gz", "gpu_call.log")
    done = unpack(tmp_path / "dest", a, again)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("unpack.sh: error:")
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "dest").exists()


def test_a_folder_without_the_archive_is_refused(tmp_path: Path):
    done = unpack(tmp_path / "dest", tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("unpack.sh: error:") and "unet-molrg-grid.tar.gz" in done.stderr
    assert not (tmp_path / "dest").exists()

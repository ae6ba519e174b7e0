"""benchmarks/run_cifar_gap_gpu.sh: bad flags stop before anything runs (one line, exit 2, no files)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "run_cifar_gap_gpu.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


@pytest.mark.parametrize(("flags", "message"), [
    (["--grid", "--widths"], "--grid and --widths exclude each other"),
    (["--memorize", "--exponent"], "--memorize and --exponent exclude each other"),
    (["--n", "128"], "--n sets the N of --memorize"),
    (["--grid", "--n", "128"], "--n sets the N of --memorize"),
    (["--memorize", "--n", "0"], "--n takes a positive whole number"),
    (["--memorize", "--n", "1e3"], "--n takes a positive whole number"),
    (["--memorize", "--n"], "--n takes a positive whole number"),
    (["--wide"], "unknown flag --wide"),
    (["--grid-wide", "--widths"], "--grid-wide and --widths exclude each other"),
    (["--ns", "64,128"], "--ns sets the N of --grid or --grid-wide"),
    (["--memorize", "--ns", "64"], "--ns sets the N of --grid or --grid-wide"),
    (["--grid-wide", "--ns", "128,64"], "--ns takes ascending positive whole numbers"),
    (["--grid-wide", "--ns", "64,64"], "--ns takes ascending positive whole numbers"),
    (["--grid", "--ns", "64,,128"], "--ns takes ascending positive whole numbers"),
    (["--grid", "--ns", "0"], "--ns takes ascending positive whole numbers"),
    (["--grid-wide", "--ns"], "--ns takes ascending positive whole numbers"),
])
def test_cifar_gap_gpu_script_rejects_bad_flags(tmp_path: Path, flags: list[str], message: str) -> None:
    results = tmp_path / "results"
    proc = subprocess.run(["bash", str(SCRIPT), *flags, str(tmp_path / "data"), str(results)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("run_cifar_gap_gpu.sh: error: ") and message in lines[0]
    assert not results.exists()

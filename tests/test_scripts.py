"""Every benchmark and script of the repository still imports against the current API: a script answers
``--help``, a helper module (no ``__main__`` block) imports.

They run only on a GPU or by hand, so nothing else would notice an import of a renamed function.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted([*ROOT.glob("benchmarks/*.py"), *ROOT.glob("scripts/*.py")])


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_script_answers_help(script: Path):
    if not SCRIPTS:
        pytest.skip("no scripts beside the tests (installed package without the repository)")
    runnable = '__name__ == "__main__"' in script.read_text()
    command = [str(script), "--help"] if runnable else ["-c", f"import runpy; runpy.run_path({str(script)!r})"]
    done = subprocess.run([sys.executable, *command], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    if runnable:
        assert "usage" in done.stdout.lower(), done.stdout[:500]

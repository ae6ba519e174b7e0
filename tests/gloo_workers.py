"""Launch a script as the ranks of a CPU process group (gloo) for the DDP tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(script: Path, *args: str, world_size: int = 2, timeout: float = 300) -> list[str]:
    """Run ``script args`` as ranks 0..world_size-1 (one thread each) and wait; fails the test if a rank times out
    or exits with an error. Returns each rank's output."""
    port, procs = free_port(), []
    for rank in range(world_size):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        procs.append(subprocess.Popen([sys.executable, str(script), *args], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outputs = []
    for p in procs:
        try:
            outputs.append(p.communicate(timeout=timeout)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("DDP workers timed out")
    assert all(p.returncode == 0 for p in procs), "\n".join(outputs)
    return outputs

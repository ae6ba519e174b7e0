"""What every result file records about how it was made: versions, git commit, device, time, command."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the source tree mogsim runs from (with ``-dirty`` if it has changes), else None.

    ``MOGSIM_GIT_COMMIT`` overrides it, for installed copies whose source tree is gone.
    """
    env = os.environ.get("MOGSIM_GIT_COMMIT")
    if env:
        return env
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "") if commit else None


def versions() -> dict[str, str]:
    """Versions of Python, mogsim and the numeric libraries."""
    out = {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__}
    try:
        out["mogsim"] = metadata.version("mogsim")
    except metadata.PackageNotFoundError:
        out["mogsim"] = "unknown"
    if torch.version.cuda:
        out["cuda"] = str(torch.version.cuda)
    return out


def provenance(device: torch.device | str | None = None) -> dict[str, Any]:
    """A JSON-ready record of the code, libraries, machine and command behind a result."""
    record: dict[str, Any] = {
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "versions": versions(),
        "platform": platform.platform(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "",
    }
    if device is not None:
        dev = torch.device(device)
        record["device"] = str(dev)
        record["device_name"] = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu"
    return record

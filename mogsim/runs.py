"""Run folders: one folder per resolved configuration, keyed by its hash, written atomically and resumable.

Layout of a run folder ``<root>/<slug>-<key>/`` (``key`` = the first 12 hex digits of the SHA-256 of the resolved
configuration as sorted JSON):

* ``config.json``: ``{"key", "config" (resolved), "provenance"}``, written when the run starts;
* ``train_state.pt``: the training state while training (removed once the checkpoint exists);
* ``checkpoint.pt``: the trained (EMA) weights;
* ``metrics.json``: written last, so its presence means the run finished; re-running reuses it.

A folder whose ``config.json`` holds a different key is never reused (no silent reuse of a stale result).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from .errors import InputError
from .io import atomic_path, write_json, write_npz


def config_key(resolved: Mapping[str, Any]) -> str:
    """The run-folder key of a resolved configuration: the first 12 hex digits of SHA-256 of its sorted JSON."""
    return hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:12]


def write_csv(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write dict rows as CSV (header from the first row's keys), atomically; floats at full precision."""
    rows = list(rows)
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0].keys()), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (repr(float(v)) if isinstance(v, (float, np.floating)) else v) for k, v in row.items()})
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())
    return Path(path)


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts of strings."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


class RunFolder:
    """A run folder for one resolved configuration (see module docs)."""

    def __init__(self, root: str | os.PathLike, slug: str, key: str) -> None:
        self.key = key
        self.path = Path(root) / f"{slug}-{key}"

    # paths
    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.json"

    @property
    def state_path(self) -> Path:
        return self.path / "train_state.pt"

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint.pt"

    def file(self, name: str) -> Path:
        """A path inside the folder."""
        return self.path / name

    # state
    def is_done(self) -> bool:
        """True when ``metrics.json`` exists (the run finished)."""
        return self.metrics_path.exists()

    def start(self, resolved: Mapping[str, Any], provenance: Mapping[str, Any]) -> None:
        """Create the folder and write ``config.json``, or check that an existing one is this configuration."""
        if self.config_path.exists():
            try:
                stored = json.loads(self.config_path.read_text())
            except (OSError, json.JSONDecodeError):
                stored = {}
            if stored.get("key") != self.key:
                raise InputError(f"{self.path} holds a different run (key {stored.get('key')!r}, expected "
                                 f"{self.key}); delete it or choose another --out")
            return
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.config_path, {"key": self.key, "config": dict(resolved), "provenance": dict(provenance)})

    def load_metrics(self) -> dict[str, Any]:
        """The finished run's metrics."""
        return json.loads(self.metrics_path.read_text())

    def write_metrics(self, metrics: Mapping[str, Any]) -> None:
        write_json(self.metrics_path, dict(metrics))

    def write_csv(self, name: str, rows: Iterable[Mapping[str, Any]]) -> Path:
        return write_csv(self.file(name), rows)

    def write_npz(self, name: str, **arrays: np.ndarray) -> Path:
        return write_npz(self.file(name), **arrays)

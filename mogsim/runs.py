"""Run folders: the one place where every command keeps its config, lock, checkpoints and results.

A run folder holds

* ``config.json``: strict JSON (no NaN/Infinity) with ``format`` (the kind of run), the resolved configuration,
  provenance and one entry per launch (``launches``); content-addressed runs also record their ``key``;
* ``.lock``: held (``fcntl.flock``) by the process working in the folder, so a second process on it stops with one
  line; the kernel releases the lock when its holder exits, so a killed run never blocks the next one;
* ``checkpoints/ckpt-<step>.pt``: training state in the one checkpoint format of :mod:`mogsim.training.checkpoint`,
  written atomically (a killed run leaves the old or the new file, never half of one), ``weights_only`` loadable;
* results (``metrics.json`` or ``summary.json`` and their tables), written last: their presence means "finished".

:meth:`RunFolder.session` opens a folder for work: it refuses a folder holding unrelated files or another kind of
run, resumes one that holds the same run (same key, or the same compared sections), refuses a different run unless
``force`` (which deletes the old run's files and starts over), writes ``config.json`` and holds the lock.
Content-addressed runs (:meth:`RunFolder.keyed`) live in ``<root>/<slug>-<key>/`` with ``key`` the first 12 hex
digits of the SHA-256 of the resolved configuration, so a finished configuration is found again and reused.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch

from .errors import InputError
from .io import atomic_path, write_json, write_npz
from .params import dumps_strict, loads_strict

try:
    import fcntl
except ImportError:  # not on Windows: run folders are then not locked
    fcntl = None  # type: ignore[assignment]

CONFIG_FILE = "config.json"
LOCK_FILE = ".lock"
CHECKPOINT_DIR = "checkpoints"
_CHECKPOINT_NAME = re.compile(r"^ckpt-(\d+)\.pt$")


def config_key(resolved: Mapping[str, Any]) -> str:
    """The run-folder key of a resolved configuration: the first 12 hex digits of SHA-256 of its sorted JSON."""
    return hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:12]


def jsonable(data: Any) -> Any:
    """``data`` as it reads back from strict JSON (tuples become lists), so it compares equal to a stored copy."""
    return loads_strict(dumps_strict(data))


# -- files -------------------------------------------------------------------------------------------------------------
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


def write_config(path: str | os.PathLike, data: Mapping[str, Any]) -> Path:
    """Write a config file as strict JSON, atomically."""
    text = dumps_strict(dict(data))
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def read_config(path: str | os.PathLike) -> dict[str, Any] | None:
    """A stored config file (strict JSON), or None when it is missing or unreadable."""
    try:
        data = loads_strict(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def save_checkpoint(path: str | os.PathLike, payload: Mapping[str, Any]) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename into place."""
    with atomic_path(path) as tmp:
        torch.save(dict(payload), tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint (plain data only: ``weights_only=True``)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"checkpoint {p}: does not exist; pass a ckpt-*.pt file or a run folder",
                         parameter="checkpoint")
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file, reported as one line
        raise InputError(f"checkpoint {p}: cannot be read ({type(exc).__name__}: {exc}); "
                         "delete it to resume from the previous one", parameter="checkpoint") from None


def make_folder(path: str | os.PathLike, *, parameter: str = "out") -> Path:
    """Create a folder (and its parents) to write results into; a file in the way or a folder that cannot be created
    is a one-line :class:`InputError` naming ``parameter``."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError(f"{parameter}={str(p)!r}: exists and is a file; give a folder path", parameter=parameter)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{parameter}={str(p)!r}: cannot create it ({exc.strerror}); choose a writable folder",
                         parameter=parameter) from None
    return p


def config_differences(old: Mapping[str, Any], new: Mapping[str, Any], sections: Sequence[str],
                       ignored: Iterable[tuple[str, ...]] = ()) -> list[str]:
    """``["train.lr: 0.001 -> 0.0002", ...]`` over ``sections`` of two records, skipping ``ignored`` paths."""
    skip = set(ignored)
    diffs: list[str] = []

    def walk(a: Any, b: Any, path: tuple[str, ...]) -> None:
        if path in skip:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                walk(a.get(key, "<absent>"), b.get(key, "<absent>"), path + (key,))
        elif a != b:
            diffs.append(f"{'.'.join(path)}: {a!r} -> {b!r}")

    for section in sections:
        walk(old.get(section, {}), new.get(section, {}), (section,))
    return diffs


# -- the folder --------------------------------------------------------------------------------------------------------
class RunFolder:
    """One run's folder (see the module docs). ``kind`` names the kind of run, e.g. ``mogsim-train-run`` (needed to
    open it for work; reading needs none)."""

    def __init__(self, path: str | os.PathLike, *, kind: str | None = None, key: str | None = None) -> None:
        self.path, self.kind, self.key = Path(path), kind, key

    @classmethod
    def keyed(cls, root: str | os.PathLike, slug: str, resolved: Mapping[str, Any], *, kind: str) -> "RunFolder":
        """The content-addressed folder ``<root>/<slug>-<key>`` of a resolved configuration."""
        key = config_key(resolved)
        return cls(Path(root) / f"{slug}-{key}", kind=kind, key=key)

    # paths and files
    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    def file(self, name: str) -> Path:
        """A path inside the folder."""
        return self.path / name

    def read_config(self) -> dict[str, Any] | None:
        return read_config(self.config_path)

    def has(self, name: str) -> bool:
        """Whether the folder holds ``name`` (e.g. the results file that marks a finished run)."""
        return self.file(name).exists()

    def read_json(self, name: str) -> Any:
        return json.loads(self.file(name).read_text())

    def write_json(self, name: str, data: Any) -> Path:
        return write_json(self.file(name), data)

    def write_csv(self, name: str, rows: Iterable[Mapping[str, Any]]) -> Path:
        return write_csv(self.file(name), rows)

    def write_npz(self, name: str, **arrays: np.ndarray) -> Path:
        return write_npz(self.file(name), **arrays)

    # checkpoints
    def checkpoint_path(self, step: int) -> Path:
        """``checkpoints/ckpt-<step, 9 digits>.pt`` (step = optimizer steps completed)."""
        return self.path / CHECKPOINT_DIR / f"ckpt-{step:09d}.pt"

    def checkpoints(self) -> list[tuple[int, Path]]:
        """(step, path) of the folder's checkpoints, oldest first."""
        folder = self.path / CHECKPOINT_DIR
        if not folder.is_dir():
            return []
        return sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := _CHECKPOINT_NAME.match(p.name)))

    def latest_checkpoint(self) -> Path | None:
        """The checkpoint with the most steps, or None."""
        found = self.checkpoints()
        return found[-1][1] if found else None

    def prune_checkpoints(self, keep: int) -> None:
        """Delete all but the newest ``keep`` checkpoints (``keep <= 0`` keeps all)."""
        if keep > 0:
            for _, path in self.checkpoints()[:-keep]:
                path.unlink(missing_ok=True)

    # opening a folder for work
    def check_owner(self) -> None:
        """Refuse a folder that holds files of something else: only a new folder, an empty one or one holding this
        kind of run may be used. Writes nothing."""
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"out={str(self.path)!r}: exists and is a file; give a folder path", parameter="out")
        if not self.path.is_dir():
            return
        stored = self.read_config()
        if (stored is not None and stored.get("format") == self.kind) or (stored is None and self.config_path.exists()):
            return  # this kind of run, or a damaged config.json that session() reports
        others = sorted(p.name for p in self.path.iterdir() if p.name != LOCK_FILE)
        if others:
            what = (f"a {stored.get('format')} run" if stored and stored.get("format")
                    else f"other files ({', '.join(others[:3])}{', ...' if len(others) > 3 else ''})")
            raise InputError(f"out={str(self.path)!r}: holds {what}, not a {self.kind}; choose a new or empty "
                             "folder", parameter="out")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Create the folder and hold its lock for the block; another process holding it is a one-line error."""
        make_folder(self.path)
        if fcntl is None:
            yield
            return
        try:
            fh = open(self.path / LOCK_FILE, "a+")
        except OSError as exc:
            raise InputError(f"out={str(self.path)!r}: cannot write there ({exc.strerror}); choose a writable folder",
                             parameter="out") from None
        with fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.seek(0)
                holder = fh.read().strip() or "unknown"
                raise InputError(f"out={str(self.path)!r}: another mogsim process (pid {holder}) is working in this "
                                 "run folder; wait for it to finish, or choose another folder", parameter="out") from None
            try:
                fh.seek(0)
                fh.truncate()
                fh.write(f"{os.getpid()}\n")
                fh.flush()
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    @contextlib.contextmanager
    def session(self, record: Mapping[str, Any], *, compared: Sequence[str] = ("key",),
                ignored: Iterable[tuple[str, ...]] = (), force: bool = False, extra_files: Sequence[str] = (),
                launch: Mapping[str, Any] | None = None) -> Iterator[Path | None]:
        """Open the folder for work on the run described by ``record`` (JSON-ready; ``format`` and ``key`` are
        added), holding the lock; yields the checkpoint to resume from, or None for a fresh start.

        The stored run is the same when the ``compared`` sections of the records agree (``ignored`` paths aside);
        a different run is refused unless ``force``, which deletes its ``config.json``, checkpoints, results and
        ``extra_files``. ``launch`` is recorded, with the checkpoint resumed from, in ``config.json``'s ``launches``.
        """
        if self.kind is None:
            raise TypeError("RunFolder.session needs the kind of run")
        self.check_owner()
        record = jsonable({**record, "format": self.kind, **({"key": self.key} if self.key else {})})
        with self.locked():
            stored = self.read_config() if self.config_path.exists() else None
            if self.config_path.exists() and stored is None:
                raise InputError(f"out={str(self.path)!r}: {CONFIG_FILE} is unreadable; fix it, or use force to "
                                 "start over", parameter=("out", "force"))
            if stored is not None:
                diffs = config_differences(stored, record, compared, ignored)
                if diffs and not force:
                    more = f" (and {len(diffs) - 1} more)" if len(diffs) > 1 else ""
                    raise InputError(f"out={str(self.path)!r}: holds a run with a different config: {diffs[0]}{more};"
                                     " use another folder, the same options, or force to start that run over",
                                     parameter=("out", "force"))
                if diffs or force:
                    self._delete_run(extra_files)
                    stored = None
            resume = self.latest_checkpoint() if stored is not None else None
            entry = {**(launch or {}), "resumed_from": resume.name if resume is not None else None}
            launches = (stored or {}).get("launches", [])
            write_config(self.config_path, {**record, "launches": launches + [jsonable(entry)]})
            yield resume

    def _delete_run(self, extra_files: Sequence[str]) -> None:
        shutil.rmtree(self.path / CHECKPOINT_DIR, ignore_errors=True)
        for name in (CONFIG_FILE, *extra_files):
            self.file(name).unlink(missing_ok=True)

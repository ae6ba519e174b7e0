"""The one run-folder layer: ownership checks, the lock (also against stale locks of dead processes), resume or
refuse, force, strict config files, checkpoints."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from mogsim.errors import InputError
from mogsim.runs import RunFolder, config_key, load_checkpoint, read_config, save_checkpoint

RECORD = {"train": {"lr": 0.001}, "data": {"n": 3}}


def open_run(folder: RunFolder, record=RECORD, **kw):
    return folder.session(record, compared=("train", "data"), **kw)


def test_a_new_folder_is_created_with_a_strict_config_and_launches(tmp_path):
    folder = RunFolder(tmp_path / "run", kind="test-run")
    with open_run(folder, launch={"command": "a"}) as resume:
        assert resume is None and (tmp_path / "run" / ".lock").exists()
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["format"] == "test-run" and stored["train"] == {"lr": 0.001}
    assert stored["launches"] == [{"command": "a", "resumed_from": None}]
    save_checkpoint(folder.checkpoint_path(7), {"step": 7})
    with open_run(folder, launch={"command": "b"}) as resume:
        assert resume is not None and resume.name == "ckpt-000000007.pt"
    assert [x["resumed_from"] for x in read_config(folder.config_path)["launches"]] == [None, "ckpt-000000007.pt"]


def test_a_different_run_is_refused_unless_forced(tmp_path):
    folder = RunFolder(tmp_path, kind="test-run")
    with open_run(folder):
        save_checkpoint(folder.checkpoint_path(3), {"step": 3})
    (tmp_path / "log.csv").write_text("step\n1\n")
    other = {**RECORD, "train": {"lr": 0.01}}
    with pytest.raises(InputError, match=r"different config: train\.lr: 0\.001 -> 0\.01.*force") as info:
        with open_run(folder, other):
            pass
    assert info.value.parameter == ("out", "force")
    with open_run(folder, other, force=True, extra_files=("log.csv",)) as resume:
        assert resume is None and folder.checkpoints() == [] and not (tmp_path / "log.csv").exists()


def test_unrelated_files_and_other_kinds_of_run_are_refused_before_anything_is_written(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match=r"out=.*holds other files \(notes\.txt\)") as info:
        with open_run(RunFolder(tmp_path, kind="test-run")):
            pass
    assert info.value.parameter == "out"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # no lock file, no config left behind
    with open_run(RunFolder(tmp_path / "a", kind="kind-a")):
        pass
    with pytest.raises(InputError, match="holds a kind-a run, not a kind-b"):
        with open_run(RunFolder(tmp_path / "a", kind="kind-b")):
            pass
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(InputError, match="exists and is a file"):
        RunFolder(file, kind="test-run").check_owner()
    with pytest.raises(InputError, match="unreadable"):
        (tmp_path / "a" / "config.json").write_text("{not json")
        with open_run(RunFolder(tmp_path / "a", kind="kind-a")):
            pass


def test_a_second_session_on_a_locked_folder_stops_with_one_line(tmp_path):
    folder = RunFolder(tmp_path, kind="test-run")
    with open_run(folder):
        with pytest.raises(InputError, match=r"another mogsim process \(pid \d+\) is working in this run folder"):
            with open_run(folder):
                pass
    with open_run(folder):  # released
        pass


def test_the_lock_of_a_killed_process_does_not_block(tmp_path):
    holder = textwrap.dedent(f"""
        import sys, time
        from mogsim.runs import RunFolder
        with RunFolder({str(tmp_path)!r}, kind="test-run").locked():
            print("locked", flush=True)
            time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(InputError, match=f"pid {proc.pid}"):
            with RunFolder(tmp_path, kind="test-run").locked():
                pass
    finally:
        proc.kill()
        proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while True:  # the kernel releases a dead process's lock at once; allow for a slow machine
        try:
            with RunFolder(tmp_path, kind="test-run").locked():
                break
        except InputError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_content_addressed_folders_and_strict_json(tmp_path):
    resolved = {"a": 1, "b": [1, 2]}
    folder = RunFolder.keyed(tmp_path, "slug", resolved, kind="test-run")
    assert folder.path == tmp_path / f"slug-{config_key(resolved)}"
    with pytest.raises(ValueError):
        with folder.session({"config": {"x": float("nan")}}):
            pass
    (tmp_path / "bad.json").write_text('{"x": NaN}')
    assert read_config(tmp_path / "bad.json") is None


def test_checkpoints_are_atomic_listed_and_pruned(tmp_path):
    folder = RunFolder(tmp_path)
    for step in (2, 10, 4):
        save_checkpoint(folder.checkpoint_path(step), {"step": step, "w": torch.ones(2)})
    assert [s for s, _ in folder.checkpoints()] == [2, 4, 10]
    assert load_checkpoint(folder.latest_checkpoint())["step"] == 10
    folder.prune_checkpoints(2)
    assert [s for s, _ in folder.checkpoints()] == [4, 10]
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))
    (tmp_path / "checkpoints" / "ckpt-000000011.pt").write_text("garbage")
    with pytest.raises(InputError, match="cannot be read"):
        load_checkpoint(folder.latest_checkpoint())

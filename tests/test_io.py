"""Result files: atomic writes with the permissions of a plain open(), output folders that vanish when a command
fails, and PNG image grids."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
import torch
from PIL import Image

from mogsim.errors import InputError
from mogsim.io import atomic_path, is_image_batch, output_dir, write_image_grid, write_json, write_npz


@pytest.fixture
def umask():
    """Set a umask for the test and restore the previous one."""
    saved = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(saved)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o027, 0o077])
def test_result_files_follow_the_umask_like_open(tmp_path, umask, mask):
    umask(mask)
    with open(tmp_path / "plain.txt", "w") as fh:
        fh.write("x")
    expected = stat.S_IMODE(os.stat(tmp_path / "plain.txt").st_mode)
    assert expected == 0o666 & ~mask
    write_json(tmp_path / "a.json", {"k": 1})
    write_npz(tmp_path / "a.npz", x=np.zeros(2))
    with atomic_path(tmp_path / "sub" / "ckpt.pt") as tmp:  # how checkpoints are written (torch.save to a path)
        torch.save({"w": torch.zeros(1)}, tmp)
    for name in ("a.json", "a.npz", "sub/ckpt.pt"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == expected, name
    assert json.loads((tmp_path / "a.json").read_text()) == {"k": 1}


def test_atomic_path_keeps_the_old_file_and_no_temporary_on_error(tmp_path):
    target = tmp_path / "r.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash while writing")
    assert json.loads(target.read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_output_dir_removes_what_it_created_when_the_work_fails(tmp_path):
    out = tmp_path / "a" / "b" / "c"
    with pytest.raises(InputError):
        with output_dir(out) as folder:
            assert folder.is_dir()
            raise InputError("the work failed")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "kept").mkdir()
    with pytest.raises(KeyboardInterrupt):
        with output_dir(tmp_path / "kept" / "new"):
            raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["kept"] and list((tmp_path / "kept").iterdir()) == []
    with output_dir(out) as folder:  # success keeps it
        (folder / "f.txt").write_text("x")
    assert (out / "f.txt").exists()


def test_output_dir_refuses_a_file_or_an_unwritable_place(tmp_path):
    (tmp_path / "file").write_text("x")
    for bad in (tmp_path / "file", tmp_path / "file" / "sub"):
        with pytest.raises(InputError, match="^path "):  # the library names its parameter
            with output_dir(bad):
                pass
        with pytest.raises(InputError, match="^--out "):  # a command names its flag
            with output_dir(bad, option="--out"):
                pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_image_grid_maps_minus_one_to_black_and_one_to_white(tmp_path):
    images = torch.zeros(10, 3, 4, 5, dtype=torch.float64)
    images[0] = -1.0
    images[1] = 1.0
    images[2, 0] = 2.0  # clipped
    path = write_image_grid(tmp_path / "g.png", images, columns=4)
    with Image.open(path) as im:
        assert im.mode == "RGB" and im.size == (4 * 6 + 1, 3 * 5 + 1)  # 4 columns, 3 rows, 1-pixel gaps
        grid = np.asarray(im)
    assert (grid[1:5, 1:6] == 0).all() and (grid[1:5, 7:12] == 255).all()
    assert (grid[1:5, 13:18, 0] == 255).all() and (grid[1:5, 13:18, 1] == 128).all()  # 0 -> 127.5 -> 128
    assert (grid[0] == 255).all()  # the gap


def test_image_grid_grey_and_limit(tmp_path):
    images = np.linspace(-1, 1, 100 * 16).reshape(100, 1, 4, 4)
    with Image.open(write_image_grid(tmp_path / "g.png", images, limit=64)) as im:
        assert im.mode == "L" and im.size == (8 * 5 + 1, 8 * 5 + 1)
    assert is_image_batch((5, 3, 32, 32)) and is_image_batch((5, 1, 8, 8))
    assert not is_image_batch((5, 48)) and not is_image_batch((5, 2, 8, 8)) and not is_image_batch((5, 3, 4))
    with pytest.raises(InputError, match="images has shape"):
        write_image_grid(tmp_path / "bad.png", np.zeros((3, 48)))

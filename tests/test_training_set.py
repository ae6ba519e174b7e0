"""``mogsim.data.load_training_set``: the one loader behind ``mogsim sample`` and ``mogsim train``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cifar_like import write_edm_zip
from mogsim.data import images_to_tensor, load_cifar10, load_training_set, subset_indices
from mogsim.errors import InputError

@pytest.fixture(scope="module")
def edm_zip(tmp_path_factory):
    """20 random 32x32 RGB PNGs, 2 per class, sorted by class like the real zips."""
    return write_edm_zip(tmp_path_factory.mktemp("data") / "tiny.zip", 20)


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".pt"])
def test_array_files_load_as_float64_in_file_order(tmp_path, suffix):
    data = np.random.default_rng(0).standard_normal((7, 2, 3)).astype(np.float32)
    path = tmp_path / f"train{suffix}"
    if suffix == ".npy":
        np.save(path, data)
    elif suffix == ".npz":
        np.savez(path, data=data, labels=np.arange(7))
    else:
        torch.save(torch.from_numpy(data), path)
    loaded = load_training_set(path)
    assert loaded.data.dtype == torch.float64 and torch.equal(loaded.data, torch.from_numpy(data).double())
    assert loaded.indices is None
    assert loaded.record == {"source": str(path), "format": "array", "split": None, "num_items_source": 7, "n": 7,
                             "subset_seed": None, "balanced": False}
    data_, record, indices = loaded  # unpacks like a tuple
    assert torch.equal(loaded.as_float(torch.float32), data_.float())


def test_a_sample_run_is_a_training_set(tmp_path):
    """``samples.npz`` of ``mogsim sample`` (keys samples, seeds, sigmas) reads as its samples."""
    samples = np.random.default_rng(1).standard_normal((5, 4))
    np.savez(tmp_path / "samples.npz", samples=samples, seeds=np.arange(5), sigmas=np.linspace(80, 0, 19))
    assert np.array_equal(load_training_set(tmp_path / "samples.npz").data.numpy(), samples)


def test_array_subset_is_the_seeded_nested_order(tmp_path):
    data = np.arange(40.0).reshape(20, 2)
    np.save(tmp_path / "a.npy", data)
    loaded = load_training_set(tmp_path / "a.npy", n=6, subset_seed=3)
    expected = subset_indices(20, 6, 3)
    assert np.array_equal(loaded.indices, expected) and np.array_equal(loaded.data.numpy(), data[expected])
    assert loaded.record["subset_seed"] == 3 and loaded.record["n"] == 6 and loaded.record["balanced"] is False
    with pytest.raises(InputError, match="no class labels"):
        load_training_set(tmp_path / "a.npy", n=6, balanced=True, option="--data")
    with pytest.raises(InputError, match="n=21 is larger than the data set"):
        load_training_set(tmp_path / "a.npy", n=21)


def test_cifar_subset_is_class_balanced_by_default_and_stays_uint8(edm_zip):
    images, labels = load_cifar10(edm_zip)
    loaded = load_training_set(edm_zip, n=10, subset_seed=1)
    assert loaded.data.dtype == torch.uint8 and loaded.data.shape == (10, 3, 32, 32)
    assert sorted(labels[loaded.indices].tolist()) == list(range(10))  # one per class, not the first 10 files
    assert np.array_equal(loaded.indices, subset_indices(20, 10, 1, labels=labels, balanced=True))
    assert torch.equal(loaded.as_float(), images_to_tensor(images[loaded.indices], dtype=torch.float64))
    assert loaded.record["format"] == "cifar10" and loaded.record["split"] == "train"
    assert loaded.record["balanced"] is True and loaded.record["num_items_source"] == 20
    unbalanced = load_training_set(edm_zip, n=10, subset_seed=1, balanced=False)
    assert np.array_equal(unbalanced.indices, subset_indices(20, 10, 1))
    whole = load_training_set(edm_zip, balanced=False)
    assert whole.indices is None and torch.equal(whole.data, torch.from_numpy(images))
    ordered = load_training_set(edm_zip, balanced=True)  # every item, in the balanced nested order
    assert len(ordered.indices) == 20 and sorted(ordered.indices.tolist()) == list(range(20))


@pytest.mark.parametrize("values, first", [([0.0, np.nan], 1), ([np.inf, 0.0], 0), ([0.0, -np.inf], 1)])
def test_nan_and_inf_are_refused_up_front_naming_the_item(tmp_path, values, first):
    data = np.zeros((4, 3))
    data[first, 1] = values[first]
    np.save(tmp_path / "bad.npy", data)
    with pytest.raises(InputError, match=rf"--data .*bad.npy: 1 of 4 items contain NaN or inf \(first: item {first}\)"):
        load_training_set(tmp_path / "bad.npy", option="--data")


@pytest.mark.parametrize("make, fragment", [
    (lambda p: np.save(p / "x.npy", np.arange(5.0)), "shape (5,)"),
    (lambda p: np.save(p / "x.npy", np.zeros((0, 3))), "N >= 1"),
    (lambda p: np.save(p / "x.npy", np.ones((2, 2), dtype=complex)), "need real numbers"),
    (lambda p: np.save(p / "x.npy", np.ones((2, 2), dtype=bool)), "need real numbers"),
    (lambda p: (p / "x.npy").write_bytes(b"garbage"), "cannot read it"),
    (lambda p: np.savez(p / "x.npz", a=np.zeros((2, 2)), b=np.zeros((2, 2))), "name the training set 'data'"),
    (lambda p: torch.save([1, 2], p / "x.pt"), "not a tensor"),
    (lambda p: torch.save(torch.ones(2, 2, dtype=torch.bool), p / "x.pt"), "need real numbers"),
])
def test_bad_array_files(tmp_path, make, fragment):
    make(tmp_path)
    (path,) = tmp_path.iterdir()
    with pytest.raises(InputError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        load_training_set(path, option="--data")


def test_missing_path(tmp_path):
    with pytest.raises(InputError, match="--data .*nope.npy: no such file"):
        load_training_set(tmp_path / "nope.npy", option="--data")

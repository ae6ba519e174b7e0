"""CIFAR-10 readers (every format gives the same arrays), their errors, and seeded nested subsets."""

from __future__ import annotations

import io
import json
import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mogsim.data import (
    CIFAR10_CLASSES,
    images_to_tensor,
    load_cifar10,
    load_subset,
    save_subset,
    subset_indices,
)
from mogsim.data import cifar as cifar_module
from mogsim.errors import InputError

N_TRAIN, N_TEST = 20, 10  # train: 2 images per class, test: 1 per class; both sorted by class


# --- fixtures: one set of random images written in every format ---------------------------------------------------

@pytest.fixture(scope="module")
def reference() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Random uint8 images, class-sorted (the order the EDM zips and class folders imply)."""
    rng = np.random.default_rng(1234)
    out = {}
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
        labels = np.repeat(np.arange(10, dtype=np.int64), n // 10)
        out[split] = (images, labels)
    return out


def _png(chw: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(chw.transpose(1, 2, 0))).save(buf, format="PNG")
    return buf.getvalue()


def _batch_pickle(images: np.ndarray, labels: np.ndarray) -> bytes:
    """A batch the way the official Python 2 pickles look: bytes keys, numpy.core module names, protocol 2."""
    batch = {b"batch_label": b"fake batch", b"labels": [int(v) for v in labels],
             b"data": images.reshape(len(images), -1), b"filenames": [b"x.png"] * len(images)}
    return pickle.dumps(batch, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def _pickle_members(ref) -> dict[str, bytes]:
    images, labels = ref["train"]
    members = {f"data_batch_{i + 1}": _batch_pickle(images[4 * i:4 * i + 4], labels[4 * i:4 * i + 4])
               for i in range(5)}
    members["test_batch"] = _batch_pickle(*ref["test"])
    members["batches.meta"] = pickle.dumps({b"label_names": [c.encode() for c in CIFAR10_CLASSES]}, protocol=2)
    return members


def _edm_files(images: np.ndarray, labels: np.ndarray) -> dict[str, bytes]:
    names, files = [], {}
    for i, (img, lab) in enumerate(zip(images, labels)):
        name = f"{CIFAR10_CLASSES[lab]}/{i:04d}.png"
        files[name] = _png(img)
        names.append([name, int(lab)])
    files["dataset.json"] = json.dumps({"labels": names}).encode()
    return files


def _write_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def _write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


@pytest.fixture(scope="module")
def formats(tmp_path_factory, reference) -> dict[str, Path]:
    """Paths of the same data in every supported layout; values are what to pass to load_cifar10."""
    root = tmp_path_factory.mktemp("cifar")
    out: dict[str, Path] = {}

    members = _pickle_members(reference)
    tar_path = root / "cifar-10-python.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out["tar"] = tar_path
    out["pickle-dir"] = _write_tree(root / "extracted" / "cifar-10-batches-py", members)
    out["pickle-parent"] = root / "extracted"  # a folder holding cifar-10-batches-py/

    edm = root / "edm"
    edm.mkdir()
    for split in ("train", "test"):
        files = _edm_files(*reference[split])
        _write_zip(edm / f"{split}.zip", files)
        _write_tree(root / f"edm-{split}", files)
        _write_tree(root / "tree" / split, {k: v for k, v in files.items() if k != "dataset.json"})
    out["edm-zips"] = edm  # folder with train.zip / test.zip, split picks one
    out["tree"] = root / "tree"  # class subfolders under train/ and test/
    return out


# --- every format gives the same arrays ---------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["tar", "pickle-dir", "pickle-parent", "edm-zips", "tree"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_every_format_loads_the_same_arrays(formats, reference, fmt, split):
    images, labels = load_cifar10(formats[fmt], split=split)
    want_images, want_labels = reference[split]
    assert images.dtype == np.uint8 and images.shape == want_images.shape and images.flags.c_contiguous
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(images, want_images)
    np.testing.assert_array_equal(labels, want_labels)


@pytest.mark.parametrize("split", ["train", "test"])
def test_single_split_paths(formats, reference, split):
    """A zip itself, an extracted EDM folder, and a bare class tree read as given."""
    root = formats["edm-zips"].parent
    for path in (formats["edm-zips"] / f"{split}.zip", root / f"edm-{split}", formats["tree"] / split):
        images, labels = load_cifar10(path, split=split)
        np.testing.assert_array_equal(images, reference[split][0])
        np.testing.assert_array_equal(labels, reference[split][1])


def test_edm_keeps_dataset_json_order(tmp_path, reference):
    images, labels = reference["train"]
    files = _edm_files(images, labels)
    entries = json.loads(files["dataset.json"])["labels"]
    perm = np.random.default_rng(0).permutation(len(entries))
    files["dataset.json"] = json.dumps({"labels": [entries[i] for i in perm]}).encode()
    got_images, got_labels = load_cifar10(_write_zip(tmp_path / "x.zip", files))
    np.testing.assert_array_equal(got_images, images[perm])
    np.testing.assert_array_equal(got_labels, labels[perm])


def test_class_tree_with_other_names_sorts_by_name(tmp_path, reference):
    images = reference["train"][0]
    for i, name in enumerate(["zebra", "apple", "mango"]):
        _write_tree(tmp_path / name, {f"{j}.png": _png(images[3 * i + j]) for j in range(2)})
    got_images, got_labels = load_cifar10(tmp_path)
    np.testing.assert_array_equal(got_labels, [0, 0, 1, 1, 2, 2])  # apple, mango, zebra
    np.testing.assert_array_equal(got_images[:2], images[3:5])
    np.testing.assert_array_equal(got_images[4:], images[0:2])


def test_cache_roundtrip_and_invalidation(tmp_path, formats, reference, monkeypatch):
    zip_path = tmp_path / "train.zip"
    zip_path.write_bytes((formats["edm-zips"] / "train.zip").read_bytes())
    cache = tmp_path / "cache"
    first = load_cifar10(zip_path, cache_dir=cache)
    assert len(list(cache.glob("*.npz"))) == 1

    def fail(path, split):
        raise AssertionError("decoded again although the cache was valid")

    monkeypatch.setitem(cifar_module._READERS, "edm-zip", fail)
    second = load_cifar10(zip_path, cache_dir=cache)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    monkeypatch.undo()

    os.utime(zip_path, ns=(0, 0))  # a changed file gets a new cache entry
    load_cifar10(zip_path, cache_dir=cache)
    assert len(list(cache.glob("*.npz"))) == 2


def test_images_to_tensor(reference):
    images = reference["train"][0]
    x = images_to_tensor(images)
    assert x.dtype == torch.float32 and x.shape == images.shape
    torch.testing.assert_close(x, torch.from_numpy(images).float() / 127.5 - 1, rtol=0, atol=0)
    edge = images_to_tensor(np.array([0, 255], dtype=np.uint8).reshape(1, 1, 1, 2), dtype=torch.float64)
    assert edge.dtype == torch.float64 and edge.flatten().tolist() == [-1.0, 1.0]
    with pytest.raises(InputError, match="uint8"):
        images_to_tensor(images.astype(np.float32))
    with pytest.raises(InputError, match="floating"):
        images_to_tensor(images, dtype=torch.int32)


# --- errors -------------------------------------------------------------------------------------------------------

def _edm_zip_with(tmp_path: Path, reference, **edits: bytes | None) -> Path:
    files = _edm_files(*reference["test"])
    for name, data in edits.items():
        name = name.replace("__", "/").replace("_json", ".json")
        if data is None:
            files.pop(name)
        else:
            files[name] = data
    return _write_zip(tmp_path / "bad.zip", files)


def test_missing_path(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_cifar10(tmp_path / "nowhere.zip")


@pytest.mark.parametrize("name", ["broken.zip", "cifar-10-python.tar.gz"])
def test_corrupt_archive(tmp_path, name):
    (tmp_path / name).write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(InputError, match="corrupt or unreadable"):
        load_cifar10(tmp_path / name)


def test_unknown_format(tmp_path):
    (tmp_path / "data.bin").write_bytes(b"not an archive")
    with pytest.raises(InputError, match="unknown format"):
        load_cifar10(tmp_path / "data.bin")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="unknown format"):
        load_cifar10(tmp_path / "empty")


def test_wrong_image_size_names_the_file(tmp_path, reference):
    small = _png(reference["test"][0][0][:, :31, :].copy())  # 32 wide, 31 high
    path = _edm_zip_with(tmp_path, reference, **{"bird__0002.png": small})
    with pytest.raises(InputError, match=r"bird/0002\.png is 32x31 RGB; CIFAR-10 images must be 32x32 RGB"):
        load_cifar10(path)


def test_grayscale_image_is_rejected(tmp_path, reference):
    buf = io.BytesIO()
    Image.new("L", (32, 32)).save(buf, format="PNG")
    path = _edm_zip_with(tmp_path, reference, **{"cat__0003.png": buf.getvalue()})
    with pytest.raises(InputError, match=r"cat/0003\.png is 32x32 L"):
        load_cifar10(path)


def test_undecodable_image(tmp_path, reference):
    path = _edm_zip_with(tmp_path, reference, **{"cat__0003.png": b"\x89PNG garbage"})
    with pytest.raises(InputError, match=r"cat/0003\.png: cannot be decoded"):
        load_cifar10(path)


@pytest.mark.parametrize("meta, message", [
    (None, "has no dataset.json"),
    (b'{"labels": null}', "has no labels list"),
    (b"{not json", "not valid JSON"),
    (b'{"labels": [["airplane/0000.png"]]}', "labels entry 0"),
    (b'{"labels": [["airplane/0000.png", 10]]}', "label 10 of image 0 is out of range 0..9"),
    (b'{"labels": [["airplane/9999.png", 0]]}', "lists airplane/9999.png but the zip has no such file"),
])
def test_bad_dataset_json(tmp_path, reference, meta, message):
    path = _edm_zip_with(tmp_path, reference, dataset_json=meta)
    with pytest.raises(InputError, match=message):
        load_cifar10(path)


def test_unknown_split(formats):
    with pytest.raises(InputError, match="split 'val' is unknown; use 'train' or 'test'"):
        load_cifar10(formats["tar"], split="val")


def test_missing_split_file(tmp_path, formats):
    (tmp_path / "train.zip").write_bytes((formats["edm-zips"] / "train.zip").read_bytes())
    with pytest.raises(InputError, match="has no test.zip"):
        load_cifar10(tmp_path, split="test")


def test_missing_batch_in_archive(tmp_path, reference):
    path = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        data = _pickle_members(reference)["test_batch"]
        info = tarfile.TarInfo("cifar-10-batches-py/test_batch")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(InputError, match="has no data_batch_1, data_batch_2"):
        load_cifar10(path, split="train")


def test_pickle_that_runs_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(InputError, match="refusing to load"):
        load_cifar10(folder, split="test")


# --- subsets ------------------------------------------------------------------------------------------------------

def _max_imbalance(labels: np.ndarray, prefix: np.ndarray) -> int:
    """Largest gap between the biggest class count and any class not yet used up, within the prefix."""
    classes, sizes = np.unique(labels, return_counts=True)
    counts = np.array([(labels[prefix] == c).sum() for c in classes])
    open_classes = counts < sizes
    return int(counts.max() - counts[open_classes].min()) if open_classes.any() else 0


def test_subsets_nested_reproducible_seeded():
    small, mid, big = (subset_indices(1000, n, seed=7) for n in (8, 16, 64))
    assert big.dtype == np.int64 and len(big) == 64 and len(np.unique(big)) == 64
    np.testing.assert_array_equal(mid, big[:16])
    np.testing.assert_array_equal(small, big[:8])
    np.testing.assert_array_equal(big, subset_indices(1000, 64, seed=7))
    assert not np.array_equal(big, subset_indices(1000, 64, seed=8))
    assert big.min() >= 0 and big.max() < 1000
    assert not np.array_equal(big, np.sort(big))  # subset order, not the first files


def test_balanced_subsets_on_class_sorted_labels():
    labels = np.repeat(np.arange(10), 100)  # sorted by class like the shared zips
    idx = subset_indices(1000, 1000, seed=0, labels=labels, balanced=True)
    assert sorted(idx.tolist()) == list(range(1000))
    for n in (1, 5, 10, 15, 64, 999):
        assert _max_imbalance(labels, idx[:n]) <= 1
    np.testing.assert_array_equal(np.bincount(labels[idx[:50]]), [5] * 10)


@settings(deadline=None, max_examples=60)
@given(labels=st.lists(st.integers(0, 5), min_size=1, max_size=120), seed=st.integers(0, 2**32 - 1),
       data=st.data())
def test_balanced_prefixes_are_nested_and_balanced(labels, seed, data):
    labels = np.asarray(labels)
    n_small = data.draw(st.integers(1, len(labels)))
    n_big = data.draw(st.integers(n_small, len(labels)))
    big = subset_indices(len(labels), n_big, seed, labels=labels, balanced=True)
    np.testing.assert_array_equal(subset_indices(len(labels), n_small, seed, labels=labels, balanced=True),
                                  big[:n_small])
    assert len(np.unique(big)) == n_big and big.min() >= 0 and big.max() < len(labels)
    for n in range(1, n_big + 1):
        assert _max_imbalance(labels, big[:n]) <= 1


@settings(deadline=None, max_examples=60)
@given(num_items=st.integers(1, 500), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_plain_prefixes_are_nested(num_items, seed, data):
    n_small = data.draw(st.integers(1, num_items))
    n_big = data.draw(st.integers(n_small, num_items))
    big = subset_indices(num_items, n_big, seed)
    np.testing.assert_array_equal(subset_indices(num_items, n_small, seed), big[:n_small])
    assert len(np.unique(big)) == n_big and big.min() >= 0 and big.max() < num_items


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_items=10, n=0, seed=0), "n=0: must be >= 1"),
    (dict(num_items=10, n=11, seed=0), "n=11 is larger than the data set"),
    (dict(num_items=10, n=5, seed=-1), "seed=-1: must be >= 0"),
    (dict(num_items=10, n=5, seed=0, balanced=True), "balanced=True needs labels"),
    (dict(num_items=10, n=5, seed=0, labels=np.zeros(9, int)), "labels has 9 entries"),
    (dict(num_items=10, n=5, seed=1.5), "seed=1.5: pass a whole number"),
])
def test_subset_errors(kwargs, message):
    with pytest.raises(InputError, match=message):
        subset_indices(**kwargs)


def test_save_and_load_subset(tmp_path):
    idx = subset_indices(100, 12, seed=3)
    path = save_subset(tmp_path / "run" / "subset.json", idx, seed=3, balanced=False, source="train.zip",
                       num_items=100)
    record = json.loads(path.read_text())
    assert record["seed"] == 3 and record["n"] == 12 and record["source"] == "train.zip"
    loaded = load_subset(path)
    assert loaded.dtype == np.int64
    np.testing.assert_array_equal(loaded, idx)
    with pytest.raises(InputError, match="does not exist"):
        load_subset(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"indices": [1, 1]}')
    with pytest.raises(InputError, match="repeats indices"):
        load_subset(tmp_path / "bad.json")


# --- the real shared data -----------------------------------------------------------------------------------------

def _shared_cifar_dir() -> Path:
    env = os.environ.get("MOGSIM_CIFAR_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg"


@pytest.mark.slow
def test_real_cifar10_zips():
    root = _shared_cifar_dir()
    if not (root / "train.zip").is_file() or not (root / "test.zip").is_file():
        pytest.skip(f"CIFAR-10 zips not found at {root}; they live in ../shared/data beside the clone "
                    "(or set MOGSIM_CIFAR_DIR)")
    for split, n in (("train", 50_000), ("test", 10_000)):
        images, labels = load_cifar10(root, split=split)
        assert images.dtype == np.uint8 and images.shape == (n, 3, 32, 32)
        assert labels.dtype == np.int64
        np.testing.assert_array_equal(np.bincount(labels, minlength=10), [n // 10] * 10)
        np.testing.assert_array_equal(labels, np.repeat(np.arange(10), n // 10))  # the zips are class-sorted
        assert 100 < images.mean() < 140  # real photos, not blank

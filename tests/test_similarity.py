"""Similarity backends (pixel correlation, TorchScript/ONNX embeddings, relative distance), RP with a backend,
nearest-neighbour copies, GL and bootstrap intervals."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import shared_data_dir
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from mogsim.errors import InputError
from mogsim.metrics.copies import fraction_ci, generalizability, nearest_two, nn_ratio
from mogsim.metrics.reproducibility import (agreement, mismatched_agreement, relative_distance, reproducibility,
                                          shifted_matches)
from mogsim.metrics.similarity import (IMAGENET_MEAN, IMAGENET_STD, PIXEL_THRESHOLD, LearnedEmbedding,
                                       PixelCorrelation, RelativeDistance, make_similarity)

# the module (``mogsim.metrics.similarity`` as an attribute is the legacy function re-exported by the package)
sim_mod = importlib.import_module("mogsim.metrics.similarity")


pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


def _images(count: int, seed: int, shape=(3, 8, 8)) -> torch.Tensor:
    return torch.rand(count, *shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 - 1


# --- pixel correlation ------------------------------------------------------------------------------------------

def test_pixel_correlation_is_pearson():
    a, b = _images(20, 0), _images(20, 1)
    got = PixelCorrelation().similarity(a, b).numpy()
    want = [np.corrcoef(x.reshape(-1).numpy(), y.reshape(-1).numpy())[0, 1] for x, y in zip(a, b)]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_pixel_correlation_known_answers():
    a = _images(6, 2) * 0.5
    pc = PixelCorrelation()
    np.testing.assert_allclose(pc.similarity(a, a).numpy(), 1.0, atol=1e-12)
    np.testing.assert_allclose(pc.similarity(a, -a).numpy(), -1.0, atol=1e-12)
    # a global brightness shift and contrast scale (inside [-1, 1]) do not change it
    np.testing.assert_allclose(pc.similarity(a, 1.5 * a + 0.2).numpy(), 1.0, atol=1e-12)
    flat = torch.full_like(a, 0.3)  # a constant image has no pixel variation: similarity 0 to anything
    assert torch.all(pc.similarity(flat, a) == 0) and not pc.matches(flat, flat).any()
    # images are clipped to [-1, 1] first, as saved images are
    np.testing.assert_allclose(pc.similarity(a.sign() * 5, a.sign()).numpy(), 1.0, atol=1e-12)


def test_pixel_threshold_separates_noisy_copies_from_other_images():
    train = _images(64, 3)
    noisy = (train + 0.05 * _images(64, 4)).clamp(-1, 1)
    pc = PixelCorrelation()
    assert pc.threshold == PIXEL_THRESHOLD == 0.9
    assert pc.matches(noisy, train).all()
    best, idx = pc.max_similarity(_images(64, 5), train)
    assert (best < pc.threshold).all()


def test_max_similarity_matches_brute_force_in_blocks(monkeypatch):
    q, ref = _images(9, 6), _images(50, 7)
    ref[13] = q[4]  # an exact copy
    pc = PixelCorrelation()
    full = torch.stack([pc.similarity(q[i:i + 1].expand(50, -1, -1, -1), ref) for i in range(9)])
    monkeypatch.setattr(sim_mod, "_BLOCK", 20)  # 2 reference rows per block
    best, idx = pc.max_similarity(q, ref)
    torch.testing.assert_close(best, full.max(dim=1).values, rtol=0, atol=1e-12)
    assert torch.equal(idx, full.argmax(dim=1)) and idx[4] == 13


def test_pixel_record_and_factory():
    pc = make_similarity("pixel")
    assert isinstance(pc, PixelCorrelation)
    rec = pc.record()
    assert rec["backend"] == "pixel-correlation" and rec["threshold"] == 0.9 and "mean" in rec["preprocessing"]
    assert make_similarity("pixel", threshold=0.8).threshold == 0.8
    assert make_similarity(pc) is pc
    with pytest.raises(InputError, match="outside"):
        PixelCorrelation(1.5)


def test_pixel_threshold_on_real_cifar():
    """On real CIFAR-10 (test split): an image matches itself and its copy with small noise; different images of
    one class almost never match."""
    path = shared_data_dir() / "cifar10-jpeg"
    if not path.exists():
        pytest.skip("needs ../shared/data/cifar10-jpeg")
    from mogsim.data import images_to_tensor, load_cifar10

    images, labels = load_cifar10(path, split="test")
    rng = np.random.default_rng(0)
    pick = rng.choice(len(labels), 400, replace=False)
    x = images_to_tensor(images[pick], dtype=torch.float64)
    pc = PixelCorrelation()
    np.testing.assert_allclose(pc.similarity(x, x).numpy(), 1.0, atol=1e-12)
    noise = torch.from_numpy(rng.standard_normal(x.shape))
    assert pc.matches((x + 0.05 * noise).clamp(-1, 1), x).double().mean() >= 0.97
    pairs = []
    for k in range(10):
        members = np.flatnonzero(labels == k)
        pairs.append(rng.choice(members, size=(100, 2), replace=False))
    pairs = np.concatenate(pairs)
    a = images_to_tensor(images[pairs[:, 0]], dtype=torch.float64)
    b = images_to_tensor(images[pairs[:, 1]], dtype=torch.float64)
    assert pc.matches(a, b).double().mean() <= 0.01


# --- learned embeddings (TorchScript, ONNX) ---------------------------------------------------------------------

class TinyDescriptor(nn.Module):
    """A stand-in for SSCD: (B, 3, H, W) -> (B, 6) features."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 5, stride=4)
        self.head = nn.Linear(4, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.adaptive_avg_pool2d(torch.relu(self.conv(x)), 1).flatten(1))


@pytest.fixture(scope="module")
def torchscript_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("sim") / "tiny.pt"
    torch.jit.save(torch.jit.script(TinyDescriptor().eval()), str(path))
    return path


def _expected_features(images: torch.Tensor) -> torch.Tensor:
    """SSCD's preprocessing written out: [0, 1], 320 x 320 bilinear, ImageNet normalisation, model, L2 norm."""
    x = (images.float().clamp(-1, 1) + 1) / 2
    x = F.interpolate(x, size=(320, 320), mode="bilinear", align_corners=False)
    x = (x - torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1)
    with torch.no_grad():
        f = TinyDescriptor().eval()(x).double()
    return f / f.norm(dim=1, keepdim=True)


def test_torchscript_embedding_pins_sscd_preprocessing(torchscript_file):
    emb = LearnedEmbedding(torchscript_file)
    images = _images(5, 8, shape=(3, 32, 32))
    torch.testing.assert_close(emb.embed(images), _expected_features(images), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(emb.similarity(images, images).numpy(), 1.0, atol=1e-12)
    rec = emb.record()
    assert rec["backend"] == "torchscript" and rec["threshold"] == 0.6 and len(rec["sha256"]) == 64
    assert rec["preprocessing"]["resize"] == 320 and rec["preprocessing"]["mean"] == list(IMAGENET_MEAN)
    best, idx = emb.max_similarity(images[:2], images)
    assert idx.tolist() == [0, 1]
    assert isinstance(make_similarity(torchscript_file, threshold=0.5), LearnedEmbedding)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnx_embedding_matches_torchscript(tmp_path, torchscript_file):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    path = tmp_path / "tiny.onnx"
    torch.onnx.export(TinyDescriptor().eval(), (torch.zeros(2, 3, 320, 320),), str(path), dynamo=False,
                      input_names=["images"], output_names=["features"], dynamic_axes={"images": {0: "batch"}})
    onnx_emb = LearnedEmbedding(path)
    assert onnx_emb.record()["backend"] == "onnx"
    images = _images(3, 9, shape=(3, 32, 32))
    torch.testing.assert_close(onnx_emb.embed(images), LearnedEmbedding(torchscript_file).embed(images),
                               rtol=1e-5, atol=1e-6)
    fixed = tmp_path / "fixed.onnx"  # exported for batches of exactly 2: fed 2 at a time, the last one padded
    torch.onnx.export(TinyDescriptor().eval(), (torch.zeros(2, 3, 320, 320),), str(fixed), dynamo=False)
    torch.testing.assert_close(LearnedEmbedding(fixed).embed(images), onnx_emb.embed(images), rtol=1e-5, atol=1e-6)


class WrongShape(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3))  # (B,), not (B, F)


class NotFinite(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) / 0.0 * 0.0  # NaN features


class OneChannel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).flatten(1)


@pytest.mark.parametrize("case", ["missing", "garbage-pt", "garbage-onnx", "wrong-shape", "wrong-channels", "nan",
                                  "kind"])
def test_bad_similarity_files_are_one_line(tmp_path, case):
    path = tmp_path / "model.pt"
    if case == "garbage-pt":
        path.write_bytes(b"not a model at all")
    elif case == "garbage-onnx":
        pytest.importorskip("onnxruntime")
        path = tmp_path / "model.onnx"
        path.write_bytes(b"\x00\x01 not onnx")
    elif case == "wrong-shape":
        torch.jit.save(torch.jit.script(WrongShape()), str(path))
    elif case == "wrong-channels":
        torch.jit.save(torch.jit.script(OneChannel()), str(path))
    elif case == "nan":
        torch.jit.save(torch.jit.script(NotFinite()), str(path))
    elif case == "kind":
        path.write_bytes(b"x")
    with pytest.raises(InputError) as info:
        LearnedEmbedding(path, kind="tflite" if case == "kind" else "auto")
    message = str(info.value)
    assert "\n" not in message and len(message) < 400
    assert ("tflite" if case == "kind" else str(path)) in message


# --- relative distance and RP -------------------------------------------------------------------------------------

def test_relative_distance_backend_keeps_the_vector_rule():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(500, 8, dtype=torch.float64, generator=g)
    b = a + 0.3 * torch.randn(500, 8, dtype=torch.float64, generator=g)
    rel = relative_distance(a, b)
    assert reproducibility(a, b) == float((rel < 1 / 3).double().mean())
    assert reproducibility(a, b, 0.2) == float((rel < 0.2).double().mean())
    backend = RelativeDistance(0.2)
    assert reproducibility(a, b, backend=backend) == reproducibility(a, b, 0.2)
    assert backend.threshold == pytest.approx(0.8)
    with pytest.raises(InputError, match="backend"):
        reproducibility(a, b, 0.2, backend=backend)
    best, idx = RelativeDistance().max_similarity(a[:5], b)
    full = torch.stack([1 - relative_distance(a[i:i + 1].expand(500, -1), b) for i in range(5)])
    torch.testing.assert_close(best, full.max(dim=1).values)
    assert torch.equal(idx, full.argmax(dim=1))


def test_agreement_with_pixel_backend():
    a = _images(40, 10)
    b = a.clone()
    b[:10] = _images(10, 11)  # 10 of 40 seeds disagree
    result = agreement(a, b, PixelCorrelation(), seed=3)
    assert result.rp == 0.75 and result.reproduced.sum() == 30
    assert result.ci[0] < 0.75 < result.ci[1]
    assert result.backend["backend"] == "pixel-correlation"
    summary = result.summary("rp")
    assert summary["rp"] == 0.75 and summary["rp_ci"] == list(result.ci)
    assert reproducibility(a, b, backend=PixelCorrelation()) == 0.75
    with pytest.raises(InputError, match="shape"):
        PixelCorrelation().similarity(a, b[:5])


def test_mismatched_agreement_tells_seed_specific_from_seed_blind_samplers():
    backend = PixelCorrelation()
    distinct = _images(64, 12)  # one image per seed, the same for both samplers
    assert agreement(distinct, distinct.clone(), backend).rp == 1.0
    assert mismatched_agreement(distinct, distinct.clone(), backend).rp == 0.0
    # seed-blind samplers: every sample is one image plus a little noise, so any two seeds "agree"
    blind = _images(1, 13).expand(64, -1, -1, -1) + 0.02 * _images(64, 14)
    assert mismatched_agreement(blind, blind.clone(), backend).rp == 1.0
    # row i of a meets row i + shift of b
    shifted = mismatched_agreement(distinct, torch.roll(distinct, 5, dims=0), backend, shift=5)
    assert shifted.rp == 1.0 and shifted.ci == (1.0, 1.0)
    for bad in (0, 64, 1.0):
        with pytest.raises(InputError, match="shift"):
            mismatched_agreement(distinct, distinct, backend, shift=bad)


def test_shifted_matches_is_the_chance_level_of_same_seed_label_matches():
    """Distinct labels shared by two samplers: every shift misses; one label for every seed: every shift matches;
    b rolled by k: shift k matches everywhere; independent labels over m values: about 1/m at every shift."""
    distinct = np.arange(50)
    assert np.mean(distinct == distinct) == 1.0 and shifted_matches(distinct, distinct).tolist() == [0.0] * 49
    assert shifted_matches(np.zeros(50), np.zeros(50)).tolist() == [1.0] * 49
    rolled = shifted_matches(distinct, np.roll(distinct, 7))
    assert rolled[6] == 1.0 and np.count_nonzero(rolled) == 1
    rng = np.random.default_rng(0)
    chance = shifted_matches(rng.integers(0, 16, 4000), rng.integers(0, 16, 4000))
    assert abs(chance.mean() - 1 / 16) < 0.005
    for a, b in ((np.arange(5), np.arange(6)), (np.arange(1), np.arange(1)), (np.zeros((3, 2)), np.zeros((3, 2)))):
        with pytest.raises(InputError, match="label arrays"):
            shifted_matches(a, b)


# --- copies, GL, intervals ----------------------------------------------------------------------------------------

@given(st.integers(0, 10_000), st.integers(2, 40), st.integers(1, 12))
def test_nearest_two_matches_explicit_distances(seed, n, b):
    g = torch.Generator().manual_seed(seed)
    train = torch.randn(n, 3, 2, 2, dtype=torch.float64, generator=g) * 3
    samples = torch.randn(b, 3, 2, 2, dtype=torch.float64, generator=g) * 3
    samples[0] = train[n // 2]  # on a training point: d1 = 0 exactly
    d1, d2, idx = nearest_two(samples, train, chunk=5)
    dist = torch.cdist(samples.reshape(b, -1), train.reshape(n, -1), compute_mode="donot_use_mm_for_euclid_dist")
    want = dist.sort(dim=1).values
    torch.testing.assert_close(d1, want[:, 0], rtol=1e-12, atol=0)
    torch.testing.assert_close(d2, want[:, 1], rtol=1e-12, atol=0)
    assert torch.equal(dist.gather(1, idx[:, None])[:, 0], want[:, 0])
    assert d1[0] == 0 and nn_ratio(samples, train)[0] == 0


def test_nearest_two_far_from_the_origin():
    """Centring keeps the screen exact for data with a large common offset."""
    g = torch.Generator().manual_seed(1)
    train = torch.randn(30, 12, dtype=torch.float64, generator=g) + 1e4
    samples = train[:6] + 1e-6 * torch.randn(6, 12, dtype=torch.float64, generator=g)
    d1, _, idx = nearest_two(samples, train)
    assert idx.tolist() == list(range(6)) and (d1 < 1e-5).all()


def test_generalizability_and_fraction_ci():
    best = torch.tensor([0.95, 0.5, 0.91, 0.2])
    assert generalizability(best, 0.9) == 0.5
    assert generalizability(np.array([0.9]), 0.9) == 1.0  # strictly above the threshold
    flags = np.arange(1000) % 4 == 0  # p = 0.25
    low, high = fraction_ci(flags, seed=1)
    assert (low, high) == fraction_ci(flags, seed=1)
    se = math.sqrt(0.25 * 0.75 / 1000)
    assert low == pytest.approx(0.25 - 1.96 * se, abs=0.006) and high == pytest.approx(0.25 + 1.96 * se, abs=0.006)
    # the same as resampling the flags themselves
    rng = np.random.default_rng(5)
    explicit = flags[rng.integers(0, 1000, size=(4000, 1000))].mean(axis=1)
    assert low == pytest.approx(np.quantile(explicit, 0.025), abs=0.006)
    assert fraction_ci(np.ones(50, dtype=bool)) == (1.0, 1.0)
    with pytest.raises(InputError):
        fraction_ci(np.array([], dtype=bool))
    with pytest.raises(InputError):
        fraction_ci(flags, level=1.0)


@given(st.lists(st.booleans(), min_size=1, max_size=300), st.integers(0, 1000))
def test_fraction_ci_brackets_the_fraction(flags, seed):
    low, high = fraction_ci(np.array(flags), seed=seed, resamples=300)
    p = float(np.mean(flags))
    assert 0 <= low <= p <= high <= 1
    assert low * len(flags) == pytest.approx(round(low * len(flags)))  # a resampled fraction: k / B

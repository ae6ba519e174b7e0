"""One cell of cifar-optimal-gap: the metrics on denoisers whose answers are known (the references themselves, the
identity, the data mean, hybrids), the distances and loss ratio, the optimum's sample cache, and bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import shared_data_dir

from mogsim.errors import InputError
from mogsim.experiments.cifar_gap.eval import (CellEvalSettings, CellReferences, at_precision, evaluate_cell,
                                               moment_matched_gaussian)
from mogsim.metrics.denoiser_distance import (denoiser_distances, distance_references, distances_to, loss_ratio,
                                              noisy_query_batch)
from mogsim.sampling import edm_sigmas

SEEDS = range(100_000, 100_064)
EXACT = CellEvalSettings(distance_queries=32, loss_batch=128, net_dtype="float64", bootstrap_resamples=500)
SIGMAS = edm_sigmas(18)[:-1].numpy()


@pytest.fixture(scope="module")
def cell():
    g = torch.Generator().manual_seed(0)
    train = torch.rand(16, 3, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
    test = torch.rand(24, 3, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
    return train, test, CellReferences(train)


def _evaluate(net, cell, settings=EXACT, **kwargs):
    train, test, refs = cell
    return evaluate_cell(net, train, test_images=test, sample_seeds=kwargs.pop("seeds", SEEDS), references=refs,
                         settings=settings, **kwargs)


def _distance(ev, query_set, ref):
    return np.asarray(ev.metrics["per_sigma"]["distance"][query_set][ref])


def _mean_net(refs):
    return lambda x, s: refs.empirical.mean.to(x).expand_as(x).clone()


def _switch(high, low, at):
    """``high`` above noise level ``at``, ``low`` at and below it (sigma a float or a (B,) tensor)."""
    def denoise(x, sigma):
        if torch.is_tensor(sigma) and sigma.ndim == 1:
            above = (sigma > at).reshape(-1, *([1] * (x.ndim - 1)))
            return torch.where(above, high(x, sigma), low(x, sigma))
        return high(x, sigma) if float(sigma) > at else low(x, sigma)
    return denoise


# --- the references as the "net" ---------------------------------------------------------------------------------

def test_empirical_optimum_as_net_is_the_optimum(cell):
    ev = _evaluate(cell[2].empirical, cell)
    m = ev.metrics
    assert m["rp_optimum"] == 1.0 and m["copy_fraction"] == 1.0 and m["memorized_fraction"] == 1.0
    assert m["gl"] == 0.0 and m["copy_fraction_ci"] == [1.0, 1.0]
    assert m["loss_ratio"] == 1.0 and m["loss"] == m["loss_floor"] > 0
    for query_set in ("train", "test"):
        assert np.all(_distance(ev, query_set, "empirical") == 0)
        assert _distance(ev, query_set, "gaussian").max() > 0.01  # the references differ at middle noise
    assert np.array_equal(ev.samples, ev.optimum_samples)
    assert np.array_equal(ev.per_sample["nearest_index"], ev.per_sample["optimum_nearest_index"])
    # the optimum itself, as a check: every sample lands on a training image (Proposition 1)
    assert m["copy_fraction_optimum"] == 1.0 and m["gl_optimum"] == 0.0 and m["median_nn_distance_optimum"] == 0


def test_empirical_optimum_in_float32_agrees(cell):
    ev = _evaluate(cell[2].empirical, cell, settings=CellEvalSettings(distance_queries=32, loss_batch=128))
    m = ev.metrics
    assert m["rp_optimum"] == 1.0 and m["copy_fraction"] == 1.0 and m["gl"] == 0.0
    assert m["loss_ratio"] == pytest.approx(1.0, abs=1e-5)
    assert _distance(ev, "train", "empirical").max() < 1e-10
    assert m["dtypes"]["net_input"] == "float32" and m["dtypes"]["references"] == "float64"


def test_gaussian_as_net_has_distance_zero_to_the_gaussian(cell):
    ev = _evaluate(cell[2].gaussian, cell)
    for query_set in ("train", "test"):
        assert np.all(_distance(ev, query_set, "gaussian") == 0)
    # N = 16 < d = 192: the Gaussian's samples lie in the span of the data but on no training image
    assert ev.metrics["copy_fraction"] == 0.0 and ev.metrics["gl"] == 1.0 and ev.metrics["loss_ratio"] > 1


# --- nets that do not memorize ------------------------------------------------------------------------------------

def test_identity_is_not_memorizing(cell):
    """D(x) = x never moves the sample: it stays 80 z (clipped: a random sign image), far from every image."""
    ev = _evaluate(lambda x, s: x.clone(), cell)
    m = ev.metrics
    assert m["rp_optimum"] == 0.0 and m["copy_fraction"] == 0.0 and m["memorized_fraction"] == 0.0 and m["gl"] == 1.0
    assert m["median_nn_ratio"] > 0.9  # equidistant from the training images
    for query_set in ("train", "test"):
        for ref in ("empirical", "gaussian"):
            np.testing.assert_allclose(_distance(ev, query_set, ref), 1.0, rtol=1e-12)
    assert m["loss_ratio"] > 1.5


def test_data_mean_is_not_memorizing(cell):
    """D(x) = mean: every sample is the data mean, equidistant from the training images and like none of them."""
    train, _, refs = cell
    ev = _evaluate(_mean_net(refs), cell)
    m = ev.metrics
    np.testing.assert_allclose(ev.samples, refs.empirical.mean.expand(len(SEEDS), -1, -1, -1).numpy(), atol=1e-12)
    assert m["rp_optimum"] == 0.0 and m["copy_fraction"] == 0.0 and m["memorized_fraction"] == 0.0 and m["gl"] == 1.0
    assert m["median_nn_ratio"] > 0.8
    for ref in ("empirical", "gaussian"):
        d = _distance(ev, "train", ref)
        assert d[0] < 1e-2 and d[-1] > 100  # right at sigma = 80 (both references give the mean), far below
    assert m["loss_ratio"] > 1.5


# --- hybrids: one reference at high noise, the other at low -------------------------------------------------------

def test_gaussian_then_empirical_copies_without_reproducing_every_seed(cell):
    refs = cell[2]
    ev = _evaluate(_switch(refs.gaussian, refs.empirical, at=1.0), cell)
    m = ev.metrics
    high = SIGMAS > 1.0
    assert np.all(_distance(ev, "train", "gaussian")[high] == 0)
    assert np.all(_distance(ev, "train", "empirical")[~high] == 0)
    # the empirical optimum below sigma = 1 always lands on a training image, not always the optimum's
    assert m["copy_fraction"] == 1.0 and m["gl"] == 0.0
    same_image = ev.per_sample["nearest_index"] == ev.per_sample["optimum_nearest_index"]
    assert m["rp_optimum"] == same_image.mean() < 1.0


def test_empirical_then_gaussian_does_not_memorize(cell):
    refs = cell[2]
    ev = _evaluate(_switch(refs.empirical, refs.gaussian, at=5.0), cell)
    high = SIGMAS > 5.0
    assert np.all(_distance(ev, "train", "empirical")[high] == 0)
    assert np.all(_distance(ev, "train", "gaussian")[~high] == 0)
    assert ev.metrics["rp_optimum"] == 0.0 and ev.metrics["copy_fraction"] == 0.0 and ev.metrics["gl"] == 1.0


# --- distances and loss ratio -----------------------------------------------------------------------------------

def test_distances_use_shared_seeded_queries(cell):
    train, test, refs = cell
    a = noisy_query_batch(train, 0.5, 10, seed=3, name="train", level=4)
    assert torch.equal(a, noisy_query_batch(train, 0.5, 10, seed=3, name="train", level=4))
    assert not torch.equal(a, noisy_query_batch(train, 0.5, 10, seed=3, name="test", level=4))
    half = lambda x, s: 0.5 * (refs.empirical(x, s) + refs.gaussian(x, s))  # noqa: E731
    kwargs = dict(queries=16, seed=3, net_dtype=torch.float64)
    one = denoiser_distances(half, {"empirical": refs.empirical, "gaussian": refs.gaussian}, {"train": train},
                             [2.0, 0.5], **kwargs)
    two = denoiser_distances(half, {"empirical": refs.empirical}, {"test": test, "train": train}, [2.0, 0.5],
                             chunk=5, **kwargs)
    np.testing.assert_allclose(one.error["train"]["empirical"], two.error["train"]["empirical"], rtol=1e-12)
    # the midpoint is equally far from both references: error = gap / 4 to each
    np.testing.assert_allclose(one.error["train"]["empirical"], one.error["train"]["gaussian"], rtol=1e-9)
    rows = one.rows()
    assert len(rows) == 4 and {r["reference"] for r in rows} == {"empirical", "gaussian"}


def test_loss_ratio_floor_is_the_empirical_optimum(cell):
    train, _, refs = cell
    exact = loss_ratio(refs.empirical, refs.empirical, train, batch=200, net_dtype=torch.float64)
    assert exact.ratio == 1.0 and exact.per_sample_loss.shape == (200,)
    # any other denoiser is worse on a large batch (the optimum minimises the loss pointwise)
    for net in (refs.gaussian, _switch(refs.gaussian, refs.empirical, at=1.0)):
        assert loss_ratio(net, refs.empirical, train, batch=400, net_dtype=torch.float64).ratio > 1.0
    edm = loss_ratio(refs.gaussian, refs.empirical, train, "edm", batch=50)
    assert edm.to_dict()["loss_definition"]["name"] == "edm"
    with pytest.raises(InputError, match="float tensor"):
        loss_ratio(refs.gaussian, refs.empirical, train.to(torch.uint8))


def test_moment_matched_gaussian_has_the_data_moments():
    g = torch.Generator().manual_seed(2)
    for n in (5, 40):  # fewer and more samples than dimensions (d = 12)
        data = torch.randn(n, 3, 2, 2, generator=g, dtype=torch.float64)
        gauss = moment_matched_gaussian(data)
        flat = data.reshape(n, -1)
        centred = flat - flat.mean(0)
        torch.testing.assert_close(gauss.mean.reshape(-1), flat.mean(0))
        torch.testing.assert_close(gauss.cov, centred.T @ centred / n)


# --- the optimum's samples: cached by what determines them ----------------------------------------------------------

def test_optimum_samples_are_cached_on_disk(cell, tmp_path):
    train, test, _ = cell
    settings = CellEvalSettings(distance_queries=4, loss_batch=8, net_dtype="float64")
    kwargs = dict(test_images=test, sample_seeds=range(7), settings=settings, cache_dir=tmp_path)
    refs = CellReferences(train)
    first = evaluate_cell(refs.gaussian, train, references=refs, **kwargs)
    assert first.metrics["optimum_samples_source"] == "computed"
    files = list(tmp_path.glob("optimum-*.npz"))
    assert len(files) == 1
    again = evaluate_cell(refs.gaussian, train, references=refs, **kwargs)
    assert again.metrics["optimum_samples_source"] == "memory"
    fresh = CellReferences(train)
    from_disk = evaluate_cell(fresh.gaussian, train, references=fresh, **kwargs)
    assert from_disk.metrics["optimum_samples_source"] == "disk"
    np.testing.assert_array_equal(from_disk.optimum_samples, first.optimum_samples)
    assert from_disk.metrics["rp_optimum"] == first.metrics["rp_optimum"]
    files[0].write_bytes(b"damaged")  # a damaged file is recomputed, never trusted
    healed = evaluate_cell(refs.gaussian, train, references=CellReferences(train), **kwargs)
    assert healed.metrics["optimum_samples_source"] == "computed"
    np.testing.assert_array_equal(healed.optimum_samples, first.optimum_samples)
    other = dict(kwargs, sample_seeds=range(1, 8))  # other seeds: another key
    evaluate_cell(refs.gaussian, train, references=refs, **other)
    assert len(list(tmp_path.glob("optimum-*.npz"))) == 2


def test_fixed_references_cached_and_uncached_give_identical_metrics(cell, tmp_path):
    """The references' answers on the fixed queries and the loss floor: computed once, then from memory, then from
    disk in a fresh process; every metric identical; a changed setting or other held-out images compute anew."""
    train, test, _ = cell
    settings = CellEvalSettings(distance_queries=8, loss_batch=16, net_dtype="float64")
    kwargs = dict(test_images=test, sample_seeds=range(5), settings=settings, cache_dir=tmp_path)
    refs = CellReferences(train)
    half = lambda x, s: 0.5 * (refs.empirical(x, s) + refs.gaussian(x, s))  # noqa: E731
    uncached = evaluate_cell(half, train, **{**kwargs, "cache_dir": None})
    first = evaluate_cell(half, train, references=refs, **kwargs)
    again = evaluate_cell(half, train, references=refs, **kwargs)
    fresh = CellReferences(train)
    from_disk = evaluate_cell(half, train, references=fresh, **kwargs)
    sources = [ev.metrics["fixed_references_source"] for ev in (uncached, first, again, from_disk)]
    assert sources == ["computed", "computed", "memory", "disk"]
    assert len(list(tmp_path.glob("references-*.npz"))) == 1
    for ev in (first, again, from_disk):
        assert ev.metrics["per_sigma"] == uncached.metrics["per_sigma"]
        for key in ("loss", "loss_floor", "loss_ratio", "rp_optimum", "copy_fraction"):
            assert ev.metrics[key] == uncached.metrics[key], key
        np.testing.assert_array_equal(ev.loss_batch["loss_floor"], uncached.loss_batch["loss_floor"])
    assert np.all(_distance(from_disk, "train", "empirical") > 0)
    changed = [dict(kwargs, settings=CellEvalSettings(distance_queries=9, loss_batch=16, net_dtype="float64")),
               dict(kwargs, settings=CellEvalSettings(distance_queries=8, loss_batch=16, distance_seed=5,
                                                      net_dtype="float64")),
               dict(kwargs, settings=CellEvalSettings(distance_queries=8, loss_batch=17, net_dtype="float64")),
               dict(kwargs, test_images=test[1:])]
    for i, other in enumerate(changed):
        ev = evaluate_cell(half, train, references=fresh, **other)
        assert ev.metrics["fixed_references_source"] == "computed"
        assert len(list(tmp_path.glob("references-*.npz"))) == 2 + i
    for path in tmp_path.glob("references-*.npz"):
        path.write_bytes(b"damaged")  # a damaged file is recomputed, never trusted
    healed = evaluate_cell(half, train, references=CellReferences(train), **kwargs)
    assert healed.metrics["fixed_references_source"] == "computed"
    assert healed.metrics["per_sigma"] == uncached.metrics["per_sigma"]


def test_distance_standard_error_is_the_delta_method(cell):
    """se = std(e - d s) / sqrt(Q) / mean(s) per level, from the per-query errors e and steps s; 0 for the identity
    (e = s on every query)."""
    train, test, refs = cell
    half = lambda x, s: 0.5 * (refs.empirical(x, s) + refs.gaussian(x, s))  # noqa: E731
    fixed = distance_references({"empirical": refs.empirical}, {"train": train}, [2.0, 0.5], queries=12, seed=4)
    dist = distances_to(half, fixed, net_dtype=torch.float64)
    for i, sigma in enumerate([2.0, 0.5]):
        x = noisy_query_batch(train, sigma, 12, seed=4, name="train", level=i)
        d_ref = refs.empirical(x, sigma)
        e = ((half(x, sigma) - d_ref) ** 2).flatten(1).sum(1).numpy()
        st = ((d_ref - x) ** 2).flatten(1).sum(1).numpy()
        ratio = e.mean() / st.mean()
        assert dist.distance("train", "empirical")[i] == pytest.approx(ratio, rel=1e-12)
        expected = (e - ratio * st).std(ddof=1) / np.sqrt(12) / st.mean()
        assert dist.distance_se["train"]["empirical"][i] == pytest.approx(expected, rel=1e-9)
    identity = distances_to(lambda x, s: x.clone(), fixed, net_dtype=torch.float64)
    np.testing.assert_allclose(identity.distance_se["train"]["empirical"], 0.0, atol=1e-12)


def test_net_precision_bf16_rounds_the_net_only(cell):
    """bf16 autocast changes a float32 net's products (so the option is not a no-op) and is recorded; float64
    inputs (the exact degenerate tests) stay float64 under it, so the optimum as the net is still exact."""
    train, test, refs = cell
    weight = torch.randn(192, 192, generator=torch.Generator().manual_seed(1)) / 40

    def linear(x, s):
        return (x.flatten(1) @ weight.to(x.dtype)).reshape(x.shape).tanh()

    x = torch.randn(4, 3, 8, 8)
    assert not torch.equal(at_precision(linear, "bf16", torch.device("cpu"))(x, 1.0), linear(x, 1.0))
    assert at_precision(linear, "fp32", torch.device("cpu")) is linear
    small = dict(distance_queries=4, loss_batch=8)
    ev = _evaluate(linear, cell, settings=CellEvalSettings(net_precision="bf16", **small), seeds=range(4))
    assert ev.metrics["dtypes"]["net_precision"] == "bf16" and ev.metrics["dtypes"]["net_autocast"] == "bfloat16"
    assert ev.metrics["settings"]["net_precision"] == "bf16"
    exact = _evaluate(refs.empirical, cell, settings=CellEvalSettings(net_precision="bf16", net_dtype="float64",
                                                                       **small), seeds=range(8))
    assert exact.metrics["rp_optimum"] == 1.0 and exact.metrics["loss_ratio"] == 1.0
    assert np.all(_distance(exact, "train", "empirical") == 0)
    with pytest.raises(InputError, match="net_precision"):
        CellEvalSettings(net_precision="fp16").check()


def test_samples_do_not_depend_on_the_batch(cell):
    small = CellEvalSettings(distance_queries=4, loss_batch=8, sample_batch=7)
    a = _evaluate(cell[2].gaussian, cell, settings=small)
    b = _evaluate(cell[2].gaussian, cell, settings=CellEvalSettings(distance_queries=4, loss_batch=8))
    np.testing.assert_array_equal(a.samples, b.samples)


def test_results_are_json_ready_and_saved(cell, tmp_path):
    ev = _evaluate(cell[2].empirical, cell, seeds=range(100_000, 100_010))
    paths = ev.save(tmp_path)
    loaded = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("n", "rp_optimum", "copy_fraction", "gl", "loss_ratio", "per_sigma", "similarity", "settings",
                "provenance", "timing_s"):
        assert key in loaded
    assert loaded["similarity"]["threshold"] == 0.9 and loaded["n"] == 16 and loaded["num_seeds"] == 10
    assert [p.name for p in paths] == ["per_sample.npz", "per_seed.npz", "per_sigma.csv", "metrics.json"]  # last
    with np.load(tmp_path / "per_sample.npz") as z, np.load(tmp_path / "per_seed.npz") as small:
        assert z["samples"].shape == (10, 3, 8, 8) and z["seeds"].tolist() == list(range(100_000, 100_010))
        assert z["loss_batch_loss"].shape == (EXACT.loss_batch,)
        assert sorted(small.files) == sorted(set(z.files) - {"samples", "optimum_samples"})
        for name in small.files:
            np.testing.assert_array_equal(small[name], z[name])
    assert (tmp_path / "per_sigma.csv").read_text().count("\n") == 1 + 2 * 2 * 18


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_learned_embedding_backend_in_a_cell(cell, tmp_path):
    """A TorchScript descriptor drives RP and GL; the subset's features are computed once per references."""
    from mogsim.metrics.similarity import LearnedEmbedding

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 5, stride=4), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 6)).eval()
    path = tmp_path / "descriptor.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    backend = LearnedEmbedding(path, resize=64)
    ev = _evaluate(cell[2].empirical, cell, similarity=backend, seeds=range(100_000, 100_016))
    m = ev.metrics
    assert m["similarity"]["backend"] == "torchscript" and m["similarity"]["preprocessing"]["resize"] == 64
    assert m["rp_optimum"] == 1.0 and m["memorized_fraction"] == 1.0 and m["similarity_threshold"] == 0.6
    assert cell[2].features(backend) is cell[2].features(backend)


# --- bad input --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["other-subset", "test-shape", "no-seeds", "negative-seed", "solver", "similarity",
                                  "subset-dtype"])
def test_bad_inputs_are_one_line(cell, tmp_path, case):
    train, test, refs = cell
    kwargs = dict(test_images=test, sample_seeds=range(3), references=refs,
                  settings=CellEvalSettings(distance_queries=2, loss_batch=4))
    subset = train
    if case == "other-subset":
        subset = train.flip(0)
    elif case == "test-shape":
        kwargs["test_images"] = test[:, :, :4]
    elif case == "no-seeds":
        kwargs["sample_seeds"] = []
    elif case == "negative-seed":
        kwargs["sample_seeds"] = [3, -1]
    elif case == "solver":
        kwargs["settings"] = CellEvalSettings(solver="rk4")
    elif case == "similarity":
        kwargs["similarity"] = tmp_path / "missing.pt"
    elif case == "subset-dtype":
        kwargs.pop("references")
        subset = train.to(torch.int64)
    with pytest.raises(InputError) as info:
        evaluate_cell(refs.empirical, subset, **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.gpu
def test_cuda_evaluation_agrees_with_cpu(cell, cuda):
    """The same cell on the GPU: the same seeds, samples and verdicts; distances to float64 rounding."""
    train, test, refs = cell
    on_gpu = CellReferences(train, cuda)
    for net_cpu, net_gpu in ((refs.empirical, on_gpu.empirical), (refs.gaussian, on_gpu.gaussian)):
        a = _evaluate(net_cpu, cell)
        b = evaluate_cell(net_gpu, train, test_images=test, sample_seeds=SEEDS, references=on_gpu, settings=EXACT,
                          device=cuda)
        for key in ("rp_optimum", "copy_fraction", "memorized_fraction", "gl"):
            assert a.metrics[key] == b.metrics[key], key
        np.testing.assert_allclose(b.samples, a.samples, atol=1e-9)
        np.testing.assert_allclose(_distance(b, "test", "gaussian"), _distance(a, "test", "gaussian"), atol=1e-9)
        assert b.metrics["loss_ratio"] == pytest.approx(a.metrics["loss_ratio"], rel=1e-6)


# --- real CIFAR-10 -----------------------------------------------------------------------------------------------

def test_real_cifar_subset_references():
    """On 32 real test-split images (8x8 by 4x4 averaging): the optimum is RP 1 with itself, the mean is RP 0."""
    path = shared_data_dir() / "cifar10-jpeg"
    if not path.exists():
        pytest.skip("needs ../shared/data/cifar10-jpeg")
    from mogsim.data import images_to_tensor, load_cifar10, subset_indices

    images, labels = load_cifar10(path, split="test")
    idx = subset_indices(len(labels), 48, seed=0, labels=labels, balanced=True)
    small = torch.nn.functional.avg_pool2d(images_to_tensor(images[idx], dtype=torch.float64), 4)
    train, test = small[:32], small[32:]
    refs = CellReferences(train)
    for net, memorizes in ((refs.empirical, True), (_mean_net(refs), False)):
        ev = evaluate_cell(net, train, test_images=test, sample_seeds=range(100_000, 100_032), references=refs,
                           settings=EXACT)
        m = ev.metrics
        assert m["rp_optimum"] == m["copy_fraction"] == m["memorized_fraction"] == float(memorizes)
        assert m["gl"] == float(not memorizes)

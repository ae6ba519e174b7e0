"""Training engine: budgets, data order, losses, EMA, overfitting, exact resume, divergence, run folders."""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mogsim.data import write_edm_zip
from mogsim.errors import InputError
from mogsim.nets import PreconditionedDenoiser, network_config
from mogsim.runs import RunFolder, load_checkpoint
from mogsim.training import (EMA, Budget, DataOrder, EDMLoss, RuntimeOptions, TrainConfig, Trainer,
                             TrainingDiverged, VPLoss, load_trained_denoiser, per_sample_loss, resolve_budget,
                             train_run)
from mogsim.training.loop import float32_mode


def list_checkpoints(run: Path) -> list:
    return RunFolder(run).checkpoints()

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (3, 8, 8)


def tiny_net(**kw) -> dict:
    kw = {"channel_mult": (1, 2), "attn_resolutions": (4,), "model_channels": 16, **kw}
    return network_config("unet-tiny", SHAPE, **kw)


def tiny_config(**kw) -> TrainConfig:
    base = dict(net=tiny_net(), precond="edm", batch=8, lr=2e-3, lr_warmup_images=16, ema_halflife_images=64)
    base.update(kw)
    return TrainConfig(**base)


def images(n: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, *SHAPE), generator=g, dtype=torch.uint8)


QUIET = RuntimeOptions(progress="none", log_every=1, checkpoint_every=2, keep_checkpoints=0)



# --- budget, data order, schedules ------------------------------------------------------------------------------

def test_budget_needs_exactly_one_kind_and_resolves_all_three():
    with pytest.raises(InputError, match="exactly one"):
        resolve_budget()
    with pytest.raises(InputError, match="exactly one"):
        resolve_budget(steps=10, images=100)
    with pytest.raises(InputError, match="positive"):
        resolve_budget(epochs=0)
    with pytest.raises(InputError, match="whole"):
        resolve_budget(steps=1.5)
    assert resolve_budget(images=1000).total_steps(batch=128, num_items=64) == 8  # rounds up
    rec = resolve_budget(epochs=2).record(batch=128, num_items=640)
    assert rec == {"kind": "epochs", "value": 2, "steps": 10, "images": 1280, "epochs": 2.0, "batch": 128}
    assert Budget("steps", 7).total_steps(128, 10) == 7


def test_data_order_is_seeded_per_epoch_and_crosses_epochs():
    order = DataOrder(10, seed=3)
    stream = np.concatenate([order.batch_indices(k, 4) for k in range(5)])  # 20 = two epochs
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:]) == list(range(10))
    assert not np.array_equal(stream[:10], stream[10:])
    assert np.array_equal(DataOrder(10, 3).batch_indices(3, 4), order.batch_indices(3, 4))  # a function of step
    assert not np.array_equal(DataOrder(10, 4).permutation(0), order.permutation(0))
    big = DataOrder(3, 0).batch_indices(0, 8)  # batch larger than the set: several epochs in one batch
    assert len(big) == 8 and sorted(big[:3]) == [0, 1, 2]
    assert order.state(3, 4) == {"seed": 3, "num_items": 10, "epoch": 1, "offset": 2, "position": 12}


def test_lr_warmup_and_ema_beta():
    cfg = tiny_config(lr=1e-3, lr_warmup_images=32, batch=8)
    assert [cfg.lr_at(k) for k in range(5)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3])
    assert tiny_config(lr_warmup_images=0).lr_at(0) == tiny_config().lr
    ema = EMA(torch.nn.Linear(1, 1), halflife_images=100, rampup_ratio=None)
    assert ema.beta(10, 100) == pytest.approx(0.5)
    ramp = EMA(torch.nn.Linear(1, 1), halflife_images=1e6, rampup_ratio=0.5)
    assert ramp.beta(200, 100) == pytest.approx(0.5)  # half-life capped at 0.5 * 200 images


def test_ema_update_matches_formula():
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, halflife_images=100, rampup_ratio=None)
    old = ema.module.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    beta = ema.update(model, images=1000, batch=100)
    assert torch.allclose(ema.module.weight, beta * old + (1 - beta) * model.weight.detach())
    assert not ema.module.weight.requires_grad


# --- losses -----------------------------------------------------------------------------------------------------

def test_loss_noise_distributions_and_weights():
    g = torch.Generator().manual_seed(0)
    s = EDMLoss().sample_sigma(200_000, g, torch.device("cpu"))
    assert abs(s.log().mean().item() + 1.2) < 0.02 and abs(s.log().std().item() - 1.2) < 0.02
    sig = torch.tensor([0.1, 0.5, 3.0])
    assert torch.allclose(EDMLoss().weight(sig), (sig**2 + 0.25) / (sig * 0.5) ** 2)
    v = VPLoss().sample_sigma(100_000, g, torch.device("cpu"))
    from mogsim.conventions import VPSchedule
    lo, hi = VPSchedule().sigma(torch.tensor(1e-5)), VPSchedule().sigma(torch.tensor(1.0))
    assert v.min() >= lo * 0.999 and v.max() <= hi * 1.001
    assert torch.allclose(VPLoss().weight(sig), 1 / sig**2)


def test_per_sample_loss_formula():
    y = torch.randn(3, 2, 2)
    noise = torch.randn(3, 2, 2)
    sigma = torch.tensor([0.2, 1.0, 4.0])
    out = per_sample_loss(lambda x, s: 0.5 * x, EDMLoss(), y, sigma, noise)
    d = 0.5 * (y + sigma.reshape(-1, 1, 1) * noise)
    assert torch.allclose(out, EDMLoss().weight(sigma) * ((d - y) ** 2).mean(dim=(1, 2)))


# --- the loop ---------------------------------------------------------------------------------------------------

def test_tiny_unet_overfits_four_images():
    """Training lowers the loss on the four training images by a wide margin.

    The criterion is relative and smoothed, so it holds on any CPU and thread count: float rounding differs between
    machines and makes short trajectories diverge like a change of seed would. Over seeds 0..9 (one thread, Intel)
    the EMA net's median loss ratio over steps 300/350/400 was 8.3 to 20.9; a broken optimiser, loss or EMA gives
    a ratio near 1, so the bound of 4 keeps a 2x margin and can still fail.
    """
    torch.manual_seed(0)
    data = torch.rand(4, *SHAPE) * 2 - 1
    cfg = TrainConfig(net=tiny_net(), precond="edm", batch=32, lr=2e-3, lr_warmup_images=0, ema_halflife_images=640,
                      ema_rampup_ratio=None)
    trainer = Trainer(cfg, data, runtime=RuntimeOptions(progress="none", log_every=50))
    g = torch.Generator().manual_seed(1)
    y = data.repeat(8, 1, 1, 1)
    sigma = torch.exp(torch.linspace(-1.6, 0.7, 32))  # fixed evaluation: sigma 0.2 .. 2, fixed noise
    noise = torch.randn(y.shape, generator=g)
    ema = PreconditionedDenoiser(trainer.ema.module, trainer.precond)

    def evaluate(denoiser: PreconditionedDenoiser) -> float:
        with torch.no_grad():
            return per_sample_loss(denoiser.denoise, trainer.loss, y, sigma, noise).mean().item()

    before = evaluate(trainer.denoiser)
    ratios = []
    for steps in (300, 350, 400):
        trainer.fit(steps)
        ratios.append(before / evaluate(ema))
    assert float(np.median(ratios)) > 4.0, (before, ratios)


def _state(run: Path) -> dict:
    return load_checkpoint(RunFolder(run).latest_checkpoint())


def _assert_same_state(a: dict, b: dict) -> None:
    """Weights, EMA, optimizer state and loss history: every piece of training state that affects results."""
    assert a["step"] == b["step"]
    for key in ("net", "ema"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name} differs"
    oa, ob = a["optimizer"], b["optimizer"]
    assert oa["steps"] == ob["steps"]
    for name in ("exp_avg", "exp_avg_sq"):
        for ta, tb in zip(oa[name], ob[name], strict=True):
            assert torch.equal(ta, tb)
    assert a["loss"]["history"] == b["loss"]["history"]
    assert torch.equal(a["loss"]["sums"], b["loss"]["sums"]) and a["loss"]["count"] == b["loss"]["count"]


def _losses(run: Path) -> list[tuple[str, str]]:
    with open(run / "log.csv", newline="") as fh:
        return [(r["step"], r["loss"]) for r in csv.DictReader(fh)]


@contextlib.contextmanager
def killed_at_step(step: int, monkeypatch):
    """The block's training launch dies (KeyboardInterrupt) during ``step``, as a killed process would."""
    original = Trainer.train_step

    def dying(self, k):
        if k == step:
            raise KeyboardInterrupt
        return original(self, k)

    monkeypatch.setattr(Trainer, "train_step", dying)
    with pytest.raises(KeyboardInterrupt):
        yield
    monkeypatch.setattr(Trainer, "train_step", original)


def test_interrupted_and_resumed_run_is_bitwise_identical(tmp_path, monkeypatch):
    cfg = tiny_config(net=tiny_net(dropout=0.2), xflip=True)  # dropout and flips exercise every random stream
    data = images()
    full = train_run(cfg, data, Budget("steps", 5), tmp_path / "full", runtime=QUIET)
    assert full["steps"] == 5 and full["resumed_from"] is None

    # A launch killed during step 3 (0-based; last checkpoint after 2 steps), then a resume to 5.
    with killed_at_step(3, monkeypatch):
        train_run(cfg, data, Budget("steps", 5), tmp_path / "cut", runtime=QUIET)
    assert [s for s, _ in list_checkpoints(tmp_path / "cut")] == [2]
    assert _losses(tmp_path / "cut")[-1][0] == "3"  # a log row past the checkpoint, dropped on resume
    resumed = train_run(cfg, data, Budget("steps", 5), tmp_path / "cut", runtime=QUIET)
    assert resumed["resumed_from"].endswith("ckpt-000000002.pt") and resumed["steps_this_launch"] == 3
    launches = json.loads((tmp_path / "cut" / "config.json").read_text())["launches"]
    assert [x["resumed_from"] for x in launches] == [None, "ckpt-000000002.pt"]
    _assert_same_state(_state(tmp_path / "full"), _state(tmp_path / "cut"))
    assert _losses(tmp_path / "full") == _losses(tmp_path / "cut")

    # Extending a finished run with a larger budget continues the same trajectory.
    train_run(cfg, data, Budget("steps", 3), tmp_path / "ext", runtime=QUIET)
    train_run(cfg, data, Budget("images", 5 * cfg.batch), tmp_path / "ext", runtime=QUIET)
    _assert_same_state(_state(tmp_path / "full"), _state(tmp_path / "ext"))


def test_kill_mid_log_interval_resumes_losses_exactly(tmp_path, monkeypatch):
    """A checkpoint between log rows carries the running loss sums: the log row after a resume is the same."""
    runtime = RuntimeOptions(progress="none", log_every=3, checkpoint_every=2, keep_checkpoints=0)
    cfg, data = tiny_config(), images()
    train_run(cfg, data, Budget("steps", 6), tmp_path / "full", runtime=runtime)
    with killed_at_step(2, monkeypatch):
        train_run(cfg, data, Budget("steps", 6), tmp_path / "cut", runtime=runtime)
    assert load_checkpoint(RunFolder(tmp_path / "cut").latest_checkpoint())["loss"]["count"] == 2
    train_run(cfg, data, Budget("steps", 6), tmp_path / "cut", runtime=runtime)
    _assert_same_state(_state(tmp_path / "full"), _state(tmp_path / "cut"))
    assert _losses(tmp_path / "full") == _losses(tmp_path / "cut") and len(_losses(tmp_path / "cut")) == 2


def test_divergence_before_any_checkpoint_says_so():
    trainer = Trainer(tiny_config(), images(), runtime=RuntimeOptions(progress="none", log_every=2))
    trainer.net.register_forward_hook(lambda module, args, output: output * float("nan"))
    with pytest.raises(TrainingDiverged, match="at step 0 .*; no checkpoint was written") as info:
        trainer.fit(4)
    assert info.value.checkpoint_step is None and "was kept" not in str(info.value)


def test_trainer_refuses_non_finite_data_up_front():
    data = torch.rand(6, *SHAPE)
    data[4, 1, 2, 3] = float("inf")
    with pytest.raises(InputError, match=r"data: item 4 \(and 0 more\) holds NaN or Inf values") as info:
        Trainer(tiny_config(), data)
    assert info.value.parameter == "data"


def test_non_finite_loss_names_the_step_and_keeps_no_bad_checkpoint(tmp_path):
    cfg = tiny_config()
    trainer = Trainer(cfg, images(), runtime=RuntimeOptions(progress="none", log_every=100, checkpoint_every=2))
    calls = {"n": 0}

    def poison(module, args, output):
        calls["n"] += 1
        return output * float("nan") if calls["n"] == 4 else output  # the 4th forward = step 3

    trainer.net.register_forward_hook(poison)
    with pytest.raises(TrainingDiverged, match=r"at step 3 \(0-based; after 24 images\).*checkpoint \(step 2\) was "
                       "kept") as info:
        trainer.fit(10, tmp_path)
    assert info.value.step == 3
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2]


def test_run_folder_refuses_other_config_unless_forced(tmp_path):
    data = images()
    train_run(tiny_config(), data, Budget("steps", 2), tmp_path, runtime=QUIET)
    record = json.loads((tmp_path / "config.json").read_text())
    assert record["budget"]["steps"] == 2 and record["train"]["lr"] == 2e-3
    assert record["parameters"] > 0 and "git_commit" in record["provenance"]
    assert record["runtime"]["world_size"] == 1
    with pytest.raises(InputError, match=r"different config: train\.lr: 0\.002 -> 0\.001"):
        train_run(tiny_config(lr=1e-3), data, Budget("steps", 2), tmp_path, runtime=QUIET)
    with pytest.raises(InputError, match="data"):
        train_run(tiny_config(), images(seed=1), Budget("steps", 2), tmp_path, runtime=QUIET)
    out = train_run(tiny_config(lr=1e-3), data, Budget("steps", 1), tmp_path, runtime=QUIET, force=True)
    assert out["resumed_from"] is None and [s for s, _ in list_checkpoints(tmp_path)] == [1]


def test_trained_denoiser_loads_back(tmp_path):
    train_run(tiny_config(precond="vp"), images(), Budget("steps", 1), tmp_path, runtime=QUIET)
    den = load_trained_denoiser(tmp_path)
    x = torch.randn(2, *SHAPE, dtype=torch.float64)
    out = den(x, torch.tensor([0.5, 2.0]))
    assert out.shape == x.shape and out.dtype == torch.float64 and torch.isfinite(out).all()
    with pytest.raises(InputError, match="does not exist"):
        load_trained_denoiser(tmp_path / "nothing-here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="has no checkpoints"):
        load_trained_denoiser(tmp_path / "empty")


def test_trainer_input_checks():
    with pytest.raises(InputError, match="sample shape"):
        Trainer(tiny_config(), torch.zeros(4, 3, 4, 4))
    with pytest.raises(InputError, match="divisible"):
        from mogsim.training import DistContext
        Trainer(tiny_config(batch=9), images(), ctx=DistContext(world_size=2))
    with pytest.raises(InputError, match="precond"):
        tiny_config(precond="ve")


def test_float32_mode_sets_and_restores_tf32_flags():
    """The trainer's float32 mode goes through the one TF32 switch (mogsim.devices.float32_precision)."""
    settings = [torch.backends.cuda.matmul, torch.backends.cudnn.conv]
    before = [b.fp32_precision for b in settings]
    with float32_mode(torch.device("cpu"), tf32=False):
        assert [b.fp32_precision for b in settings] == ["ieee", "ieee"]  # TF32 off for cuDNN and CUDA matmuls
    with float32_mode(torch.device("cpu"), tf32=True):
        assert [b.fp32_precision for b in settings] == ["tf32", "tf32"]
    assert [b.fp32_precision for b in settings] == before


# --- the benchmark script ---------------------------------------------------------------------------------------

def benchmark_module() -> Any:
    """``benchmarks/bench_train.py`` as a module."""
    spec = importlib.util.spec_from_file_location("bench_train", ROOT / "benchmarks" / "bench_train.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def load_benchmark(tmp_path: Path) -> tuple[Any, Path]:
    """The benchmark module and a 24-image EDM zip for it."""
    rng = np.random.default_rng(0)
    data = tmp_path / "cifar.zip"
    write_edm_zip(data, rng.integers(0, 256, (24, 3, 32, 32), dtype=np.uint8), np.arange(24) % 10)
    return benchmark_module(), data


def test_benchmark_smoke_runs_on_cpu(tmp_path):
    """The GPU benchmark's own CPU smoke check, on its cheapest sections (the others run in CI-free smoke calls)."""
    bench, data = load_benchmark(tmp_path)
    result = bench.main(["--cpu-smoke", "--out", str(tmp_path / "out"), "--cifar", str(data),
                         "--only", "throughput,equivalence"])
    saved = json.loads((tmp_path / "out" / "bench_train.json").read_text())
    assert saved["torch"] == torch.__version__ and saved["sections"]["throughput"]["status"] == "ok"
    rows = [r for r in result["results"] if r.get("source") == "measured"]
    assert {r["precision"] for r in rows} == {"fp32", "bf16"} and all(r["images_per_s"] > 0 for r in rows)
    eq = saved["sections"]["equivalence"]["value"]
    assert eq["steps_done"] == 8 and len(eq["eval_loss"]["bf16"]) == 2 and eq["execution"]["bf16"]["precision"] == "bf16"


def test_benchmark_members_section_on_cpu(tmp_path, monkeypatch):
    """The ``members`` section's smoke path: M = 1 and 2 of the Fig. 5a vector UNet (EDM, float data) and of a
    CIFAR UNet (VP, uint8 images) measured, the aggregate and speed-up arithmetic, and a configuration that would
    not fit the budget skipped and recorded (unet-64, whose first estimate is made huge: it saves CI time too)."""
    bench, data = load_benchmark(tmp_path)
    monkeypatch.setitem(bench.FIRST_ESTIMATE_S, "unet-64", 1e9)
    bench.main(["--cpu-smoke", "--out", str(tmp_path / "out"), "--cifar", str(data), "--only", "members"])
    saved = json.loads((tmp_path / "out" / "bench_train.json").read_text())
    assert saved["sections"]["members"]["status"] == "ok" and set(saved["sections"]) == {"members"}
    rows = {(r["arch"], r["members"]): r for r in saved["results"]}
    assert set(rows) == {(a, m) for a in ("unet-vector", "unet-tiny", "unet-64") for m in (1, 2)}
    for arch in ("unet-vector", "unet-tiny"):
        one, two = rows[arch, 1], rows[arch, 2]
        assert one["status"] == two["status"] == "ok" and one["speedup_vs_one_at_a_time"] == 1.0
        assert two["images_per_s"] == pytest.approx(1000 * 2 * two["batch"] / two["ms_per_step"])
        assert two["one_at_a_time_images_per_s"] == one["images_per_s"]
        assert two["speedup_vs_one_at_a_time"] == pytest.approx(two["images_per_s"] / one["images_per_s"])
        assert two["parameters"] == 2 * one["parameters"]  # two independent networks
    assert rows["unet-vector", 1]["precision"] == "fp32" and rows["unet-tiny", 1]["precision"] == "bf16"
    assert all(rows["unet-64", m]["status"] == "skipped" and "time budget" in rows["unet-64", m]["reason"]
               for m in (1, 2))
    assert saved["sections"]["members"]["value"]["skipped"] == 2


def test_benchmark_members_time_prediction():
    """Skipping rule of the ``members`` section: timings fixed, the rest scaled by the member ratio."""
    bench = benchmark_module()
    assert bench.predicted_seconds("unet-64", None, 1) == bench.FIRST_ESTIMATE_S["unet-64"]
    assert bench.predicted_seconds("unet-vector", (4, 6.0, 2.0), 8) == pytest.approx(2.0 + 4.0 * 2)
    assert bench.predicted_seconds("unet-vector", (1, 1.0, 2.0), 16) == pytest.approx(2.0)  # never negative


# --- GPU --------------------------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bf16_channels_last_steps_are_finite():
    from mogsim.training import DistContext

    cfg = tiny_config(precision="bf16")
    trainer = Trainer(cfg, images(), runtime=RuntimeOptions(channels_last=True, progress="none"),
                      ctx=DistContext(device=torch.device("cuda")))
    for k in range(3):
        loss, norm = trainer.train_step(k)
    assert math.isfinite(float(loss)) and math.isfinite(float(norm))

"""``benchmarks/bench_cifar_eval.py``: its training-rate part is capped in steps and seconds, can be given instead of
measured, and runs only after the evaluation timings are on disk (a GPU call once lost them to that part).

The whole script on the CPU (``--quick``) takes minutes on a busy machine, so these tests call its parts."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_cifar_eval.py"
pytestmark = pytest.mark.skipif(not SCRIPT.is_file(), reason="no benchmarks/ beside the tests")


def bench_module() -> Any:
    """The script as a module; ``sys.path`` is restored after it (the script prepends the checkout, and a
    ``mogsim.egg-info`` there would then shadow the installed package's metadata in later tests)."""
    spec = importlib.util.spec_from_file_location("bench_cifar_eval", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    saved = list(sys.path)
    try:
        spec.loader.exec_module(bench)
    finally:
        sys.path[:] = saved
    return bench


def training_args(**changes: Any) -> SimpleNamespace:
    args = dict(arch="unet-tiny", train_batch=2, train_precision="fp32", train_steps=50, compile_steps=0,
                train_seconds=1e9, train_images_per_s=None)
    return SimpleNamespace(**{**args, **changes})


def subset() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)


def test_training_rate_stops_at_the_time_cap():
    bench = bench_module()
    rate, how = bench.train_images_per_s(training_args(train_seconds=0.0), subset(), torch.device("cpu"))
    assert how["source"] == "measured" and how["steps"] == bench.TIME_CHECK_EVERY  # the first check stops it
    assert rate == pytest.approx(how["steps"] * 2 / how["seconds"]) and rate > 0
    assert how["execution"]["cuda_graph"] is False and how["execution"]["compiled"] is False


def test_training_runs_on_the_benchmark_device(monkeypatch):
    """The Trainer gets the device (without it, it trains on the CPU: a GPU call lost its JSON that way)."""
    bench = bench_module()
    real, devices = bench.Trainer, []

    def recording_trainer(*args: Any, **kwargs: Any) -> Any:
        devices.append(kwargs["ctx"].device if kwargs.get("ctx") is not None else None)
        return real(*args, **kwargs)

    monkeypatch.setattr(bench, "Trainer", recording_trainer)
    _, how = bench.train_images_per_s(training_args(train_steps=1), subset(), torch.device("cpu"))
    assert devices == [torch.device("cpu")] and how["device"] == "cpu"


def test_training_rate_stops_at_the_step_cap():
    bench = bench_module()
    _, how = bench.train_images_per_s(training_args(train_steps=2), subset(), torch.device("cpu"))
    assert how["steps"] == 2


def test_training_rate_given_or_skipped_trains_nothing(monkeypatch):
    bench = bench_module()
    monkeypatch.setattr(bench, "Trainer", None)  # any training would fail here
    assert bench.train_images_per_s(training_args(train_images_per_s=2825.0), subset(), torch.device("cpu")) \
        == (2825.0, {"source": "--train-images-per-s"})
    assert bench.train_images_per_s(training_args(train_steps=0), subset(), torch.device("cpu"))[0] is None
    assert bench.train_images_per_s(training_args(), subset(), torch.device("cpu"), compile=True) \
        == (None, {"source": "not measured (--compile-steps 0)"})


def fake_metrics(total: float) -> dict[str, Any]:
    return {"timing_s": {"sample_net": total / 2, "total": total}, "optimum_samples_source": "computed",
            "fixed_references_source": "computed", "dtypes": {"net_precision": "fp32"}, "rp_optimum": 0.0,
            "copy_fraction": 0.0, "gl": 1.0, "loss_ratio": 2.0}


def test_evaluation_timings_are_written_before_the_training_part(tmp_path, monkeypatch):
    """A training part that never returns (here: one that fails) leaves the JSON of both configurations behind."""
    bench = bench_module()
    metrics = fake_metrics(1.5)
    monkeypatch.setattr(bench, "evaluate_cell", lambda *a, **k: SimpleNamespace(metrics=metrics))

    def hang(*args: Any, **kwargs: Any) -> None:
        raise TimeoutError("the training part did not return")

    monkeypatch.setattr(bench, "train_images_per_s", hang)
    out = tmp_path / "bench.json"
    with pytest.raises(TimeoutError):
        bench.main(["--quick", "--out", str(out)])
    saved = json.loads(out.read_text())
    configs = saved["configurations"]
    assert [r["run"] for r in configs["old"]["runs"]] == ["first", "later"]
    assert [r["run"] for r in configs["new"]["runs"]] == ["first", "later", "resumed"]
    assert configs["old"]["net_precision"] == "fp32" and configs["old"]["reference_cache"] is False
    assert configs["new"]["net_precision"] == "bf16" and configs["new"]["reference_cache"] is True
    assert configs["old"]["runs"][0]["stages_s"] == metrics["timing_s"] and saved["training"] == {"source": "pending"}
    assert saved["train_images_per_s"] == {} and "eval_share" not in saved


def test_eval_share_from_a_given_rate(tmp_path, monkeypatch):
    """The share of a run spent evaluating: every point at the later cost, or one first point and the rest later."""
    bench = bench_module()
    monkeypatch.setattr(bench, "evaluate_cell", lambda *a, **k: SimpleNamespace(metrics=fake_metrics(1.0)))
    out = tmp_path / "bench.json"
    result = bench.main(["--quick", "--out", str(out), "--train-images-per-s", "1000", "--images", "1e4",
                         "--eval-points", "4"])
    assert result["train_images_per_s"] == {"given": 1000.0}
    for name, conf in result["configurations"].items():
        by = {r["run"]: r["wall_s"] for r in conf["runs"]}
        share = result["eval_share"][name]["given"]
        assert share["train_s"] == pytest.approx(10.0)
        assert share["later"] == pytest.approx(4 * by["later"] / (10.0 + 4 * by["later"]))
        first = by["first"] + 3 * by["later"]
        assert share["with_first"] == pytest.approx(first / (10.0 + first))
        assert share["of_training"] == pytest.approx({"later": 4 * by["later"] / 10.0, "with_first": first / 10.0})
    assert json.loads(out.read_text())["eval_share"] == result["eval_share"]

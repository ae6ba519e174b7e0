"""Issue 11, phase 1: where a unet-64 training step's time goes, and how fast each way of running it is.

One call does everything, in order of priority, and skips what would overrun ``--budget-seconds``:

1. ceilings: bf16 matrix rate (8192^3 products on random data) and device-to-device copy bandwidth;
2. numerics: loss and gradient of every mode on one fixed batch against float64 (same weights, same batch);
3. the current Trainer (:class:`mogsim.training.Trainer`) in fp32, tf32 and bf16 with the previous UNet
   (``--baseline-unet``, the file of commit 06ac92b) and with the new one;
4. the prototype step (:mod:`fast_step`) in each mode: precision x channels_last x whole-step CUDA graph, plus two
   ablations (the previous autocast float32 group norm; a plain-operations group norm for NHWC input);
5. ``torch.profiler`` breakdowns of the previous bf16 step, the previous tf32 step and the fastest eager step;
6. graph replay against eager steps (same noise bitwise, same weights up to rounding);
7. loss curves on real CIFAR-10 images: fp32 against the fast mode (same seed) and the fast mode at another seed;
8. the fastest layout compiled (``torch.compile``, default mode) and captured whole;
9. several small models at once (unet-tiny, unet-vector): one at a time, graphs on streams, vmap-stacked members;
10. sizes: unet-64 at batch 512 and unet-128 at batch 128 in the fastest uncompiled mode;
11. the previous default (Trainer, previous UNet, bf16 + compile), if time is left.

Throughput is the median over repeated timings (CUDA events), images per second = batch / ms per step.
Results go to ``--out``/bench_speed.json (rewritten after every section) and a short table is printed last.

GPU::

    python benchmarks/bench_speed.py --out $OUT --baseline-unet .bench-data/unet_06ac92b.py \\
        --cifar .bench-data/cifar2048.npz

CPU smoke check (tiny network, no graphs or compilation; checks the script, measures nothing useful)::

    python benchmarks/bench_speed.py --cpu-smoke --out /tmp/bench_speed
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import datetime as _dt
import importlib.util
import math
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for path in (str(REPO), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)

import mogsim.nets.registry as registry  # noqa: E402
import mogsim.nets.unet as unet  # noqa: E402
from fast_step import FastStep, StepMode, graph_matches_eager, matmul_precision  # noqa: E402
from mogsim.io import write_json  # noqa: E402
from mogsim.nets import PreconditionedDenoiser, network_config  # noqa: E402
from mogsim.provenance import provenance  # noqa: E402
from mogsim.training import DistContext, RuntimeOptions, TrainConfig, Trainer, TrainStep  # noqa: E402
from mogsim.training.loop import float32_mode  # noqa: E402
from step_profile import category_table, profile_steps  # noqa: E402

#: EDM's own training loop, DDPM++ width 64, batch 128, on an H200 (issue 11; not measured here).
EDM_IMAGES_PER_S = {"fp32": 833.0, "fp16": 870.0}
#: Previous CUDA default of ``mogsim train`` (bf16 autocast + torch.compile), H200, from the issue.
ISSUE_PREVIOUS_DEFAULT = 1514.0
FLOP_PER_IMAGE = {"unet-64": 32.05e9, "unet-128": 127.13e9, "unet-tiny": 1.97e9, "unet-small": 10.50e9}


class Run:
    """Holds the results, the time budget and the output file."""

    def __init__(self, args: argparse.Namespace, device: torch.device) -> None:
        self.args, self.device = args, device
        self.started = time.perf_counter()
        self.result: dict[str, Any] = {
            "benchmark": "bench_speed", "issue": 11,
            "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "device": str(device), "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                                                  else "cpu"),
            "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "cpu_smoke": bool(args.cpu_smoke), "command": " ".join(sys.argv),
            "provenance": provenance(device), "sections": {}, "results": [],
        }
        self.out = Path(args.out) / "bench_speed.json"

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def left(self) -> float:
        return self.args.budget_seconds - self.elapsed()

    def selected(self, name: str) -> bool:
        """Whether ``--only`` (names; a trailing ``*`` makes a prefix) selects a section; all without ``--only``."""
        only = [o.strip() for o in (self.args.only or "").split(",") if o.strip()]
        return not only or any(name == o or (o.endswith("*") and name.startswith(o[:-1])) for o in only)

    def section(self, name: str, needs_seconds: float, fn: Callable[[], Any]) -> Any:
        """Run one section if ``needs_seconds`` are left; record its output, time or error; save the file."""
        if not self.selected(name):
            return None
        if self.left() < needs_seconds:
            self.result["sections"][name] = {"status": "skipped", "reason": f"{self.left():.0f} s left, needs "
                                                                            f"{needs_seconds:.0f} s"}
            print(f"[speed] {name}: skipped ({self.left():.0f} s left)", flush=True)
            self.save()
            return None
        t0 = time.perf_counter()
        print(f"[speed] {name} ... ({self.elapsed():.0f} s)", flush=True)
        try:
            value = fn()
            self.result["sections"][name] = {"status": "ok", "seconds": time.perf_counter() - t0, "value": value}
        except Exception as exc:  # noqa: BLE001 - record and go on
            value = None
            self.result["sections"][name] = {"status": "failed", "seconds": time.perf_counter() - t0,
                                             "error": f"{type(exc).__name__}: {exc}"[:800],
                                             "traceback": traceback.format_exc()[-3000:]}
            print(f"[speed] {name} FAILED: {type(exc).__name__}: {str(exc)[:300]}", flush=True)
        self.save()
        return value

    def save(self) -> None:
        self.result["total_seconds"] = self.elapsed()
        write_json(self.out, self.result)


# --- what is measured -------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step_fn: Callable[[int], None], device: torch.device, *, first_step: int, repeats: int,
               target_s: float) -> dict[str, Any]:
    """Median ms per step over ``repeats`` timings of n steps each (n sized from one timed step to ~target_s)."""
    _sync(device)
    t0 = time.perf_counter()
    step_fn(first_step)
    _sync(device)
    one = max(time.perf_counter() - t0, 1e-4)
    n = int(min(max(3, target_s / one), 200))
    k = first_step + 1
    per_step = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(n):
                step_fn(k)
                k += 1
            end.record()
            end.synchronize()
            per_step.append(start.elapsed_time(end) / n)
        else:
            t0 = time.perf_counter()
            for _ in range(n):
                step_fn(k)
                k += 1
            per_step.append(1000 * (time.perf_counter() - t0) / n)
    return {"ms_per_step": statistics.median(per_step), "ms_per_step_repeats": per_step, "steps_per_repeat": n,
            "next_step": k}


def _reset_peak(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def _row(arch: str, batch: int, mode: str, step: str, model: str, timing: dict[str, Any], device: torch.device,
         **extra: Any) -> dict[str, Any]:
    ms = timing["ms_per_step"]
    ips = 1000 * batch / ms
    row = {"arch": arch, "batch": batch, "mode": mode, "step": step, "model": model, "status": "ok",
           "images_per_s": ips, "ms_per_step": ms, "ms_per_step_repeats": timing["ms_per_step_repeats"],
           "steps_per_repeat": timing["steps_per_repeat"], "peak_memory_gib": _peak_gib(device), **extra}
    if arch in FLOP_PER_IMAGE:
        row["tflop_per_s"] = FLOP_PER_IMAGE[arch] * ips / 1e12
    if arch == "unet-64":
        row["vs_edm_fp32"] = ips / EDM_IMAGES_PER_S["fp32"]
        row["vs_edm_fp16"] = ips / EDM_IMAGES_PER_S["fp16"]
        row["vs_issue_previous_default"] = ips / ISSUE_PREVIOUS_DEFAULT
    return row


@contextlib.contextmanager
def unet_class(cls: type | None) -> Iterator[None]:
    """Build UNets from ``cls`` (the previous implementation) instead of the current one."""
    if cls is None:
        yield
        return
    saved = registry.UNet
    registry.UNet = cls
    try:
        yield
    finally:
        registry.UNet = saved


def _plain_ops_group_norm_nhwc(x: torch.Tensor, norm: torch.nn.GroupNorm) -> torch.Tensor:
    """Group norm of an NHWC-stored x computed in that layout with plain operations (float32 statistics), output
    NHWC in x's dtype: what torch's CUDA kernel (before 2.13) does not do; it copies to NCHW and returns NCHW.
    Measured and rejected on an H200 (BENCHMARKS.md): 1.9x slower than the native kernel with its copies."""
    b, c, h, w = x.shape
    xg = x.permute(0, 2, 3, 1).reshape(b, h * w, norm.num_groups, c // norm.num_groups)
    stat = xg if xg.dtype == torch.float64 else xg.float()
    var, mean = torch.var_mean(stat, dim=(1, 3), keepdim=True, correction=0)
    y = ((stat - mean) * torch.rsqrt(var + norm.eps)).reshape(b, h, w, c) * norm.weight + norm.bias
    return y.to(x.dtype).permute(0, 3, 1, 2)


_LIBRARY_NORM = unet._norm


def _norm_plain_ops_on_nhwc(norm: torch.nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    if x.is_cuda and unet._is_channels_last(x):
        return _plain_ops_group_norm_nhwc(x, norm)
    return _LIBRARY_NORM(norm, x)


ABLATIONS: dict[str, tuple[str, Callable[..., torch.Tensor]]] = {
    # name -> (attribute of mogsim.nets.unet replaced, replacement)
    "autocast-fp32-norm": ("_norm", lambda norm, x: norm(x)),  # the previous UNet's group norm
    "plain-ops-norm-on-nhwc": ("_norm", _norm_plain_ops_on_nhwc),
}


@contextlib.contextmanager
def ablation(name: str | None) -> Iterator[None]:
    if name is None:
        yield
        return
    attr, replacement = ABLATIONS[name]
    saved = getattr(unet, attr)
    setattr(unet, attr, replacement)
    try:
        yield
    finally:
        setattr(unet, attr, saved)


class Bench:
    """The sections, sharing one configuration (arch, shape, batch, data)."""

    def __init__(self, run: Run, old_unet: type | None) -> None:
        self.run, self.device, self.old_unet = run, run.device, old_unet
        a = run.args
        self.smoke = a.cpu_smoke
        self.shape = (3, 8, 8) if self.smoke else (3, 32, 32)
        self.overrides = ({"model_channels": 8, "channel_mult": (1, 2), "attn_resolutions": (4,), "num_blocks": 1}
                          if self.smoke else {})
        self.batch = 4 if self.smoke else a.batch
        self.repeats = 1 if self.smoke else a.repeats
        self.target_s = 0.0 if self.smoke else a.target_seconds
        g = torch.Generator().manual_seed(0)
        self.data = torch.randint(0, 256, (max(8 * self.batch, 1024), *self.shape), generator=g, dtype=torch.uint8)
        self.rows: list[dict[str, Any]] = run.result["results"]

    def config(self, arch: str = "unet-64", batch: int | None = None, seed: int = 0,
               shape: Sequence[int] | None = None, **overrides: Any) -> TrainConfig:
        shape = tuple(shape or self.shape)
        ov = {**(self.overrides if shape == self.shape else {}), **overrides}
        return TrainConfig(net=network_config(arch, shape, **ov), precond="vp", batch=batch or self.batch, seed=seed)

    # 1 ---------------------------------------------------------------------------------------------------------
    def ceilings(self) -> dict[str, Any]:
        dev = self.device
        if dev.type != "cuda":
            return {"note": "CPU: not measured"}
        n = 8192
        g = torch.Generator(device=dev).manual_seed(0)
        a = torch.randn(n, n, device=dev, generator=g, dtype=torch.bfloat16)
        b = torch.randn(n, n, device=dev, generator=g, dtype=torch.bfloat16)
        for _ in range(3):
            a @ b
        times = []
        for _ in range(10):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            a @ b
            e.record()
            e.synchronize()
            times.append(s.elapsed_time(e))
        bf16 = 2 * n**3 / (statistics.median(times) / 1000) / 1e12
        x = torch.randn(256 * 2**20, device=dev)  # 1 GiB
        y = torch.empty_like(x)
        y.copy_(x)
        times = []
        for _ in range(10):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            y.copy_(x)
            e.record()
            e.synchronize()
            times.append(s.elapsed_time(e))
        bw = 2 * x.numel() * 4 / (statistics.median(times) / 1000) / 1e12
        del a, b, x, y
        torch.cuda.empty_cache()
        return {"bf16_matmul_tflop_per_s": bf16, "copy_tb_per_s_read_plus_write": bw}

    def micro(self) -> dict[str, Any]:
        """The two kinds of work that dominate a step, alone: a 3x3 convolution of unet-64's 32x32 level (forward
        and backward) and group norm + SiLU (forward and backward), per precision and layout."""
        dev = self.device
        b = self.batch
        res = self.shape[1]
        c = 16 if self.smoke else 128
        out: dict[str, Any] = {"conv": {}, "norm_silu": {}, "shape": [b, c, res, res]}

        def timed(fn: Callable[[], None]) -> float:
            for _ in range(3):
                fn()
            _sync(dev)
            reps = 2 if self.smoke else 20
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            _sync(dev)
            return 1000 * (time.perf_counter() - t0) / reps

        conv_flop = 3 * 2 * b * c * res * res * c * 9  # forward, input gradient, weight gradient
        for precision, cl in (("fp32", False), ("tf32", False), ("bf16", False), ("bf16", True)):
            dtype = torch.bfloat16 if precision == "bf16" else torch.float32
            fmt = torch.channels_last if cl else torch.contiguous_format
            conv = torch.nn.Conv2d(c, c, 3, padding=1).to(dev, dtype).to(memory_format=fmt)
            x = torch.randn(b, c, res, res, device=dev, dtype=dtype).contiguous(memory_format=fmt).requires_grad_()
            gy = torch.randn(b, c, res, res, device=dev, dtype=dtype).contiguous(memory_format=fmt)

            def conv_step() -> None:
                conv(x).backward(gy)

            with matmul_precision(StepMode(precision), dev):
                ms = timed(conv_step)
            out["conv"][f"{precision}{'+cl' if cl else ''}"] = {"ms": ms, "tflop_per_s": conv_flop / ms / 1e9}
        norm = torch.nn.GroupNorm(32 if c >= 32 else 4, c, eps=1e-6).to(dev)
        variants = {
            "fp32 native": (torch.float32, False, None, False),
            "bf16 under autocast, previous (float32 norm)": (torch.bfloat16, False, "autocast-fp32-norm", True),
            "bf16 native in bf16 (new, NCHW)": (torch.bfloat16, False, None, True),
            "bf16 NHWC, torch native (copies to NCHW)": (torch.bfloat16, True, None, True),
            "bf16 NHWC, plain-ops path": (torch.bfloat16, True, "plain-ops-norm-on-nhwc", True),
        }
        elems = b * c * res * res
        for name, (dtype, cl, abl, autocast) in variants.items():
            if cl and dev.type != "cuda":
                continue
            fmt = torch.channels_last if cl else torch.contiguous_format
            x = torch.randn(b, c, res, res, device=dev, dtype=dtype).contiguous(memory_format=fmt).requires_grad_()
            gy = torch.randn(b, c, res, res, device=dev, dtype=dtype).contiguous(memory_format=fmt)

            def norm_step() -> None:
                ctx = torch.autocast(dev.type, dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
                with ctx:
                    y = unet._norm_silu(norm, x)
                y.backward(gy.to(y.dtype))

            with ablation(abl):
                ms = timed(norm_step)
            # the least traffic: read x, write y; read x and dy, write dx (each once)
            floor_bytes = 5 * elems * x.element_size()
            out["norm_silu"][name] = {"ms": ms, "effective_tb_per_s_at_floor_bytes": floor_bytes / ms / 1e9}
        return out

    # 2 ---------------------------------------------------------------------------------------------------------
    def numerics(self) -> dict[str, Any]:
        """Loss and gradient on one fixed batch, every mode and both UNets against float64 (same weights)."""
        dev = self.device
        cfg = self.config(batch=min(self.batch, 32))
        out: dict[str, Any] = {"batch": cfg.batch}
        fs = FastStep(cfg, self.data, StepMode("fp32"), dev)
        fs._prepare(0)
        y, sigma, noise = fs._batch()
        gen = torch.Generator(device=dev).manual_seed(1)
        with torch.no_grad():  # make the zero-initialised output layers matter: a net as after some training
            for p in fs.net.parameters():
                p.add_(torch.randn(p.shape, device=dev, generator=gen) * 0.02)
        state = {k: v.detach().clone() for k, v in fs.net.state_dict().items()}

        def loss_and_grad(net: torch.nn.Module, dtype: torch.dtype, precision: str, cl: bool
                          ) -> tuple[float, torch.Tensor]:
            net = net.to(dtype)
            yy, ss, nn_ = y.to(dtype), sigma.to(dtype), noise.to(dtype)
            if cl:
                net = net.to(memory_format=torch.channels_last)
                yy, nn_ = (t.contiguous(memory_format=torch.channels_last) for t in (yy, nn_))
            step = TrainStep(PreconditionedDenoiser(net, fs.step_module.denoiser.precond), fs.loss)
            mode = StepMode(precision)
            autocast = (torch.autocast(dev.type, dtype=torch.bfloat16) if precision == "bf16"
                        else contextlib.nullcontext())
            with matmul_precision(mode, dev), autocast:
                per_sample = step(yy, ss, nn_)
            loss = per_sample.mean() * fs.coords
            loss.backward()
            grad = torch.cat([p.grad.double().flatten() for p in net.parameters()])
            return float(loss.detach()), grad

        def build(cls: type | None) -> torch.nn.Module:
            with unet_class(cls):
                net = registry.build_from_config(cfg.net).to(dev)
            net.load_state_dict(state)
            return net

        ref_loss, ref_grad = loss_and_grad(build(None), torch.float64, "fp32", False)
        out["float64_loss"] = ref_loss
        cases = [("new", None, p, cl) for p, cl in (("fp32", False), ("tf32", False), ("bf16", False),
                                                     ("bf16", True), ("tf32", True))]
        if self.old_unet is not None:
            cases += [("previous", self.old_unet, p, cl) for p, cl in (("fp32", False), ("bf16", False),
                                                                       ("bf16", True))]
        for model, cls, precision, cl in cases:
            loss, grad = loss_and_grad(build(cls), torch.float32, precision, cl)
            name = f"{model} {precision}{'+cl' if cl else ''}"
            out[name] = {"loss_rel_err": abs(loss - ref_loss) / abs(ref_loss),
                         "grad_rel_err": float((grad - ref_grad).norm() / ref_grad.norm())}
        return out

    # 3 ---------------------------------------------------------------------------------------------------------
    def trainer_mode(self, precision: str, model: str, *, compile_: bool = False, arch: str = "unet-64",
                     batch: int | None = None) -> dict[str, Any]:
        """The current Trainer's step (what ``mogsim train`` runs today) in one mode."""
        dev = self.device
        cfg = dataclasses.replace(self.config(arch, batch), bf16=precision == "bf16", tf32=precision == "tf32")
        _reset_peak(dev)
        cls = self.old_unet if model == "previous" else None
        with unet_class(cls):
            trainer = Trainer(cfg, self.data, runtime=RuntimeOptions(compile=compile_, progress="none"),
                              ctx=DistContext(device=dev))
        with float32_mode(dev, cfg.tf32):
            t0 = time.perf_counter()
            for k in range(3):
                trainer.train_step(k)
            _sync(dev)
            warm = time.perf_counter() - t0
            timing = time_steps(lambda k: trainer.train_step(k), dev, first_step=3, repeats=self.repeats,
                                target_s=self.target_s)
        mode = precision + ("+compile" if compile_ else "")
        row = _row(arch, cfg.batch, mode, "Trainer", model, timing, dev, warmup_s=warm)
        self.rows.append(row)
        print(f"[speed]   Trainer {model:8s} {mode:14s} {row['images_per_s']:8,.0f} img/s", flush=True)
        return row

    # 4 ---------------------------------------------------------------------------------------------------------
    def fast_mode(self, mode_name: str, *, arch: str = "unet-64", batch: int | None = None,
                  ablation_name: str | None = None) -> dict[str, Any]:
        dev = self.device
        mode = StepMode.parse(mode_name)
        cfg = self.config(arch, batch)
        _reset_peak(dev)
        with ablation(ablation_name), matmul_precision(mode, dev):
            t0 = time.perf_counter()
            fs = FastStep(cfg, self.data, mode, dev)
            build = time.perf_counter() - t0
            if not (mode.graph or mode.compile):
                for k in range(3):
                    fs.step(k)
                _sync(dev)
            warm = time.perf_counter() - t0
            timing = time_steps(fs.step, dev, first_step=3, repeats=self.repeats, target_s=self.target_s)
        name = mode_name + (f" [{ablation_name}]" if ablation_name else "")
        row = _row(arch, cfg.batch, name, "FastStep", "new", timing, dev, warmup_s=warm, build_s=build,
                   compile=mode.compile, graph=mode.graph, channels_last=mode.channels_last,
                   precision=mode.precision, ablation=ablation_name,
                   last_loss=float(fs.last_loss[0]))
        self.rows.append(row)
        print(f"[speed]   FastStep {arch} b{cfg.batch} {name:36s} {row['images_per_s']:8,.0f} img/s "
              f"(warm-up {warm:.1f} s)", flush=True)
        return row

    # 5 ---------------------------------------------------------------------------------------------------------
    def profile_trainer(self, precision: str, model: str) -> dict[str, Any]:
        dev = self.device
        cfg = dataclasses.replace(self.config(), bf16=precision == "bf16", tf32=precision == "tf32")
        with unet_class(self.old_unet if model == "previous" else None):
            trainer = Trainer(cfg, self.data, runtime=RuntimeOptions(progress="none"), ctx=DistContext(device=dev))
        with float32_mode(dev, cfg.tf32):
            for k in range(3):
                trainer.train_step(k)
            result = profile_steps(lambda k: trainer.train_step(k), 3, 3, dev)
        return self._finish_profile(result, "unet-64", cfg.batch, f"Trainer {model} {precision}")

    def profile_fast(self, mode_name: str) -> dict[str, Any]:
        dev = self.device
        mode = StepMode.parse(mode_name)
        cfg = self.config()
        with matmul_precision(mode, dev):
            fs = FastStep(cfg, self.data, mode, dev)
            for k in range(3):
                fs.step(k)
            result = profile_steps(fs.step, 3, 3, dev)
        return self._finish_profile(result, "unet-64", cfg.batch, f"FastStep {mode_name}")

    def _finish_profile(self, result: dict[str, Any], arch: str, batch: int, label: str) -> dict[str, Any]:
        rate = (self.run.result["sections"].get("ceilings", {}).get("value") or {}).get("bf16_matmul_tflop_per_s")
        flop = FLOP_PER_IMAGE.get(arch, math.nan) * batch
        result["label"] = label
        result["tflop_per_s"] = flop / (result["wall_ms"] / 1000) / 1e12
        if rate:
            result["mfu_vs_measured_bf16"] = result["tflop_per_s"] / rate
        result["table"] = category_table(result)
        print(f"[speed]   profile {label}: wall {result['wall_ms']:.1f} ms, busy {result['gpu_busy_ms']:.1f} ms",
              flush=True)
        print(result["table"], flush=True)
        return result

    # 6 ---------------------------------------------------------------------------------------------------------
    def graph_check(self) -> dict[str, Any]:
        dev = self.device
        cfg = self.config("unet-small", shape=self.shape, **({"num_blocks": 1} if self.smoke else {}))
        mode = StepMode("bf16", channels_last=True)

        def make(graph: bool) -> FastStep:
            return FastStep(cfg, self.data, StepMode(mode.precision, mode.channels_last, False, graph), self.device)

        with matmul_precision(mode, dev):
            return graph_matches_eager(make, steps=4)

    # 7: compile is fast_mode with "+compile"; 8: sizes are fast_mode with arch/batch ------------------------------

    # 9 ---------------------------------------------------------------------------------------------------------
    def members(self, arch: str, members: int, precision: str, batch: int) -> dict[str, Any]:
        """Aggregate images/s of M small models: one at a time (eager, graph), graphs on M streams, stacked
        (vmap) eager and as one graph."""
        dev = self.device
        vector = arch == "unet-vector"
        shape = (48,) if vector else self.shape
        g = torch.Generator().manual_seed(0)
        if vector:
            data = torch.randn(members, 2048, 48, generator=g)
        else:
            data = torch.randint(0, 256, (members, 1024, *shape), generator=g, dtype=torch.uint8)
        smoke_ov = {"model_channels": 8, "num_blocks": 1} if self.smoke else {}
        if not vector and self.smoke:
            smoke_ov = {**self.overrides}
        cfg = TrainConfig(net=network_config(arch, shape, **smoke_ov), precond="vp", batch=batch)
        out: dict[str, Any] = {"arch": arch, "members": members, "precision": precision, "batch": batch}
        cuda = dev.type == "cuda"

        def record(kind: str, ms: float, models: int, extra: dict[str, Any] | None = None) -> None:
            ips = 1000 * batch * models / ms
            out[kind] = {"ms_per_step": ms, "models": models, "aggregate_images_per_s": ips, **(extra or {})}
            self.rows.append({"arch": arch, "batch": batch, "mode": f"{precision} {kind}", "step": "members",
                              "model": "new", "status": "ok", "members": models, "images_per_s": ips,
                              "ms_per_step": ms, "peak_memory_gib": _peak_gib(dev)})
            print(f"[speed]   members {arch} {kind:22s} M={models:2d} {ips:10,.0f} img/s", flush=True)

        mode_eager, mode_graph = StepMode(precision), StepMode(precision, graph=cuda)
        repeats, target_s = min(self.repeats, 3), self.target_s * 0.6

        def attempt(kind: str, fn: Callable[[], None]) -> None:
            _reset_peak(dev)
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - one failing way must not hide the others
                out[kind] = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:500]}
                print(f"[speed]   members {arch} {kind}: FAILED {type(exc).__name__}: {str(exc)[:200]}", flush=True)

        def one_at_a_time(graph: bool) -> None:
            single = FastStep(cfg, data[0], mode_graph if graph else mode_eager, dev)
            t = time_steps(single.step, dev, first_step=3, repeats=repeats, target_s=target_s)
            # one model at a time: M runs of the same cost, back to back
            record("one at a time" + (" (graph)" if graph else ""), t["ms_per_step"] * members, members,
                   {"single_ms_per_step": t["ms_per_step"]})

        def on_streams() -> None:
            steps = [FastStep(dataclasses.replace(cfg, seed=m), data[m], mode_graph, dev) for m in range(members)]
            streams = [torch.cuda.Stream() for _ in steps]

            def step_all(k: int) -> None:
                current = torch.cuda.current_stream()
                for s in streams:
                    s.wait_stream(current)
                for fs, s in zip(steps, streams):
                    with torch.cuda.stream(s):
                        fs.step(k)
                for s in streams:
                    current.wait_stream(s)

            t = time_steps(step_all, dev, first_step=3, repeats=repeats, target_s=target_s)
            record("graphs on streams", t["ms_per_step"], members)

        def stacked(graph: bool) -> None:
            fs = FastStep(cfg, data, mode_graph if graph else mode_eager, dev, members=members)
            t = time_steps(fs.step, dev, first_step=3, repeats=repeats, target_s=target_s)
            record("vmap stacked" + (" (graph)" if graph else ""), t["ms_per_step"], members)

        def same_as_alone() -> None:
            # the stacked step trains each member as its own single model would (same init, data, noise)
            check = FastStep(cfg, data, mode_eager, dev, members=members)
            alone = [FastStep(dataclasses.replace(cfg, seed=m), data[m], mode_eager, dev)
                     for m in range(min(members, 2))]
            for k in range(3):
                check.step(k)
                for fs in alone:
                    fs.step(k)
            out["stacked_vs_single_loss_rel_diff"] = max(
                abs(float(check.last_loss[m]) - float(fs.last_loss[0])) / abs(float(fs.last_loss[0]))
                for m, fs in enumerate(alone))

        with matmul_precision(mode_eager, dev):
            graphs = (False, True) if cuda else (False,)
            for graph in graphs:
                attempt(f"one at a time{' (graph)' if graph else ''}", lambda g=graph: one_at_a_time(g))
            if cuda:
                attempt("graphs on streams", on_streams)
            for graph in graphs:
                attempt(f"vmap stacked{' (graph)' if graph else ''}", lambda g=graph: stacked(g))
            attempt("same as alone", same_as_alone)
        return out

    # 10 --------------------------------------------------------------------------------------------------------
    def loss_curves(self, modes: Sequence[tuple[str, int]], steps: int) -> dict[str, Any]:
        """Per-step training loss on real CIFAR-10 images: the same seed gives the same batches and noise, so
        fp32 and a fast mode see identical inputs; a second seed shows the seed-to-seed spread."""
        dev = self.device
        path = self.run.args.cifar
        if path is not None and Path(path).exists():
            images = torch.from_numpy(np.load(path)["images"])
        else:
            images = self.data
        if self.smoke:
            images = torch.nn.functional.interpolate(images[:64].float(), size=self.shape[1:]).to(torch.uint8)
        out: dict[str, Any] = {"steps": steps, "images": int(images.shape[0]), "data": str(path), "curves": {}}
        out["lr_warmup_images"] = 50 * self.batch  # full learning rate from step 50: a harder test than the default
        for mode_name, seed in modes:
            mode = StepMode.parse(mode_name)
            cfg = dataclasses.replace(self.config(seed=seed), lr_warmup_images=out["lr_warmup_images"])
            with matmul_precision(mode, dev):
                fs = FastStep(cfg, images, mode, dev)
                hist = torch.zeros(steps, device=dev)
                t0 = time.perf_counter()
                for k in range(steps):
                    fs.step(k)
                    hist[k].copy_(fs.last_loss[0])
                _sync(dev)
            out["curves"][f"{mode_name} seed {seed}"] = {"loss": hist.tolist(), "seconds": time.perf_counter() - t0}
            print(f"[speed]   loss curve {mode_name} seed {seed}: last-50 mean "
                  f"{float(hist[-50:].mean()):.4f}", flush=True)
        return out


def summarize_curves(curves: dict[str, Any], reference: str, fast: str, other_seed: str) -> dict[str, Any]:
    """Window means and per-step differences: fast vs fp32 (same seed) against fast vs another seed."""
    ref, fst, oth = (np.asarray(curves[k]["loss"]) for k in (reference, fast, other_seed))
    w = max(len(ref) // 4, 1)
    return {
        "window": w, "reference_last_mean": float(ref[-w:].mean()), "fast_last_mean": float(fst[-w:].mean()),
        "other_seed_last_mean": float(oth[-w:].mean()),
        "fast_vs_reference_last_mean_rel": float(abs(fst[-w:].mean() - ref[-w:].mean()) / ref[-w:].mean()),
        "seed_spread_last_mean_rel": float(abs(oth[-w:].mean() - fst[-w:].mean()) / fst[-w:].mean()),
        "fast_vs_reference_per_step_median_rel": float(np.median(np.abs(fst - ref) / ref)),
        "other_seed_vs_fast_per_step_median_rel": float(np.median(np.abs(oth - fst) / fst)),
    }


def load_old_unet(path: str | None) -> type | None:
    if not path:
        return None
    spec = importlib.util.spec_from_file_location("mogsim.nets._unet_previous", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module.UNet


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="Folder for bench_speed.json.")
    p.add_argument("--baseline-unet", default=None, help="The previous unet.py (commit 06ac92b), for comparison.")
    p.add_argument("--cifar", default=None, help=".npz with uint8 'images' (N, 3, 32, 32) for the loss curves.")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5, help="Timings per configuration (the median is reported).")
    p.add_argument("--target-seconds", type=float, default=0.4, help="Length of one timing.")
    p.add_argument("--curve-steps", type=int, default=200)
    p.add_argument("--budget-seconds", type=float, default=370.0)
    p.add_argument("--only", default=None, help="Comma-separated section names to run (a trailing * matches a "
                   "prefix), e.g. 'ceilings,fast bf16+graph,profile fast*'.")
    p.add_argument("--cpu-smoke", action="store_true", help="Tiny network on the CPU: checks the script only.")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = torch.device("cpu" if args.cpu_smoke or not torch.cuda.is_available() else "cuda")
    run = Run(args, device)
    b = Bench(run, load_old_unet(args.baseline_unet))
    cuda = device.type == "cuda"
    g = "+graph" if cuda else ""
    has_old = b.old_unet is not None
    sec = run.section

    sec("ceilings", 5, b.ceilings)
    sec("micro", 10, b.micro)
    sec("numerics", 10, b.numerics)
    for precision in ("fp32", "tf32", "bf16"):
        if has_old:
            sec(f"trainer previous {precision}", 15, lambda p=precision: b.trainer_mode(p, "previous"))
    sec("trainer new bf16", 12, lambda: b.trainer_mode("bf16", "new"))
    eager = ["bf16", "bf16+cl"]
    for name in eager:
        sec(f"fast {name}", 10, lambda n=name: b.fast_mode(n))
    if cuda:
        sec("fast bf16+cl [plain-ops-norm-on-nhwc]", 10,
            lambda: b.fast_mode("bf16+cl", ablation_name="plain-ops-norm-on-nhwc"))
    graph_modes = [f"bf16{g}", f"bf16+cl{g}", f"tf32+cl{g}", f"fp32{g}", f"tf32{g}"] if cuda else []
    for name in graph_modes:
        sec(f"fast {name}", 12, lambda n=name: b.fast_mode(n))
    if cuda:
        sec("fast bf16+graph [autocast-fp32-norm]", 12,
            lambda: b.fast_mode("bf16+graph", ablation_name="autocast-fp32-norm"))
    # the fastest eager/graph bf16 layout decides what is compiled and profiled
    fast_rows = [r for r in run.result["results"] if r.get("step") == "FastStep" and r.get("ablation") is None
                 and r.get("precision") == "bf16" and r["arch"] == "unet-64"]
    best = max(fast_rows, key=lambda r: r["images_per_s"])["mode"] if fast_rows else "bf16"
    best_eager = "bf16+cl" if "+cl" in best else "bf16"
    if has_old:
        sec("profile Trainer previous bf16", 15, lambda: b.profile_trainer("bf16", "previous"))
        sec("profile Trainer previous tf32", 15, lambda: b.profile_trainer("tf32", "previous"))
    sec(f"profile fast {best_eager}", 12, lambda: b.profile_fast(best_eager))
    if best != best_eager:
        sec(f"profile fast {best}", 12, lambda: b.profile_fast(best))
    if cuda:
        sec("graph vs eager", 15, b.graph_check)
    curve_modes = [("fp32" + g, 0), (best, 0), (best, 1)]
    sec("loss curves", 45 if cuda else 5, lambda: b.loss_curves(curve_modes, 10 if b.smoke else args.curve_steps))
    curves = (run.result["sections"].get("loss curves", {}) or {}).get("value")
    if curves:
        try:
            curves["summary"] = summarize_curves(curves["curves"], f"fp32{g} seed 0", f"{best} seed 0",
                                                 f"{best} seed 1")
        except Exception as exc:  # noqa: BLE001
            curves["summary"] = {"error": str(exc)}
    if cuda:  # the fastest layout, compiled and captured (compilation takes a minute or two)
        compiled = best.replace("+graph", "") + "+compile+graph"
        sec(f"fast {compiled}", 100, lambda: b.fast_mode(compiled))
    sec("members unet-tiny", 20, lambda: b.members("unet-tiny", 2 if b.smoke else 8, "bf16", b.batch))
    sec("members unet-vector", 20, lambda: b.members("unet-vector", 2 if b.smoke else 16, "fp32",
                                                     8 if b.smoke else 256))
    sec("sizes unet-64 b512", 12, lambda: b.fast_mode(best, batch=512 if cuda else 8))
    sec("sizes unet-128 b128", 12, lambda: b.fast_mode(best, arch="unet-128"))
    if cuda:
        if has_old:
            sec("trainer previous bf16+compile (previous default)", 110,
                lambda: b.trainer_mode("bf16", "previous", compile_=True))

    # the default: the fastest FastStep mode for unet-64 at batch 128
    rows = run.result["results"]
    cands = [r for r in rows if r.get("step") == "FastStep" and r["arch"] == "unet-64" and r["batch"] == b.batch
             and r.get("ablation") is None and r.get("status") == "ok"]
    if cands:
        default = max(cands, key=lambda r: r["images_per_s"])["mode"]
        run.result["default_mode"] = default
        for r in rows:
            r["default"] = r.get("step") == "FastStep" and r["mode"] == default and r.get("ablation") is None
    run.save()
    print_table(rows)
    print(f"[speed] wrote {run.out} ({run.elapsed():.0f} s)")
    return run.result


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    print("| arch | batch | step | model | mode | images/s | ms/step | peak GiB | vs EDM fp32 |")
    print("|---|---:|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        mem = f"{r['peak_memory_gib']:.1f}" if r.get("peak_memory_gib") is not None else "-"
        edm = f"{r['vs_edm_fp32']:.2f}x" if "vs_edm_fp32" in r else "-"
        star = " *" if r.get("default") else ""
        print(f"| {r['arch']} | {r['batch']} | {r['step']} | {r['model']} | {r['mode']}{star} | "
              f"{r['images_per_s']:,.0f} | {r['ms_per_step']:.2f} | {mem} | {edm} |")


if __name__ == "__main__":
    main()

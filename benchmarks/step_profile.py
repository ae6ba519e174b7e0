"""Where a training step's time goes: a ``torch.profiler`` breakdown of GPU kernel time by category.

:func:`profile_steps` runs a few steps under the profiler and returns, per step: wall time, GPU busy time (the
union of kernel intervals; wall minus busy is launch gaps and host work the GPU waits for), kernel time per
category (:data:`CATEGORIES`, first matching rule wins), the top kernels, the top operators by self device time,
and the host synchronisations (CUDA runtime calls that block the host).
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from typing import Any, Callable

import torch
from torch.profiler import ProfilerActivity, profile

#: (category, regular expression on the kernel name), tried in order.
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("layout transposes", r"nchwToNhwc|nhwcToNchw|transpose|permute"),
    ("attention", r"flash|fmha|attention|softmax"),
    ("optimizer (Adam)", r"[Aa]dam"),
    ("gradient norm", r"LpNorm|lpnorm|foreach_norm"),
    ("EMA (foreach lerp / sub, mul, add)", r"[Ll]erp|multi_tensor_apply"),
    ("normalisation", r"[Gg]roup_?[Nn]orm|RowwiseMoments|ComputeFusedParams|ComputeInternalGradients|GammaBeta|"
                      r"Compute1dBackward|ComputeBackwardFused|welford|Welford|var_mean|native_group_norm"),
    ("convolution", r"conv|fprop|dgrad|wgrad|implicit_gemm|cudnn|xmma_(?!gemm)|cutlass.*(conv|implicit)"),
    ("matmul (linear)", r"gemm|Gemm|cutlass|cublas"),
    ("RNG (noise)", r"philox|distribution|normal_|uniform_|randn|curand"),
    ("data / indexing", r"index|gather|scatter"),
    ("copies / casts / cat", r"copy|Copy|CatArray|cat_|_to_copy|memcpy|Memcpy|memset|Memset|[Ff]ill"),
    ("reductions", r"reduce_kernel|Reduce|reduction|triton_red|triton_per"),
    ("elementwise", r"elementwise|Elementwise|triton_poi|pointwise|silu|add|mul"),
)


def categorize(kernel_name: str) -> str:
    """The category of a kernel (``other`` when no rule matches)."""
    for category, pattern in CATEGORIES:
        if re.search(pattern, kernel_name):
            return category
    return "other"


def _union_length(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for lo, hi in sorted(intervals):
        if hi <= end:
            continue
        total += hi - max(lo, end)
        end = hi
    return total


def profile_steps(step_fn: Callable[[int], None], first_step: int, steps: int, device: torch.device,
                  *, top: int = 25) -> dict[str, Any]:
    """Profile ``steps`` calls ``step_fn(first_step + k)`` (warm up before calling this). Times in ms per step."""
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    if cuda:
        torch.cuda.synchronize(device)
    with profile(activities=activities) as prof:
        t0 = time.perf_counter()
        for k in range(steps):
            step_fn(first_step + k)
        if cuda:
            torch.cuda.synchronize(device)
        wall_ms = 1000 * (time.perf_counter() - t0) / steps
    kernels: list[tuple[str, float, float]] = []
    syncs: dict[str, int] = defaultdict(int)
    launches = 0
    for ev in prof.events():
        is_device = ev.device_type == torch.autograd.DeviceType.CUDA
        if is_device:
            kernels.append((ev.name, ev.time_range.start, ev.time_range.end))
        else:
            if ev.name in ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx",
                           "cudaGraphLaunch"):
                launches += 1
            for call in ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize"):
                if ev.name == call:
                    syncs[call] += 1
            if ev.name == "cudaMemcpy":
                syncs["cudaMemcpy (blocking)"] += 1
    by_cat: dict[str, float] = defaultdict(float)
    by_kernel: dict[str, float] = defaultdict(float)
    for name, lo, hi in kernels:
        by_cat[categorize(name)] += (hi - lo) / 1000
        by_kernel[name] += (hi - lo) / 1000
    busy_ms = _union_length([(lo, hi) for _, lo, hi in kernels]) / 1000 / steps
    kernel_ms = sum(by_cat.values()) / steps
    ops = []
    for avg in prof.key_averages():
        dev_us = getattr(avg, "self_device_time_total", None)
        if dev_us is None:
            dev_us = getattr(avg, "self_cuda_time_total", 0.0)
        ops.append((avg.key, dev_us / 1000 / steps, avg.count // steps))
    ops.sort(key=lambda r: -r[1])
    return {
        "steps": steps, "wall_ms": wall_ms, "gpu_busy_ms": busy_ms, "kernel_ms": kernel_ms,
        "idle_ms": max(wall_ms - busy_ms, 0.0) if cuda else None,
        "kernels_per_step": len(kernels) / steps, "launch_calls_per_step": launches / steps,
        "host_syncs_per_step": {k: v / steps for k, v in syncs.items()},
        "categories_ms": {k: v / steps for k, v in sorted(by_cat.items(), key=lambda kv: -kv[1])},
        "top_kernels_ms": [(n[:160], t / steps, categorize(n)) for n, t in
                           sorted(by_kernel.items(), key=lambda kv: -kv[1])[:top]],
        "top_ops_self_device_ms": [(k, t, c) for k, t, c in ops[:top] if t > 0],
    }


def category_table(result: dict[str, Any]) -> str:
    """A markdown table: category, ms per step, share of kernel time."""
    total = result["kernel_ms"] or 1.0
    lines = ["| category | ms / step | share of kernel time |", "|---|---:|---:|"]
    for cat, ms in result["categories_ms"].items():
        lines.append(f"| {cat} | {ms:.2f} | {100 * ms / total:.1f}% |")
    lines.append(f"| **all kernels** | {result['kernel_ms']:.2f} | 100% |")
    if result.get("idle_ms") is not None:
        lines.append(f"| GPU idle (wall {result['wall_ms']:.2f} ms - busy {result['gpu_busy_ms']:.2f} ms) | "
                     f"{result['idle_ms']:.2f} | |")
    return "\n".join(lines)

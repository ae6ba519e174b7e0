"""Throughput and accuracy of EmpiricalDenoiser on CIFAR-10 (N = 50,000, d = 3,072) against a naive baseline.

Methods, each timed on the same queries (training images plus noise of level sigma), with CUDA events after a
warm-up, median of several repeats:

* ``mogsim-f64``: ``EmpiricalDenoiser`` on float64 queries (exact mode);
* ``mogsim-f32``: float32 queries, float32 arithmetic (TF32 off);
* ``mogsim-f32in-f64``: float32 queries computed in float64 (``compute_dtype=torch.float64``);
* ``naive-f32`` / ``naive-f64``: ``torch.cdist -> softmax(-d^2 / 2 sigma^2) -> matmul`` over the whole set at once.

Accuracy: max relative error ``||D - D_ref|| / ||D_ref||`` over a subset of the queries, where ``D_ref`` is a
brute-force float64 posterior mean from explicit differences (no matrix-product expansion), computed here.

Usage (GPU)::

    python benchmarks/bench_empirical.py --data PATH/TO/cifar10-jpeg/train.zip --out bench_empirical.json

``--quick`` runs a small random problem on the CPU as a smoke test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

from mogsim import EmpiricalDenoiser
from mogsim.provenance import provenance


def naive(data: torch.Tensor, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """The common one-liner: all distances at once, softmax, weighted sum (no chunking, no per-query care)."""
    dist2 = torch.cdist(x, data) ** 2
    return torch.softmax(-dist2 / (2 * sigma**2), dim=1) @ data


def brute_force(data64: torch.Tensor, x64: torch.Tensor, sigma: float, block: int = 2048) -> torch.Tensor:
    """float64 posterior mean from explicit differences, streamed over the data with a per-query online softmax."""
    out = []
    for q in x64:
        logits = torch.cat([-((q - data64[j:j + block]) ** 2).sum(1) / (2 * sigma**2)
                            for j in range(0, data64.shape[0], block)])
        out.append(torch.softmax(logits, 0) @ data64)
    return torch.stack(out)


def timed(fn: Callable[[], torch.Tensor], device: torch.device, repeats: int) -> tuple[float, torch.Tensor]:
    """Median seconds of ``fn`` after one warm-up call."""
    result = fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            result = fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def load_data(path: str | None, quick: bool) -> torch.Tensor:
    if quick or path is None:
        return torch.rand(2000, 3 * 32 * 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    from mogsim.data import images_to_tensor, load_cifar10

    images, _ = load_cifar10(path, split="train")
    return images_to_tensor(images).reshape(images.shape[0], -1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="CIFAR-10 train set in any format mogsim.data.load_cifar10 reads")
    parser.add_argument("--out", default="bench_empirical.json")
    parser.add_argument("--batch", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.002, 0.1, 1.0, 10.0, 80.0])
    parser.add_argument("--check", type=int, default=32, help="queries checked against the brute force")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small random problem on the CPU")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() and not args.quick else "cpu")
    t0 = time.perf_counter()
    data32 = load_data(args.data, args.quick).to(device)
    load_s = time.perf_counter() - t0
    data64 = data32.double()
    n, d = data32.shape
    batches = [min(b, 64) for b in args.batch] if args.quick else args.batch
    sigmas = args.sigmas[:2] if args.quick else args.sigmas
    den = EmpiricalDenoiser(data32)
    gen = torch.Generator().manual_seed(1)

    rows = []
    for sigma in sigmas:
        for batch in batches:
            idx = torch.randint(0, n, (batch,), generator=gen)
            x32 = (data32[idx.to(device)] + sigma * torch.randn(batch, d, generator=gen).to(device)).contiguous()
            x64 = x32.double()
            ref = brute_force(data64, x64[: args.check], sigma)
            methods: dict[str, Callable[[], torch.Tensor]] = {
                "mogsim-f64": lambda: den(x64, sigma),
                "mogsim-f32": lambda: den(x32, sigma),
                "mogsim-f32in-f64": lambda: EmpiricalDenoiser(data32, compute_dtype=torch.float64)(x32, sigma),
                "naive-f32": lambda: naive(data32, x32, sigma),
                "naive-f64": lambda: naive(data64, x64, sigma),
            }
            if "mogsim-f32in-f64" in methods:  # share one instance so its float64 data copy is cached
                den64 = EmpiricalDenoiser(data32, compute_dtype=torch.float64)
                methods["mogsim-f32in-f64"] = lambda: den64(x32, sigma)
            for name, fn in methods.items():
                try:
                    secs, out = timed(fn, device, args.repeats)
                except torch.OutOfMemoryError:
                    rows.append({"method": name, "sigma": sigma, "batch": batch, "error": "out of memory"})
                    torch.cuda.empty_cache()
                    continue
                diff = (out[: args.check].double() - ref).norm(dim=1) / ref.norm(dim=1)
                finite = bool(torch.isfinite(out).all())
                rows.append({"method": name, "sigma": sigma, "batch": batch, "seconds": secs,
                             "queries_per_s": batch / secs, "max_rel_err": float(diff.max()) if finite else None,
                             "finite": finite,
                             "refined_pairs": den.last_refined_pairs if name == "mogsim-f32" else None})
                print(f"sigma={sigma:<6g} B={batch:<5d} {name:<17s} {batch / secs:12.0f} q/s  "
                      f"err={rows[-1]['max_rel_err']}", flush=True)
            del x32, x64, ref
    result = {"benchmark": "empirical_denoiser", "date": dt.date.today().isoformat(), "N": n, "d": d,
              "data": args.data or "random", "data_load_seconds": load_s, "rows": rows,
              "provenance": provenance(device)}
    Path(args.out).write_text(json.dumps(result, indent=2))

    print("\n| sigma | batch | method | queries/s | max rel. err vs float64 brute force |")
    print("|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['sigma']:g} | {r['batch']} | {r['method']} | {r['error']} | |")
        else:
            err = "non-finite" if r["max_rel_err"] is None else f"{r['max_rel_err']:.1e}"
            print(f"| {r['sigma']:g} | {r['batch']} | {r['method']} | {r['queries_per_s']:,.0f} | {err} |")


if __name__ == "__main__":
    main()

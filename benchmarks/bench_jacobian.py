"""Cost of the Jacobian ranks of a CIFAR-10 UNet along one sampler trajectory (``mogsim jacobian-rank``, paper 2,
Fig. 3): per sample, the deterministic EDM sampler (Heun, 18 levels: 35 net calls) and the numerical rank of the
full 3,072 x 3,072 Jacobian at each of the 18 levels (18 x 3,072 forward-mode JVPs and 18 symmetric eigensolves in
float64). Target: under 30 s per sample on an H200.

The net is an untrained DDPM++ UNet (``--arch``, default unet-64, VP preconditioning; the cost does not depend on
the weights) unless ``--run`` names a ``mogsim train`` run folder. A warm-up sample over the first
``--warmup-levels`` levels runs first (cuDNN autotuning and forward-AD set-up see the same shapes at every level);
then ``--samples`` samples are timed one by one (CUDA synchronised), each through
:func:`mogsim.metrics.jacobian.iter_trajectory_ranks` exactly as the command runs it, until ``--budget-s`` seconds
would be exceeded (at least one is timed). The JSON is rewritten after every sample, so a run stopped from outside
keeps what it measured. Reported: the median seconds per sample, each sample's split into sampling and Jacobians, and
JVPs per second. TF32 is off unless ``--tf32`` (as in ``mogsim jacobian-rank``); ``--bf16`` runs the net under
bfloat16 autocast (faster, less exact).

Usage (GPU)::

    python benchmarks/bench_jacobian.py --out $OUT/bench_jacobian.json
    python benchmarks/bench_jacobian.py --max-batch 2048 --bf16 --out $OUT/bench_jacobian_bf16.json

``--quick`` runs unet-tiny on 3x8x8 images (n = 192) at 3 levels on the CPU as a smoke test (about a minute on a busy
2-core machine, most of it torch's one-time forward-AD set-up in the warm-up).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable from a checkout without installing
    sys.path.insert(0, str(REPO))

from mogsim.devices import float32_precision, resolve_device  # noqa: E402
from mogsim.io import write_json  # noqa: E402
from mogsim.metrics.jacobian import iter_trajectory_ranks  # noqa: E402
from mogsim.nets import PreconditionedDenoiser, build_network  # noqa: E402
from mogsim.provenance import provenance  # noqa: E402
from mogsim.sampling import edm_sigmas, noise_for_seeds, sample  # noqa: E402
from mogsim.training import load_trained_denoiser, make_precond  # noqa: E402


def build_net(args: argparse.Namespace, device: torch.device) -> PreconditionedDenoiser:
    autocast = torch.bfloat16 if args.bf16 else None
    if args.run:
        return load_trained_denoiser(args.run, device=device, autocast_dtype=autocast)
    torch.manual_seed(0)
    net = build_network(args.arch, args.shape)
    return PreconditionedDenoiser(net, make_precond("vp"), autocast_dtype=autocast).to(device).eval()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def one_sample(den: PreconditionedDenoiser, seed: int, args: argparse.Namespace, device: torch.device,
               num_levels: int | None = None) -> dict[str, Any]:
    """Seconds for one sample's trajectory and its ranks at the first ``num_levels`` of the ``args.levels`` EDM
    levels (all by default), and the sampling alone, timed separately."""
    noise = noise_for_seeds([seed], args.shape, device=device)
    count = args.levels if num_levels is None else num_levels
    levels = edm_sigmas(args.levels)[:count + 1]  # the evaluated levels and the next one as the end
    _sync(device)
    t0 = time.perf_counter()
    sample(den, noise, levels, "heun")
    _sync(device)
    sampling = time.perf_counter() - t0
    t0 = time.perf_counter()
    ranks = [int(r[0]) for _, _, r in iter_trajectory_ranks(den, noise, levels, max_batch=args.max_batch)]
    _sync(device)
    total = time.perf_counter() - t0  # sampling again, then the Jacobians: what the command spends per sample
    return {"seed": seed, "seconds": total, "sampling_s": sampling, "jacobians_s": total - sampling, "ranks": ranks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="unet-64")
    parser.add_argument("--run", help="a mogsim train run folder: its EMA net instead of an untrained one")
    parser.add_argument("--samples", type=int, default=3, help="timed samples (after one warm-up sample)")
    parser.add_argument("--warmup-levels", type=int, default=2, help="levels of the warm-up sample")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="time no further sample once this many seconds would be exceeded")
    parser.add_argument("--levels", type=int, default=18)
    parser.add_argument("--max-batch", type=int, default=1024, help="(sample, direction) pairs per JVP call")
    parser.add_argument("--bf16", action="store_true", help="run the net under bfloat16 autocast")
    parser.add_argument("--tf32", action="store_true", help="allow TF32 in the net's float32 products")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="bench_jacobian.json")
    parser.add_argument("--quick", action="store_true", help="unet-tiny on 3x8x8 images on the CPU")
    args = parser.parse_args()
    args.shape = (3, 32, 32)
    if args.quick:
        args.arch, args.device, args.shape, args.samples, args.max_batch = "unet-tiny", "cpu", (3, 8, 8), 1, 192
        args.levels, args.warmup_levels = 3, 1
    device = resolve_device(args.device)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    n = math.prod(args.shape)
    den = build_net(args, device)
    t_start = time.perf_counter()
    with float32_precision(args.tf32), torch.no_grad():
        warm = one_sample(den, 0, args, device, num_levels=args.warmup_levels)
        print(f"warm-up sample ({args.warmup_levels} levels): {warm['seconds']:.2f} s", flush=True)
        runs: list[dict[str, Any]] = []
        for seed in range(1, args.samples + 1):
            elapsed = time.perf_counter() - t_start
            if runs and args.budget_s is not None and elapsed + runs[-1]["seconds"] > args.budget_s:
                print(f"stopping after {len(runs)} timed samples: --budget-s {args.budget_s:g}", flush=True)
                break
            runs.append(one_sample(den, seed, args, device))
            r = runs[-1]
            print(f"seed {seed}: {r['seconds']:.2f} s (sampling {r['sampling_s']:.2f} s, Jacobians "
                  f"{r['jacobians_s']:.2f} s); ranks {r['ranks']}", flush=True)
            write_json(args.out, summarise(args, n, warm, runs, device))
    result = summarise(args, n, warm, runs, device)
    print(f"median {result['median_s_per_sample']:.2f} s per sample over {len(runs)} ({result['jvps_per_sample']:,} "
          f"JVPs: {result['jvps_per_s']:,.0f} JVP/s); target 30 s on an H200")


def summarise(args: argparse.Namespace, n: int, warm: dict[str, Any], runs: list[dict[str, Any]],
              device: torch.device) -> dict[str, Any]:
    """The JSON record of the samples timed so far."""
    median = statistics.median(r["seconds"] for r in runs)
    jvps = args.levels * n
    return {
        "benchmark": "jacobian_rank", "date": dt.date.today().isoformat(), "arch": args.run or args.arch,
        "weights": "trained (run folder)" if args.run else "untrained (seeded init; the cost does not depend on them)",
        "sample_shape": list(args.shape), "n": n, "levels": args.levels, "max_batch": args.max_batch,
        "bf16": args.bf16, "tf32": args.tf32, "warm_up_levels": args.warmup_levels, "warm_up_s": warm["seconds"],
        "runs": runs, "median_s_per_sample": median, "jvps_per_sample": jvps, "jvps_per_s": jvps / median,
        "target_s_per_sample": 30.0, "provenance": provenance(device)}


if __name__ == "__main__":
    main()

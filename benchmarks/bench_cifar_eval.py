"""Cost of evaluating one cifar-optimal-gap cell (:func:`mogsim.experiments.cifar_gap.eval.evaluate_cell`).

One cell: 1,000 seeds x 35 denoiser calls (Heun, 18 levels) for the net and for the empirical optimum of N = 32,768
CIFAR-10 images (float64), nearest neighbours and pixel similarities of the samples against the subset, per-sigma
distances to the empirical and Gaussian references (512 queries x 18 levels x 2 query sets) and the loss ratio
(4,096 items). Target: under 30 s on an H200 with the optimum's samples computed (not cached).

The net is an untrained DDPM++ UNet (``--arch``, VP) unless ``--run`` names a ``mogsim train`` run folder: the cost
does not depend on the weights. Timed: building the references (moment-matched Gaussian included), a first
evaluation (optimum sampled: ``total``), a second one (optimum from memory: what every further evaluation point of
the subset costs), stage by stage, with CUDA synchronised between stages. The JSON is written right after them.

Then the training rate of the same net, to express evaluation in training time: ``eval_share`` is the fraction of a
run spent evaluating with ``--eval-points`` evaluations over a budget of ``--images``. The rate is either given
(``--train-images-per-s``, e.g. from a run's ``log.csv``) or measured with the step that ``mogsim train`` uses on
the device (the CUDA-graph step on CUDA, not compiled; eager on the CPU) for at most ``--train-steps`` steps and
about ``--train-seconds`` seconds, whichever ends first; the JSON is then rewritten with it. (This part once ran on the
CPU of a GPU machine, because its Trainer was built without the device, and a GPU call at N = 32,768 lost its JSON
to the time limit.)

Usage (GPU)::

    python benchmarks/bench_cifar_eval.py --data PATH/cifar10-jpeg --out $OUT/bench_cifar_eval.json

``--quick`` runs a small problem on the CPU (N = 64 images, random unless ``--data``, 16 seeds, unet-tiny) as a
smoke test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable from a checkout without installing
    sys.path.insert(0, str(REPO))

from mogsim.devices import resolve_device  # noqa: E402
from mogsim.experiments.cifar_gap.eval import CellEvalSettings, CellReferences, evaluate_cell  # noqa: E402
from mogsim.io import write_json  # noqa: E402
from mogsim.nets import PreconditionedDenoiser, build_network, network_config  # noqa: E402
from mogsim.provenance import provenance  # noqa: E402
from mogsim.training import (DistContext, RuntimeOptions, TrainConfig, Trainer, load_trained_denoiser,  # noqa: E402
                             make_precond)

TIME_CHECK_EVERY = 5  # training steps between two checks of --train-seconds (each check synchronises the device)


def load_images(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """(subset of N training images, held-out images), uint8: the command's nested subset and held-out images
    (the test split, else training images outside the subset)."""
    if args.data is None:
        rng = np.random.default_rng(0)
        return (rng.integers(0, 256, (args.n, 3, 32, 32), dtype=np.uint8),
                rng.integers(0, 256, (256, 3, 32, 32), dtype=np.uint8))
    from mogsim.experiments.cifar_gap.data import load_gap_data

    data = load_gap_data(args.data, args.n, held_out=1000, cache_dir=args.cache_dir)
    return data.train.numpy(), data.held_out.numpy()


def build_net(args: argparse.Namespace, device: torch.device) -> PreconditionedDenoiser:
    autocast = torch.bfloat16 if args.bf16 else None
    if args.run:
        return load_trained_denoiser(args.run, device=device, autocast_dtype=autocast)
    torch.manual_seed(0)
    net = build_network(args.arch, (3, 32, 32))
    return PreconditionedDenoiser(net, make_precond("vp"), autocast_dtype=autocast).to(device).eval()


def train_images_per_s(args: argparse.Namespace, subset: np.ndarray,
                       device: torch.device) -> tuple[float | None, dict[str, Any]]:
    """Training images per second of the same net (``--train-precision``, batch ``--train-batch``) and how it was
    obtained: given by ``--train-images-per-s``; else measured with the default step of this device, not compiled,
    over at most ``--train-steps`` steps and about ``--train-seconds`` seconds; else None with ``--train-steps 0``."""
    if args.train_images_per_s is not None:
        return args.train_images_per_s, {"source": "--train-images-per-s"}
    if args.train_steps < 1:
        return None, {"source": "not measured (--train-steps 0)"}
    config = TrainConfig(net=network_config(args.arch, (3, 32, 32)), precision=args.train_precision,
                         batch=args.train_batch)
    runtime = RuntimeOptions(compile=False, checkpoint_every=0, progress="none")
    # on the benchmark's device: a Trainer without ``ctx`` trains on the CPU (the cause of the lost GPU call)
    trainer = Trainer(config, torch.from_numpy(subset), runtime=runtime, ctx=DistContext(device=device))
    execution = trainer.prepare_execution(args.train_steps)  # warms up and captures the step on CUDA
    trainer.run_step(0)
    _sync(device)
    t0 = time.perf_counter()
    steps = 0
    while steps < args.train_steps:
        trainer.run_step(steps + 1)
        steps += 1
        if steps % TIME_CHECK_EVERY == 0:
            _sync(device)
            if time.perf_counter() - t0 >= args.train_seconds:
                break
    _sync(device)
    seconds = time.perf_counter() - t0
    return steps * args.train_batch / seconds, {
        "source": "measured", "device": str(trainer.device), "steps": steps, "seconds": seconds,
        "precision": args.train_precision, "batch": args.train_batch, "execution": execution.record()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="CIFAR-10 in any format mogsim.data.load_cifar10 reads (default: random)")
    parser.add_argument("--cache-dir", help="keep decoded CIFAR-10 arrays here")
    parser.add_argument("--n", type=int, default=32_768)
    parser.add_argument("--seeds", type=int, default=1000)
    parser.add_argument("--arch", default="unet-64")
    parser.add_argument("--run", help="a mogsim train run folder: evaluate its EMA net instead of an untrained one")
    parser.add_argument("--bf16", action="store_true", help="run the net under bfloat16 autocast")
    parser.add_argument("--tf32", action="store_true", help="allow TF32 in the net's float32 products")
    parser.add_argument("--sample-batch", type=int, default=1000)
    parser.add_argument("--chunk", type=int, default=1024, help="queries per call in distances and loss")
    parser.add_argument("--train-steps", type=int, default=200, help="at most this many timed training steps")
    parser.add_argument("--train-seconds", type=float, default=10.0, help="stop timing training after about this")
    parser.add_argument("--train-batch", type=int, default=128)
    parser.add_argument("--train-precision", choices=("fp32", "tf32", "bf16"), default="bf16",
                        help="training arithmetic (the command's default on CUDA: bf16)")
    parser.add_argument("--train-images-per-s", type=float,
                        help="take the training rate from here (e.g. a run's log.csv) instead of measuring it")
    parser.add_argument("--images", type=float, default=2e6, help="training budget for eval_share")
    parser.add_argument("--eval-points", type=int, default=8, help="evaluations per run for eval_share")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="bench_cifar_eval.json")
    parser.add_argument("--quick", action="store_true", help="small random problem on the CPU")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.seeds, args.arch, args.device = 64, 16, "unet-tiny", "cpu"
        args.train_steps, args.train_batch, args.chunk = min(args.train_steps, 2), 16, 256
    device = resolve_device(args.device)
    settings = CellEvalSettings(sample_batch=args.sample_batch, tf32=args.tf32, chunk=args.chunk,
                                **({"distance_queries": 16, "loss_batch": 64} if args.quick else {}))

    t0 = time.perf_counter()
    subset, test = load_images(args)
    load_s = time.perf_counter() - t0
    net = build_net(args, device)
    _sync(device)
    t0 = time.perf_counter()
    refs = CellReferences(subset, device)
    _sync(device)
    references_s = time.perf_counter() - t0
    seeds = range(100_000, 100_000 + args.seeds)
    runs: list[dict[str, Any]] = []
    for label in ("optimum sampled", "optimum cached"):
        t0 = time.perf_counter()
        ev = evaluate_cell(net, subset, test_images=test, sample_seeds=seeds, references=refs, settings=settings,
                           device=device)
        wall = time.perf_counter() - t0
        runs.append({"run": label, "wall_s": wall, "stages_s": ev.metrics["timing_s"],
                     "optimum_source": ev.metrics["optimum_samples_source"]})
        print(f"{label:16s} total {wall:7.2f} s  " + "  ".join(f"{k} {v:.2f}" for k, v in
                                                                  ev.metrics["timing_s"].items()), flush=True)
    net_calls = args.seeds * (2 * settings.sampler_steps - 1) + 2 * settings.sampler_steps \
        * settings.distance_queries + settings.loss_batch
    result: dict[str, Any] = {
        "benchmark": "cifar_gap_eval", "date": dt.date.today().isoformat(), "N": args.n, "seeds": args.seeds,
        "arch": args.run or args.arch, "bf16": args.bf16, "tf32": args.tf32, "data": args.data or "random",
        "data_load_s": load_s, "references_s": references_s, "runs": runs, "settings": settings.record(),
        "net_calls_per_evaluation": net_calls, "train_images_per_s": None, "training": {"source": "pending"},
        "metrics_of_last_run": {k: ev.metrics[k] for k in ("rp_optimum", "copy_fraction", "gl", "loss_ratio")},
        "provenance": provenance(device)}
    print(f"references {references_s:.2f} s; net calls per evaluation {net_calls:,}", flush=True)
    write_json(args.out, result)  # the evaluation timings are kept whatever happens to the training part
    train_ips, training = train_images_per_s(args, subset, device)
    result.update(train_images_per_s=train_ips, training=training)
    if train_ips:
        eval_s = runs[1]["wall_s"]
        train_s = args.images / train_ips
        result.update(train_s_for_budget=train_s, eval_share=args.eval_points * eval_s
                      / (train_s + args.eval_points * eval_s), eval_points=args.eval_points, budget_images=args.images)
        print(f"training {train_ips:,.0f} img/s ({training['source']}): {args.images:.3g} images take "
              f"{train_s:,.0f} s; {args.eval_points} evaluations of {eval_s:.1f} s are "
              f"{100 * result['eval_share']:.1f}% of the run")
    write_json(args.out, result)
    return result

if __name__ == "__main__":
    main()

"""Cost of evaluating one cifar-optimal-gap cell (:func:`mogsim.experiments.cifar_gap.eval.evaluate_cell`), in
the old configuration and the new default side by side, and its share of training.

One cell: 1,000 seeds x 35 denoiser calls (Heun, 18 levels) for the net and for the empirical optimum of N = 32,768
CIFAR-10 images (float64), nearest neighbours and pixel similarities of the samples against the subset, per-sigma
distances to the empirical and Gaussian references (512 queries x 18 levels x 2 query sets) and the loss ratio
(4,096 items). Target: under 30 s on an H200 with the optimum's samples computed (not cached), and all evaluation
points under 10% of training.

The net is an untrained DDPM++ UNet (``--arch``, VP) unless ``--run`` names a ``mogsim train`` run folder: the cost
does not depend on the weights. Two configurations, each with its own fresh references (so each first evaluation
samples the optimum), timed stage by stage with CUDA synchronised between stages:

* ``old``: the net in float32 (TF32 off), 512 distance queries per level and no reference cache: the references'
  answers on the distance queries and the loss floor are recomputed at every evaluation (what every evaluation
  point cost before the cache);
* ``new``: the command's defaults on CUDA (``--eval-precision``, default bf16; 256 distance queries per level) with
  the references cached: a first evaluation (optimum sampled, references computed and written to a temporary cache
  folder), a later one (both from memory: every further point of the subset), and a ``resumed`` one (a fresh
  process's first point: both read from the cache folder).

Each configuration: ``first`` and ``later``. The JSON is written after every part. Then the training rate of the
same net, to express evaluation in training time: with the step ``mogsim train`` uses on CUDA without compiling
(the CUDA-graph step; eager on the CPU), at most ``--train-steps`` steps and about ``--train-seconds`` seconds; then
compiled (``torch.compile`` plus the graph, the default for launches over 300 s; compiling takes about 1.5 min, the
budget is ``--compile-steps`` timed steps after it; ``--compile-steps 0`` skips it). The rate can instead be given
(``--train-images-per-s``). ``eval_share[config][rate]`` is the fraction of a run spent evaluating with
``--eval-points`` evaluations over ``--images``: ``later`` counts every point at the later cost, ``with_first`` one
first and the others later (the first point of a subset is shared by its widths and seeds); ``of_training`` holds
the same evaluation seconds over the training seconds alone (issue 12's "under 10% of training"). The compiled part
runs last, so a time limit costs only its numbers.

Usage (GPU; about 5 minutes)::

    python benchmarks/bench_cifar_eval.py --data PATH/cifar10-jpeg --out $OUT/bench_cifar_eval.json

``--quick`` runs a small problem on the CPU (N = 64 images, random unless ``--data``, 16 seeds, unet-tiny, no
compiling) as a smoke test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable from a checkout without installing
    sys.path.insert(0, str(REPO))

from mogsim.devices import resolve_device  # noqa: E402
from mogsim.experiments.cifar_gap.command import CUDA_DEFAULTS  # noqa: E402
from mogsim.experiments.cifar_gap.config import GapConfig  # noqa: E402
from mogsim.experiments.cifar_gap.eval import (NET_PRECISIONS, CellEvalSettings, CellReferences,  # noqa: E402
                                               evaluate_cell)
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
    """The trained EMA net of ``--run`` or an untrained ``--arch`` (VP), float32; the precision is the evaluation's."""
    if args.run:
        return load_trained_denoiser(args.run, device=device)
    torch.manual_seed(0)
    net = build_network(args.arch, (3, 32, 32))
    return PreconditionedDenoiser(net, make_precond("vp")).to(device).eval()


def train_images_per_s(args: argparse.Namespace, subset: np.ndarray, device: torch.device, *,
                       compile: bool = False) -> tuple[float | None, dict[str, Any]]:
    """Training images per second of the same net (``--train-precision``, batch ``--train-batch``) and how it was
    obtained: given by ``--train-images-per-s``; else measured with the step of this device, compiled or not, over
    at most ``--train-steps`` (compiled: ``--compile-steps``) steps and about ``--train-seconds`` seconds after the
    warm-up; else None for 0 steps."""
    if args.train_images_per_s is not None:
        return args.train_images_per_s, {"source": "--train-images-per-s"}
    budget = args.compile_steps if compile else args.train_steps
    if budget < 1:
        return None, {"source": f"not measured (--{'compile' if compile else 'train'}-steps 0)"}
    config = TrainConfig(net=network_config(args.arch, (3, 32, 32)), precision=args.train_precision,
                         batch=args.train_batch)
    runtime = RuntimeOptions(compile=compile, checkpoint_every=0, progress="none")
    # on the benchmark's device: a Trainer without ``ctx`` trains on the CPU (the cause of a lost GPU call)
    trainer = Trainer(config, torch.from_numpy(subset), runtime=runtime, ctx=DistContext(device=device))
    t0 = time.perf_counter()
    execution = trainer.prepare_execution(budget)  # compiles, warms up and captures the step on CUDA
    trainer.run_step(0)
    _sync(device)
    prepare_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    steps = 0
    while steps < budget:
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
        "prepare_s": prepare_s, "precision": args.train_precision, "batch": args.train_batch,
        "execution": execution.record()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_configuration(net: Any, subset: np.ndarray, test: np.ndarray, seeds: range, settings: CellEvalSettings,
                       device: torch.device, cache_dir: Path | None) -> tuple[list[dict[str, Any]], Any]:
    """Evaluations of one configuration with fresh references: ``first`` and ``later``, and with a ``cache_dir``
    also ``resumed`` (fresh references reading the cache); without one the fixed references are dropped before
    each evaluation (the uncached cost). Returns the timed runs and the last evaluation."""
    runs: list[dict[str, Any]] = []
    refs = None
    labels = ("first", "later", "resumed") if cache_dir is not None else ("first", "later")
    for label in labels:
        t0 = time.perf_counter()
        if refs is None or label == "resumed":
            refs = CellReferences(subset, device)
        references_s = time.perf_counter() - t0
        if cache_dir is None:
            refs.drop_fixed_references()
        t0 = time.perf_counter()
        ev = evaluate_cell(net, subset, test_images=test, sample_seeds=seeds, references=refs, settings=settings,
                           device=device, cache_dir=cache_dir)
        wall = time.perf_counter() - t0
        m = ev.metrics
        runs.append({"run": label, "wall_s": wall, "references_build_s": references_s, "stages_s": m["timing_s"],
                     "optimum_source": m["optimum_samples_source"],
                     "fixed_references_source": m["fixed_references_source"]})
        print(f"  {label:8s} total {wall:7.2f} s  " + "  ".join(f"{k} {v:.2f}" for k, v in m["timing_s"].items()),
              flush=True)
    return runs, ev


def eval_shares(result: dict[str, Any], points: int, images: float) -> dict[str, Any]:
    """Share of a run spent evaluating, per configuration and training rate (see the module docs)."""
    shares: dict[str, Any] = {}
    for name, conf in result["configurations"].items():
        by = {r["run"]: r["wall_s"] for r in conf["runs"]}
        costs = {"later": points * by["later"], "with_first": by["first"] + (points - 1) * by["later"]}
        shares[name] = {}
        for rate_name, rate in result["train_images_per_s"].items():
            if rate:
                train_s = images / rate
                shares[name][rate_name] = {k: v / (train_s + v) for k, v in costs.items()}
                shares[name][rate_name]["of_training"] = {k: v / train_s for k, v in costs.items()}
                shares[name][rate_name]["train_s"] = train_s
    return shares


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="CIFAR-10 in any format mogsim.data.load_cifar10 reads (default: random)")
    parser.add_argument("--cache-dir", help="keep decoded CIFAR-10 arrays here")
    parser.add_argument("--n", type=int, default=32_768)
    parser.add_argument("--seeds", type=int, default=1000)
    parser.add_argument("--arch", default="unet-64")
    parser.add_argument("--run", help="a mogsim train run folder: evaluate its EMA net instead of an untrained one")
    parser.add_argument("--eval-precision", choices=NET_PRECISIONS, default=CUDA_DEFAULTS["eval_precision"],
                        help="the new configuration's net arithmetic (default: the command's default on CUDA)")
    parser.add_argument("--sample-batch", type=int, default=1000)
    parser.add_argument("--chunk", type=int, default=1024, help="queries per call in distances and loss")
    parser.add_argument("--train-steps", type=int, default=200, help="at most this many timed training steps")
    parser.add_argument("--compile-steps", type=int, default=200,
                        help="at most this many timed compiled steps (0: do not compile)")
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
        args.compile_steps = 0
    device = resolve_device(args.device)
    # old: 512 queries per level and the float32 net; new: the command's paper-profile counts and CUDA arithmetic
    paper = GapConfig()
    old = {"distance_queries": 512, "loss_batch": 4096} if not args.quick else {"distance_queries": 16,
                                                                                  "loss_batch": 64}
    new = {"distance_queries": paper.distance_queries, "loss_batch": paper.loss_batch} if not args.quick else old
    configs = {"old": CellEvalSettings(sample_batch=args.sample_batch, chunk=args.chunk, net_precision="fp32", **old),
               "new": CellEvalSettings(sample_batch=args.sample_batch, chunk=args.chunk,
                                       net_precision=args.eval_precision, **new)}

    t0 = time.perf_counter()
    subset, test = load_images(args)
    load_s = time.perf_counter() - t0
    net = build_net(args, device)
    seeds = range(100_000, 100_000 + args.seeds)
    settings = configs["new"]
    net_calls = args.seeds * (2 * settings.sampler_steps - 1) + 2 * settings.sampler_steps \
        * settings.distance_queries + settings.loss_batch
    result: dict[str, Any] = {
        "benchmark": "cifar_gap_eval", "format": 2, "date": dt.date.today().isoformat(), "N": args.n,
        "seeds": args.seeds, "arch": args.run or args.arch, "data": args.data or "random", "data_load_s": load_s,
        "net_calls_per_evaluation": net_calls, "configurations": {},
        "train_images_per_s": {}, "training": {"source": "pending"}, "provenance": provenance(device)}
    with tempfile.TemporaryDirectory(prefix="bench-cifar-eval-") as tmp:
        for name, cache in (("old", None), ("new", Path(tmp))):
            print(f"{name}: net {configs[name].net_precision}, references "
                  f"{'cached' if cache is not None else 'recomputed at every evaluation'}", flush=True)
            runs, ev = time_configuration(net, subset, test, seeds, configs[name], device, cache)
            result["configurations"][name] = {
                "net_precision": configs[name].net_precision, "reference_cache": cache is not None, "runs": runs,
                "settings": configs[name].record(), "dtypes": ev.metrics["dtypes"],
                "metrics_of_last_run": {k: ev.metrics[k] for k in ("rp_optimum", "copy_fraction", "gl", "loss_ratio")}}
            write_json(args.out, result)  # every part is kept whatever happens to the later ones
    print(f"net calls per evaluation {net_calls:,}", flush=True)
    training: dict[str, Any] = {}
    kinds = (("given", False),) if args.train_images_per_s is not None else (("graph", False), ("compiled", True))
    for rate_name, compile in kinds:
        rate, how = train_images_per_s(args, subset, device, compile=compile)
        result["train_images_per_s"][rate_name] = rate
        training[rate_name] = how
        result.update(training=training, budget_images=args.images, eval_points=args.eval_points)
        result["eval_share"] = eval_shares(result, args.eval_points, args.images)
        if rate:
            print(f"training ({rate_name}) {rate:,.0f} img/s ({how['source']}): {args.images:.3g} images take "
                  f"{args.images / rate:,.0f} s; evaluation share " + "; ".join(
                      f"{name} {100 * s[rate_name]['later']:.1f}% ({100 * s[rate_name]['with_first']:.1f}% with "
                      f"one first point; {100 * s[rate_name]['of_training']['later']:.1f}% of training)"
                      for name, s in result["eval_share"].items()), flush=True)
        write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()

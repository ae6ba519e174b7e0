"""How much the cifar-optimal-gap metrics move when the net is evaluated in bfloat16 instead of float32.

Evidence for the evaluation's default arithmetic (``--eval-precision``): one trained cell (a ``mogsim train`` run
folder of ``mogsim cifar-optimal-gap``, e.g. the CPU profile's N = 64 cell, which memorizes) is evaluated twice on
the same seeds, references and queries, once with ``net_precision=fp32`` and once with ``bf16`` (autocast; on a CPU
with AMX/AVX512-BF16 this is real bfloat16 arithmetic with float32 accumulation, as on CUDA). Reported: per seed,
whether the two samples are the same image (pixel similarity above the threshold, and the same nearest training
image); RP to the optimum, copy fraction and GL of each with their bootstrap intervals; the per-sigma distances with
their standard errors; the loss ratio. bf16 may be a default only if every difference lies within the metrics' own
intervals.

Usage (CPU; minutes)::

    mogsim cifar-optimal-gap --data PATH/cifar10-jpeg --ns 64 --eval-at 24000 --out runs/gap-cpu
    python benchmarks/eval_precision_cpu.py --data PATH/cifar10-jpeg --out-dir runs/gap-cpu --n 64 \
        --out eval_precision_cpu.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable from a checkout without installing
    sys.path.insert(0, str(REPO))

from mogsim.experiments.cifar_gap.cells import CELLS_DIR  # noqa: E402
from mogsim.experiments.cifar_gap.data import load_gap_data  # noqa: E402
from mogsim.experiments.cifar_gap.eval import CellEvalSettings, CellReferences, evaluate_cell  # noqa: E402
from mogsim.io import write_json  # noqa: E402
from mogsim.metrics.reproducibility import agreement  # noqa: E402
from mogsim.metrics.similarity import make_similarity  # noqa: E402
from mogsim.provenance import provenance  # noqa: E402
from mogsim.runs import read_config  # noqa: E402
from mogsim.training import load_trained_denoiser  # noqa: E402

SCALARS = ("rp_optimum", "copy_fraction", "memorized_fraction")


def compare(fp32: Any, bf16: Any) -> dict[str, Any]:
    """The differences between two evaluations of one net (fp32, bf16) and whether each is within the intervals."""
    backend = make_similarity("pixel")
    a, b = (torch.from_numpy(ev.samples).double().clamp(-1, 1) for ev in (fp32, bf16))
    same = agreement(a, b, backend)
    same_nearest = fp32.per_sample["nearest_index"] == bf16.per_sample["nearest_index"]
    both_copies = fp32.per_sample["is_copy"] & bf16.per_sample["is_copy"]
    out: dict[str, Any] = {
        "same_image_fraction": same.rp, "same_image_ci": list(same.ci),
        "same_nearest_fraction": float(same_nearest.mean()),
        "same_nearest_among_copies": float(same_nearest[both_copies].mean()) if both_copies.any() else None,
        "copy_verdict_changed": int((fp32.per_sample["is_copy"] != bf16.per_sample["is_copy"]).sum()),
        "rp_verdict_changed": int((fp32.per_sample["reproduced"] != bf16.per_sample["reproduced"]).sum()),
        "max_abs_sample_difference": float((a - b).abs().max()),
        "median_abs_sample_difference": float((a - b).abs().flatten(1).max(dim=1).values.median()),
        "scalars": {}}
    for key in SCALARS:
        x, y, ci = fp32.metrics[key], bf16.metrics[key], fp32.metrics[f"{key}_ci"]
        out["scalars"][key] = {"fp32": x, "bf16": y, "fp32_ci": ci, "bf16_ci": bf16.metrics[f"{key}_ci"],
                               "difference": y - x, "bf16_within_fp32_ci": ci[0] <= y <= ci[1]}
    lr_a, lr_b, lr_se = fp32.metrics["loss_ratio"], bf16.metrics["loss_ratio"], fp32.metrics["loss_ratio_se"]
    out["scalars"]["loss_ratio"] = {"fp32": lr_a, "bf16": lr_b, "fp32_se": lr_se,
                                    "relative_difference": lr_b / lr_a - 1, "difference_in_se": (lr_b - lr_a) / lr_se}
    pa, pb = fp32.metrics["per_sigma"], bf16.metrics["per_sigma"]
    rows, worst = [], 0.0
    for s in pa["distance"]:
        for r in pa["distance"][s]:
            da, db = np.asarray(pa["distance"][s][r]), np.asarray(pb["distance"][s][r])
            se = np.asarray(pa["distance_se"][s][r])
            z = np.abs(db - da) / np.where(se > 0, se, np.inf)
            worst = max(worst, float(z.max()))
            rows.append({"query_set": s, "reference": r, "max_relative_difference": float(np.max(np.abs(db / da - 1))),
                         "max_difference_in_se": float(z.max()), "sigma_of_max": float(pa["sigmas"][int(z.argmax())]),
                         "median_relative_se": float(np.median(se / da)), "max_relative_se": float(np.max(se / da)),
                         "relative_se": (se / da).tolist()})
    out["distances"] = rows
    out["distances_max_difference_in_se"] = worst
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="the CIFAR-10 source the cell was trained on")
    parser.add_argument("--out-dir", required=True, help="the cifar-optimal-gap experiment folder")
    parser.add_argument("--n", type=int, default=64, help="the cell's N (its folder under cells/)")
    parser.add_argument("--seeds", type=int, default=200, help="sampler seeds from 100000")
    parser.add_argument("--distance-queries", type=int, default=64)
    parser.add_argument("--loss-batch", type=int, default=512)
    parser.add_argument("--cache-dir", help="keep decoded CIFAR-10 arrays here")
    parser.add_argument("--out", default="eval_precision_cpu.json")
    args = parser.parse_args(argv)
    folders = sorted((Path(args.out_dir) / CELLS_DIR).glob(f"n{args.n:06d}-*/"))
    if not folders:
        raise SystemExit(f"no cell of N = {args.n} under {args.out_dir}/{CELLS_DIR}")
    folder = folders[0]
    record = read_config(folder / "config.json")
    resolution = record["experiment"].get("resolution") or int(record["data"]["sample_shape"][-1])
    data = load_gap_data(args.data, args.n, resolution=resolution, cache_dir=args.cache_dir)
    subset = data.subset(args.n)
    net = load_trained_denoiser(folder)
    refs = CellReferences(subset)
    seeds = range(100_000, 100_000 + args.seeds)
    evals = {}
    for precision in ("fp32", "bf16"):
        settings = CellEvalSettings(distance_queries=args.distance_queries, loss_batch=args.loss_batch,
                                    loss=record["train"]["precond"], sigma_data=float(record["train"]["sigma_data"][0]),
                                    net_precision=precision)
        evals[precision] = evaluate_cell(net, subset, test_images=data.held_out, sample_seeds=seeds, references=refs,
                                         settings=settings)
        m = evals[precision].metrics
        print(f"{precision}: RP optimum {m['rp_optimum']:.3f} {m['rp_optimum_ci']}, copies {m['copy_fraction']:.3f} "
              f"{m['copy_fraction_ci']}, loss ratio {m['loss_ratio']:.4f}, {m['timing_s']['total']:.1f} s", flush=True)
    result = {"benchmark": "cifar_gap_eval_precision", "cell": folder.name, "n": args.n, "seeds": args.seeds,
              "images_seen": record["experiment"]["evaluation_points"][-1],
              "comparison": compare(evals["fp32"], evals["bf16"]),
              "timing_s": {p: ev.metrics["timing_s"] for p, ev in evals.items()},
              "settings": {p: ev.metrics["settings"] for p, ev in evals.items()},
              "provenance": provenance(torch.device("cpu"))}
    c = result["comparison"]
    print(f"same image (pixel > 0.9) fp32 vs bf16: {c['same_image_fraction']:.3f}; same nearest training image "
          f"{c['same_nearest_fraction']:.3f}; copy verdicts changed {c['copy_verdict_changed']}, RP verdicts changed "
          f"{c['rp_verdict_changed']} of {args.seeds}; distances: largest difference "
          f"{c['distances_max_difference_in_se']:.2f} standard errors")
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()

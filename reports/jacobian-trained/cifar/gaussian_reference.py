"""The Jacobian rank of the CIFAR-10 training set's Gaussian denoiser at the CIFAR run's noise levels (CPU, float64).

The moment-matched Gaussian N(mean, cov) of the training images (Li, Dai, Qu 2024: a generalizing net is close to
it over much of the noise range) has the Jacobian Q diag(lam / (lam + sigma^2)) Q^T at every x, so its numerical
rank per level needs only the covariance's eigenvalues. This is the reference beside the trained net's ranks:

    python reports/jacobian-trained/cifar/gaussian_reference.py ../shared/data/cifar10-jpeg/train.zip \\
        reports/jacobian-trained/cifar [--check-sigma 80]

It reads the jacobian-rank run folder under FOLDER/jacobian-rank/ (its levels and energy) and FOLDER/train/config.json
(the training data's SHA-256, compared with the images read here), and writes FOLDER/gaussian_ranks.csv and
FOLDER/gaussian_reference.json and FOLDER/violin_vs_gaussian.png/.pdf (the net's violins with the Gaussian's
ranks as a line). ``--check-sigma`` also takes the rank at that level the way mogsim jacobian-rank does
(3,072 forward-mode JVPs at one training image plus noise) and stops if the two differ.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from mogsim.data.cifar import images_to_tensor, load_cifar10
from mogsim.experiments.cifar_gap.eval import moment_matched_gaussian
from mogsim.io import write_json
from mogsim.metrics.jacobian import jacobian_rank, numerical_rank
from mogsim.provenance import provenance
from mogsim.runs import write_csv
from mogsim.training.run import data_fingerprint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="CIFAR-10 training images (any format mogsim reads)")
    parser.add_argument("folder", type=Path, help="the report folder: train/ and jacobian-rank/<run>/ inside")
    parser.add_argument("--check-sigma", type=float, default=None, help="also take this level's rank from JVPs")
    args = parser.parse_args(argv)
    (run,) = sorted((args.folder / "jacobian-rank").glob("jacobian-rank-*"))
    metrics = json.loads((run / "metrics.json").read_text())
    trained_on = json.loads((args.folder / "train" / "config.json").read_text())["data"]["sha256"]
    t0, started = time.monotonic(), provenance("cpu")  # before this script rewrites its committed outputs
    images, _ = load_cifar10(args.data)
    fingerprint = data_fingerprint(torch.from_numpy(images))
    gauss = moment_matched_gaussian(images_to_tensor(images, dtype=torch.float64))
    energy, n = float(metrics["energy"]), int(metrics["dim"])
    eigenvalues = gauss.eigenvalues
    covariance = {"eigenvalue_min": float(eigenvalues.min()), "eigenvalue_max": float(eigenvalues.max()),
                  "numerical_rank": int(numerical_rank(eigenvalues, energy))}
    rows = []
    for level in metrics["levels"]:
        sigma = float(level["sigma"])
        rank = int(numerical_rank(gauss.jacobian_singular_values(sigma), energy))
        rows.append({"level": level["level"], "sigma": sigma, "snr": 1.0 / sigma, "gaussian_rank": rank,
                     "gaussian_rank_over_n": rank / n, "net_rank_median": level["rank_median"],
                     "eigenvalues_above_sigma2": int((eigenvalues > sigma ** 2).sum())})
    check = None
    if args.check_sigma is not None:
        x = images_to_tensor(images[:1], dtype=torch.float64)
        x = x + args.check_sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=x.dtype)
        by_jvp = int(jacobian_rank(gauss, x, args.check_sigma, energy)[0])
        by_spectrum = int(numerical_rank(gauss.jacobian_singular_values(args.check_sigma), energy))
        check = {"sigma": args.check_sigma, "rank_from_jvps": by_jvp, "rank_from_spectrum": by_spectrum}
        if by_jvp != by_spectrum:
            print(f"gaussian_reference: the JVP rank {by_jvp} differs from the spectrum's {by_spectrum}",
                  file=sys.stderr)
            return 1
    write_csv(args.folder / "gaussian_ranks.csv", rows)
    write_json(args.folder / "gaussian_reference.json", {
        "what": "numerical rank of the Jacobian of the moment-matched Gaussian denoiser of the CIFAR-10 training set",
        "data": {"source": str(args.data), "images": int(images.shape[0]), "sha256": fingerprint,
                 "same_as_training": fingerprint == trained_on},
        "energy": energy, "dim": n, "dtype": "float64", "covariance": covariance, "levels": rows,
        "jvp_check": check,
        "seconds": time.monotonic() - t0, "provenance": started})
    draw(args.folder, run, metrics, rows)
    for r in rows:
        print(f"sigma {r['sigma']:9.4g}  Gaussian rank {r['gaussian_rank']:5d}  net median {r['net_rank_median']:7g}")
    print(f"data the same as the training run's: {fingerprint == trained_on}")
    return 0


def draw(folder: Path, run: Path, metrics: dict, rows: list[dict]) -> None:
    """The net's violins (its ranks.csv) with the Gaussian's rank / n per level as a line."""
    from mogsim.io import atomic_path
    from mogsim.report.figures import jacobian_rank_figure
    from mogsim.runs import read_csv

    title = (f"unet-64 on CIFAR-10 (0.75 Mimg): n = {metrics['dim']:,}, {metrics['samples']} trajectories, "
             f"{metrics['arithmetic']}")
    gaussian = [(r["sigma"], r["gaussian_rank_over_n"]) for r in rows]
    fig = jacobian_rank_figure(read_csv(run / "ranks.csv"), metrics["dim"], title=title, energy=metrics["energy"],
                               curves={"Gaussian of the training set (float64)": gaussian})
    for suffix in ("png", "pdf"):
        with atomic_path(folder / f"violin_vs_gaussian.{suffix}") as tmp:
            fig.savefig(tmp, format=suffix, dpi=150)


if __name__ == "__main__":
    sys.exit(main())

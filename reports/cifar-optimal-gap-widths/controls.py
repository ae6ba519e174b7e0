"""Degenerate controls for RP between widths (README: "Is RP between widths = 1.0 at N = 4096 real?").

    nice python reports/cifar-optimal-gap-widths/controls.py [--data CIFAR10_TRAIN]   # this run (the defaults)
    nice python reports/cifar-optimal-gap-widths/controls.py --folder reports/cifar-optimal-gap-grid \
        --points 64:49152,128:49152 --out controls_49152.json --figure ''    # another run's folder and points

``--data`` defaults to ../shared beside the checkout. ``--points N:IMAGES,...`` (at most one point per N) names the
evaluation points analysed; ``--hist`` the points whose between-widths correlations the figure's first panel shows,
``--figure-n`` the N of its other panels.

The device kept the nets' samples; this folder has, per evaluation point, the per-seed arrays (nearest training
image, its distance, the best pixel correlation to a training image, the correlation to the optimum's sample) and,
in ``cross_per_seed.npz``, each seed's correlation between the two widths' samples. From those and from the
training subsets, rebuilt here from CIFAR-10 with the run's seeds, this script computes (CPU, float64):

* the check that the subsets and the sampler noise are the device's: the empirical optimum's samples, replayed here
  on the same seeds, land on the same training image as on the device for every seed;
* mismatched seeds: how often the two widths' samples have the same nearest training image at the same seed and at
  seed i against seed i + k (k = 1..255, the chance level);
* the moment-matched Gaussian's sampler (Li, Dai, Qu 2024) on the same noise: a "generalizing" sampler whose
  samples are known; how often the nets' nearest training image is the Gaussian sample's, and the per-seed
  agreement of their correlations to the optimum's sample;
* what "the same image" means at threshold 0.9: the correlation of Gaussian samples with one another at mismatched
  seeds, with the data mean, and with a blurred copy of themselves; the same for training images;
* the data mean as a sample: its nearest training image and correlations, against the nets' per-seed arrays;
* the distribution of the same-seed correlation between widths at every point, against the threshold.

Writes ``controls.json`` and ``fig_width_controls.png`` (``--out``, ``--figure``) into the folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mogsim.data import load_cifar10
from mogsim.experiments.cifar_gap.combine import legacy_per_seed_key, per_seed_key
from mogsim.experiments.cifar_gap.eval import CellEvalSettings, CellReferences, sample_in_batches
from mogsim.io import write_json
from mogsim.metrics.copies import nearest_two
from mogsim.metrics.reproducibility import mismatched_agreement, shifted_matches
from mogsim.metrics.similarity import PixelCorrelation
from mogsim.provenance import provenance
from mogsim.sampling import noise_for_seeds

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[2] / "shared" / "data" / "cifar10-jpeg"
SHAPE = (3, 32, 32)
#: This run's defaults: the last evaluation point of each width per N, the figure's histograms and its N.
POINTS, HIST, FIGURE_N = "16:110080,4096:98304", "4096:98304,16:110080", 4096
NETS = ("unet-64", "unet-128")
BLUR_SIGMA = 1.0  # pixels: a Gaussian blur that keeps the layout and removes the fine texture


def parse_pairs(text: str) -> list[tuple[int, int]]:
    """``"16:110080,4096:98304"`` -> [(16, 110080), (4096, 98304)] (in the given order)."""
    return [(int(n), int(images)) for n, images in (p.split(":") for p in text.split(",") if p.strip())]


def parse_points(text: str) -> dict[int, int]:
    """:func:`parse_pairs` as {N: images}, at most one point per N."""
    pairs = parse_pairs(text)
    if len({n for n, _ in pairs}) != len(pairs):
        raise SystemExit(f"--points {text}: at most one point per N (run again with --out for the others)")
    return dict(pairs)


def cell_dir(root: Path, n: int, net: str) -> Path:
    (folder,) = (root / "cells").glob(f"n{n:06d}-{net}-seed0-*")
    return folder


def per_seed(root: Path, n: int, net: str, images: int) -> dict[str, np.ndarray]:
    (path,) = (cell_dir(root, n, net) / "evals").glob(f"*/images-{images:012d}/per_seed.npz")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def metrics(root: Path, n: int, net: str, images: int) -> dict:
    (path,) = (cell_dir(root, n, net) / "evals").glob(f"*/images-{images:012d}/metrics.json")
    return json.loads(path.read_text())


def blur(images: torch.Tensor, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """Separable Gaussian blur (radius 3 sigma, reflect padding), per channel."""
    r = int(np.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=images.dtype)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    c = images.shape[1]
    x = F.pad(images, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def match_rates(a: np.ndarray, b: np.ndarray) -> dict:
    """Share of seeds where ``a[i] == b[i]``, and where ``a[i] == b[(i + k) % S]`` (mean and max over k >= 1)."""
    shifted = shifted_matches(a, b)
    return {"same_seed": float(np.mean(a == b)), "shifted_mean": float(np.mean(shifted)),
            "shifted_max": float(np.max(shifted)), "shift_1": float(shifted[0])}


def quantiles(x: np.ndarray) -> dict:
    q = np.quantile(x, [0.0, 0.01, 0.05, 0.5, 0.95, 1.0])
    return {"min": q[0], "q01": q[1], "q05": q[2], "median": q[3], "q95": q[4], "max": q[5],
            "above_0.9": float(np.mean(x > 0.9)), "above_0.95": float(np.mean(x > 0.95))}


def similarity_of_shifted(backend: PixelCorrelation, x: torch.Tensor) -> np.ndarray:
    """Each sample's correlation with the next seed's sample of the same sampler."""
    return mismatched_agreement(x, x, backend, shift=1).similarity


def analyse_n(root: Path, n: int, images: int, train_images: np.ndarray, order: np.ndarray,
              backend: PixelCorrelation) -> tuple[dict, dict]:
    subset = train_images[order[:n]]
    first = metrics(root, n, NETS[0], images)
    refs = CellReferences(subset, "cpu")
    seeds = [int(s) for s in per_seed(root, n, NETS[0], images)["seeds"]]
    settings = CellEvalSettings(sampler_steps=first["settings"]["sampler_steps"], solver=first["settings"]["solver"],
                                sample_batch=64)
    noise = noise_for_seeds(seeds, SHAPE, dtype=torch.float64)
    optimum, _ = refs.optimum_samples(seeds, settings, None)
    gauss = sample_in_batches(refs.gaussian, noise, settings, torch.device("cpu"), torch.float64).clamp(-1, 1)
    optimum = optimum.clamp(-1, 1)
    train = refs.images
    mean = train.mean(dim=0, keepdim=True)
    nets = {net: per_seed(root, n, net, images) for net in NETS}

    _, _, opt_nearest = nearest_two(optimum, train)
    g_d1, g_d2, g_nearest = nearest_two(gauss, train)
    g_best, _ = backend.max_similarity(gauss, train)
    m_d1, _, m_nearest = nearest_two(mean, train)
    m_best, _ = backend.max_similarity(mean, train)
    g_to_opt = backend.similarity(gauss, optimum).numpy()
    mean_to_opt = backend.similarity(mean.expand_as(optimum), optimum).numpy()
    out: dict = {
        "n": n, "images_seen": images, "seeds": [seeds[0], seeds[-1]], "count": len(seeds),
        "subset_fingerprint_matches_device": refs.fingerprint == first["subset_sha256"],
        "optimum_nearest_index_matches_device": float(np.mean(opt_nearest.numpy() ==
                                                              nets[NETS[0]]["optimum_nearest_index"])),
        "nearest_index_between_widths": match_rates(nets[NETS[0]]["nearest_index"], nets[NETS[1]]["nearest_index"]),
        "max_similarity_index_between_widths": match_rates(nets[NETS[0]]["max_similarity_index"],
                                                           nets[NETS[1]]["max_similarity_index"]),
        "distinct_nearest_index": {net: int(len(np.unique(a["nearest_index"]))) for net, a in nets.items()},
        "gaussian": {
            "distinct_nearest_index": int(len(torch.unique(g_nearest))),
            "median_nn_distance": float(g_d1.median()), "median_nn_ratio": float((g_d1 / g_d2).median()),
            "median_max_similarity": float(g_best.median()),
            "shifted_seed_similarity": quantiles(similarity_of_shifted(backend, gauss)),
            "similarity_to_mean": quantiles(backend.similarity(gauss, mean.expand_as(gauss)).numpy()),
            "similarity_to_own_blur": quantiles(backend.similarity(gauss, blur(gauss)).numpy()),
        },
        "training_images": {  # at N < 256 the "training images" of the shifted pairs are the optimum's samples
            "shifted_similarity": quantiles(similarity_of_shifted(backend, train[:256] if n >= 256 else optimum)),
            "similarity_to_mean": quantiles(backend.similarity(train, mean.expand_as(train)).numpy()),
            "similarity_to_own_blur": quantiles(backend.similarity(train, blur(train)).numpy()),
        },
        "data_mean": {"nearest_index": int(m_nearest[0]), "nn_distance": float(m_d1[0]),
                      "max_similarity": float(m_best[0])},
        "nets": {},
    }
    for net, a in nets.items():
        m = metrics(root, n, net, images)
        out["nets"][net] = {
            "median_nn_distance": m["median_nn_distance"], "median_nn_ratio": m["median_nn_ratio"],
            "median_max_similarity": m["median_max_similarity"],
            "nearest_index_equals_gaussian": match_rates(a["nearest_index"], g_nearest.numpy()),
            "nearest_index_equals_data_mean": float(np.mean(a["nearest_index"] == int(m_nearest[0]))),
            "similarity_to_optimum_vs_gaussian": {
                "pearson_over_seeds": float(np.corrcoef(a["similarity_to_optimum"], g_to_opt)[0, 1]),
                "median_abs_difference": float(np.median(np.abs(a["similarity_to_optimum"] - g_to_opt)))},
            "similarity_to_optimum_vs_data_mean": {
                "pearson_over_seeds": float(np.corrcoef(a["similarity_to_optimum"], mean_to_opt)[0, 1]),
                "median_abs_difference": float(np.median(np.abs(a["similarity_to_optimum"] - mean_to_opt)))},
        }
    panels = {"gauss_shifted": similarity_of_shifted(backend, gauss),
              "gauss_blur": backend.similarity(gauss, blur(gauss)).numpy(),
              "gauss_mean": backend.similarity(gauss, mean.expand_as(gauss)).numpy(),
              "g_to_opt": g_to_opt, "mean_to_opt": mean_to_opt,
              "net_to_opt": {net: a["similarity_to_optimum"] for net, a in nets.items()},
              "gauss_images": gauss[:8].numpy(), "optimum_images": optimum[:8].numpy(),
              "mean_image": mean[0].numpy()}
    return out, panels


def between_widths(root: Path) -> dict:
    with np.load(root / "cross_per_seed.npz") as z:
        return {k: quantiles(z[k]) for k in sorted(z.files, key=lambda s: (int(s.split("__")[1]),
                                                                           int(s.split("__")[2])))}


def width_pair_similarity(cross: dict[str, np.ndarray], n: int, images: int) -> np.ndarray:
    """The same-seed correlations of the two widths at (N, images), training seed 0, under the key merges write now
    or the one they wrote before it named the shared training seed (the committed files)."""
    row = {"kind": "widths", "n": n, "images_seen": images, "a": NETS[0], "b": NETS[1], "seed": 0}
    for key in (per_seed_key(row), legacy_per_seed_key(row)):
        if key.replace("/", "__") in cross:
            return cross[key.replace("/", "__")]
    raise KeyError(f"no per-seed correlations for N = {n} at {images} images in cross_per_seed.npz")


def figure(root: Path, panels: dict, path: Path, hist: list[tuple[int, int]], fig_n: int) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with np.load(root / "cross_per_seed.npz") as z:
        cross = {k: z[k] for k in z.files}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    bins = np.linspace(-0.4, 1.0, 57)
    ax = axes[0]
    for n, images in hist:
        ax.hist(width_pair_similarity(cross, n, images), bins=bins, histtype="step", lw=2,
                label=f"{NETS[0]} vs {NETS[1]}, same seed (N = {n}, {images // 1000}k)")
    p = panels[fig_n]
    ax.hist(p["gauss_shifted"], bins=bins, histtype="step", ls="--",
            label=f"Gaussian sampler, seed i vs i+1 (N = {fig_n})")
    ax.hist(p["gauss_mean"], bins=bins, histtype="step", ls=":", label=f"Gaussian sample vs data mean (N = {fig_n})")
    ax.axvline(0.9, color="k", lw=1)
    ax.set_xlabel("pixel correlation")
    ax.set_ylabel("seeds (of 256)")
    ax.set_title("What passes the threshold 0.9 (black line)")
    ax.legend(fontsize=7, loc="upper left")
    ax = axes[1]
    for net, marker in zip(NETS, ("o", "x")):
        ax.scatter(p["g_to_opt"], p["net_to_opt"][net], s=9, marker=marker, label=f"{net} ({p['images'] // 1000}k images)")
    ax.scatter(p["mean_to_opt"], p["net_to_opt"][NETS[1]], s=6, c="grey", alpha=0.5,
               label="grey: unet-128 against the data mean's\ncorrelation to the optimum's sample (x)")
    ax.plot([-0.4, 1], [-0.4, 1], "k:", lw=1)
    ax.set_xlabel("Gaussian sampler's (grey: data mean's) correlation to the optimum's sample")
    ax.set_ylabel("net's correlation to the optimum's sample")
    ax.set_title(f"N = {fig_n}, per seed: the nets against the Gaussian")
    ax.legend(fontsize=7)
    ax = axes[2]
    rows = [np.clip(p["gauss_images"], -1, 1), np.clip(p["optimum_images"], -1, 1)]
    grid = np.concatenate([np.concatenate(list(r.transpose(0, 2, 3, 1)), axis=1) for r in rows], axis=0)
    mean_img = np.clip(p["mean_image"].transpose(1, 2, 0), -1, 1)
    ax.imshow((np.concatenate([grid, np.concatenate([mean_img] + [np.ones_like(mean_img)] * 7, axis=1)]) + 1) / 2,
              interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"N = {fig_n}, seeds 100000-100007: Gaussian sampler,\nempirical optimum; data mean (bottom left)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CIFAR-10 (train split)")
    parser.add_argument("--folder", type=Path, default=HERE, help="the run's folder (cells/, cross_per_seed.npz)")
    parser.add_argument("--points", default=POINTS, help="N:IMAGES,... analysed (one per N)")
    parser.add_argument("--out", default="controls.json", help="file written into the folder")
    parser.add_argument("--figure", default="fig_width_controls.png", help="figure written into the folder ('': none)")
    parser.add_argument("--hist", default=HIST, help="N:IMAGES,... of the figure's histograms")
    parser.add_argument("--figure-n", type=int, default=FIGURE_N, help="N of the figure's other panels")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    root, points = args.folder.resolve(), parse_points(args.points)
    train_images, _ = load_cifar10(args.data, split="train")
    backend = PixelCorrelation()
    result = {"what": __doc__.split("\n\n")[0], "data": str(args.data), "backend": backend.record(),
              "blur_sigma_pixels": BLUR_SIGMA, "between_widths": between_widths(root), "per_n": {}}
    panels = {}
    for n, images in points.items():
        order = np.asarray(json.loads((cell_dir(root, n, NETS[0]) / "subset.json").read_text())["indices"],
                           dtype=np.int64)
        result["per_n"][str(n)], panels[n] = analyse_n(root, n, images, train_images, order, backend)
        panels[n]["images"] = images
        print(f"N = {n}: done", flush=True)
    result["provenance"] = provenance("cpu")
    write_json(root / args.out, result)
    if args.figure:
        figure(root, panels, root / args.figure, parse_pairs(args.hist), args.figure_n)


if __name__ == "__main__":
    main()

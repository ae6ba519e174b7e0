"""Per noise level: is each width closer to the empirical optimum or to the moment-matched Gaussian, at 49k and 98k
images? A threshold-free check of the N = 64 dip in RP between widths (README: "Is the N = 64 dip real?").

    nice python reports/cifar-optimal-gap-grid/per_sigma_dip.py

Reads ``per_sigma.csv`` (the merge's relative distances of each net to the two references on noisy training and
held-out images) and writes, into this folder, ``per_sigma_dip.csv``: per N, net, images seen, query set and sigma the
ratio distance-to-empirical / distance-to-Gaussian (below 1: the net is closer to the empirical optimum), with its
summary per N and width (geometric mean over a mid-noise band, chosen after looking at N = 64, where the widths'
curves separate: a post-hoc choice, stated with the numbers); and ``fig_per_sigma_dip.png``.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from mogsim.runs import read_csv, write_csv

HERE = Path(__file__).resolve().parent
NETS = ("unet-64", "unet-128")
POINTS = (49152, 98304)
#: The mid-noise band where the N = 64 curves of the two widths separate (chosen after looking: see the figure).
BAND = (0.25, 10.0)


def ratios() -> dict[tuple[int, str, int, str], dict[float, float]]:
    """(N, net, images, query set) -> {sigma: distance to the empirical optimum / distance to the Gaussian}."""
    dist: dict[tuple, dict[str, dict[float, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in read_csv(HERE / "per_sigma.csv"):
        key = (int(r["n"]), r["net"], int(r["images_seen"]), r["query_set"])
        dist[key][r["reference"]][float(r["sigma"])] = float(r["distance"])
    return {k: {s: v["empirical"][s] / v["gaussian"][s] for s in sorted(v["empirical"])} for k, v in dist.items()}


def main() -> None:
    table = ratios()
    rows = [{"n": n, "net": net, "images_seen": images, "query_set": qs, "sigma": s, "empirical_over_gaussian": x}
            for (n, net, images, qs), by_sigma in sorted(table.items()) for s, x in by_sigma.items()]
    write_csv(HERE / "per_sigma_dip.csv", rows)
    print(f"geometric mean of distance-to-empirical / distance-to-Gaussian, training queries, sigma in {BAND}:")
    for n in sorted({k[0] for k in table}):
        cells = []
        for net in NETS:
            for images in POINTS:
                by_sigma = table[(n, net, images, "train")]
                band = [x for s, x in by_sigma.items() if BAND[0] <= s <= BAND[1]]
                cells.append(f"{net} {images // 1000}k {np.exp(np.mean(np.log(band))):.2f}")
        print(f"  N = {n:>4}: " + "; ".join(cells))
    figure(table)


def figure(table: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = sorted({k[0] for k in table})
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
    for ax, n in zip(axes[:2], (64, 128)):
        for i, net in enumerate(NETS):
            for images, ls in zip(POINTS, (":", "-")):
                by_sigma = table[(n, net, images, "train")]
                ax.plot(list(by_sigma), list(by_sigma.values()), ls, color=f"C{i}", marker="o", ms=3,
                        label=f"{net}, {images // 1000}k images")
        ax.set_title(f"N = {n}: per noise level (training queries)")
    ax = axes[2]
    for i, net in enumerate(NETS):
        for images, ls in zip(POINTS, (":", "-")):
            gm = [np.exp(np.mean(np.log([x for s, x in table[(n, net, images, "train")].items()
                                         if BAND[0] <= s <= BAND[1]]))) for n in ns]
            ax.plot(ns, gm, ls, color=f"C{i}", marker="o", ms=4, label=f"{net}, {images // 1000}k images")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set_xlabel("N (training images)")
    ax.set_title(f"geometric mean over sigma in [{BAND[0]:g}, {BAND[1]:g}]")
    for ax in axes[:2]:
        ax.set_xscale("log")
        ax.set_xlabel(r"$\sigma$")
        ax.axvspan(*BAND, color="0.9", zorder=0)
    for ax in axes:
        ax.axhline(1.0, color="k", lw=0.8)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("d(net, empirical) / d(net, Gaussian)\n(below 1: nearer the empirical optimum)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(HERE / "fig_per_sigma_dip.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()

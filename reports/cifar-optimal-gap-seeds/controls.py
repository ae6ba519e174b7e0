"""Degenerate controls for RP between the two training seeds (README: "Is RP between seeds real?").

    python reports/cifar-optimal-gap-seeds/controls.py

The samples stayed on the device. This folder has, per evaluation point and training seed, the per-seed arrays
(``per_seed.npz``: each sample's nearest training image, whether it is a copy, and the same for the empirical
optimum's sample from the same noise) and, in ``cross_per_seed.npz``, each sampler seed's pixel correlation between
the two nets' samples. From those alone (no threshold on the correlation, no CIFAR-10, CPU, under a second) this
script measures, at every point:

* how often the two nets' samples have the same nearest training image at the same sampler seed, against seed i
  of one net with seed i + k of the other (k = 1..255: the chance level; with 16 training images it is about 1/16,
  not small) and against the product of the two nets' marginal frequencies of each image (the chance level in
  closed form);
* the same for each net against the optimum's nearest image (the optimum's sample from the same noise);
* how often both samples are copies, and both copies of the same image;
* the distribution of the same-seed correlation between the two nets.

Writes ``controls.json`` here (with provenance).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mogsim.io import write_json
from mogsim.metrics.copies import fraction_ci
from mogsim.metrics.reproducibility import shifted_matches
from mogsim.provenance import provenance

HERE = Path(__file__).resolve().parent
NET = "unet-64"
SEEDS = (0, 1)


def per_seed(seed: int, images: int) -> dict[str, np.ndarray]:
    """The per-seed arrays of training seed ``seed`` at ``images`` images seen."""
    (path,) = HERE.glob(f"cells/n000016-{NET}-seed{seed}-*/evals/*/images-{images:012d}/per_seed.npz")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def rate(flags: np.ndarray) -> dict[str, object]:
    """A share of seeds with its 95% bootstrap interval (over the sampler seeds)."""
    return {"rate": float(np.mean(flags)), "ci": list(fraction_ci(flags))}


def same_index(a: np.ndarray, b: np.ndarray) -> dict[str, object]:
    """``a[i] == b[i]`` (same sampler seed) against ``a[i] == b[(i + k) % S]`` for k = 1..S-1 (mismatched seeds),
    and the chance level from the marginals: sum over images j of P(a = j) P(b = j)."""
    shifted = shifted_matches(a, b)
    images = np.union1d(a, b)
    marginal = float(sum(np.mean(a == j) * np.mean(b == j) for j in images))
    return {"same_seed": rate(a == b), "mismatched_mean": float(shifted.mean()),
            "mismatched_min": float(shifted.min()), "mismatched_max": float(shifted.max()),
            "mismatched_k1": float(shifted[0]), "chance_from_marginals": marginal,
            "same_seed_over_chance": float(np.mean(a == b) / marginal) if marginal else None}


def point(images: int, cross: np.ndarray) -> dict[str, object]:
    """All controls at one evaluation point."""
    s0, s1 = (per_seed(seed, images) for seed in SEEDS)
    assert np.array_equal(s0["seeds"], s1["seeds"]), "the two nets were evaluated on different sampler seeds"
    assert np.array_equal(s0["optimum_nearest_index"], s1["optimum_nearest_index"]), "different optimum samples"
    both_copy = s0["is_copy"] & s1["is_copy"]
    same = s0["nearest_index"] == s1["nearest_index"]
    q = np.quantile(cross, [0.05, 0.25, 0.5, 0.75, 0.95])
    return {
        "images_seen": images, "sampler_seeds": int(len(s0["seeds"])),
        "nearest_image_between_seeds": same_index(s0["nearest_index"], s1["nearest_index"]),
        "nearest_image_vs_optimum": {f"seed{seed}": same_index(s["nearest_index"], s["optimum_nearest_index"])
                                     for seed, s in zip(SEEDS, (s0, s1))},
        "both_match_optimum": rate((s0["nearest_index"] == s0["optimum_nearest_index"])
                                   & (s1["nearest_index"] == s1["optimum_nearest_index"])),
        "copies": {f"seed{seed}": rate(s["is_copy"]) for seed, s in zip(SEEDS, (s0, s1))},
        "both_copy": rate(both_copy),
        "both_copy_same_image": rate(both_copy & same),
        "same_image_given_both_copy": float(np.mean(same[both_copy])) if both_copy.any() else None,
        "distinct_nearest_images": {f"seed{seed}": int(len(np.unique(s["nearest_index"])))
                                    for seed, s in zip(SEEDS, (s0, s1))},
        "correlation_between_seeds": {"q05": q[0], "q25": q[1], "median": q[2], "q75": q[3], "q95": q[4],
                                      "above_0.9": float(np.mean(cross > 0.9))},
    }


def main() -> None:
    with np.load(HERE / "cross_per_seed.npz") as z:
        cross = {int(key.split("__")[2]): z[key] for key in z.files}
    summary = json.loads((HERE / "summary.json").read_text())
    rp = {row["images_seen"]: {k: row[k] for k in ("rp", "rp_ci", "rp_mismatched", "rp_mismatched_ci",
                                                      "median_similarity")}
          for row in summary["cross"] if row["kind"] == "seeds"}
    points = [{**point(images, cross[images]), "rp_between_seeds": rp[images]} for images in sorted(cross)]
    write_json(HERE / "controls.json", {
        "what": "degenerate controls for RP between training seeds 0 and 1 of unet-64 at N = 16, from the per-seed "
                "arrays only (see controls.py)",
        "points": points,
        "provenance": provenance(),
    })
    for p in points:
        nb = p["nearest_image_between_seeds"]
        print(f"{p['images_seen']:>7,}: same nearest image {nb['same_seed']['rate']:.3f} at the same seed, "
              f"{nb['mismatched_mean']:.3f} at mismatched seeds (marginals {nb['chance_from_marginals']:.3f}); "
              + ", ".join(f"{k} vs optimum {v['same_seed']['rate']:.3f} ({v['mismatched_mean']:.3f})"
                          for k, v in p["nearest_image_vs_optimum"].items())
              + f"; both copy {p['both_copy']['rate']:.3f}, same image {p['both_copy_same_image']['rate']:.3f}")


if __name__ == "__main__":
    main()

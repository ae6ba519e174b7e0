"""Combine the cells of ``mogsim cifar-optimal-gap`` into one set of results, by reading their run folders only.

From every stored evaluation point (``cells/*/evals/<key>/images-*/``) it builds

* one **record** per cell and evaluation point: N, network, width, training seed, images seen, RP to the optimum,
  copy fraction (both with bootstrap intervals), memorized fraction and GL under the similarity, loss, floor and
  loss ratio, and the per-sigma distances to the empirical optimum and the moment-matched Gaussian on noisy training
  and held-out images;
* **RP between widths** (every pair of networks at equal N, training seed and images seen) and **between training
  seeds** (every pair at equal N, network and images seen), from the stored samples and the same similarity;
* the **memorization time** of every cell: the images seen at which its copy fraction first reaches 0.5 and 0.9,
  interpolated linearly in log(images) between the two evaluation points around the crossing; a cell that never
  reaches a level is *right-censored* (the time is above its last point; a linear extrapolation of the copy fraction
  in images from its last two points is stored as ``projected``), one already above it at its first point
  *left-censored*; then per network the fit ``log t = a + b log N`` over the uncensored cells, with a percentile
  bootstrap interval for ``b`` (sampler seeds resampled jointly across all cells and points, censored cells of a
  replicate left out, replicates with fewer than two N left out and counted);
* the **paper's claims** (Figs. 2 and 4, and Bonnaire et al. on training time) judged by stated rules
  (:data:`RULES`) at each cell's last evaluation point.

A point whose samples did not come back from another machine (``per_seed.npz`` without ``per_sample.npz``) counts
in the records, the memorization times and the fits, but not in the RP between cells or the sample grids. The RP
rows of such pairs can be **imported** from an earlier merge's ``cross.csv`` (``--cross-from``,
:func:`read_cross_imports`): each keeps its values and intervals exactly and names its ``source`` file; a row
computed here from samples wins over an imported one, and only rows of cells in this merge are used.

Files written into the experiment folder (all atomically): ``summary.json`` (everything above, the configuration,
deviations from the paper, data and provenance), ``cells.csv``, ``per_sigma.csv``, ``cross.csv``,
``memorization.csv``, the figures (``fig_*.png`` and all of them in ``figures.pdf``) and ``sample_grids.png`` (for
a few N: the net's samples above the optimum's from the same seeds).
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from ...errors import InputError
from ...io import write_image_grid, write_json
from ...metrics.reproducibility import agreement, mismatched_agreement
from ...metrics.similarity import Similarity
from ...runs import read_csv, write_csv
from .cells import METRICS_FILE, Cell, point_dir
from .eval import PER_SAMPLE_FILE, PER_SEED_FILE

FORMAT = "mogsim-cifar-optimal-gap"
SUMMARY_FILE = "summary.json"
CROSS_FILE, CROSS_PER_SEED_FILE = "cross.csv", "cross_per_seed.npz"
#: ``source`` of an RP row computed in this merge from the stored samples.
COMPUTED = "computed"
#: Copy-fraction levels whose crossing time is the memorization time.
MEMORIZATION_LEVELS = (0.5, 0.9)
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
#: Thresholds of the claim rules (stated with every judgment).
HIGH, LOW, NEAR_FLOOR, HIGH_GL, LOW_GL = 0.5, 0.1, 1.1, 0.9, 0.1
RULES = {
    "final": "each cell is judged at its last stored evaluation point (cells of one N may differ in budget; the "
             "wider-net comparison uses equal budgets)",
    "rp_falls": f"yes when every network has RP to the optimum >= {HIGH:g} at the smallest N and <= {LOW:g} at the "
                "largest; partly when some of these hold; no when none does",
    "wider_closer": "at equal N and seed and the most images seen both were evaluated at: yes when the widest "
                    "network's RP to the optimum is >= the narrowest's at every (N, seed) where either is above 0; "
                    "partly when at some; no when at none",
    "loss_floor": f"yes when the loss ratio at the smallest N is <= {NEAR_FLOOR:g} for every network; partly when it "
                  "is below the ratio at the largest N (the net moves towards the floor) but above; no otherwise",
    "rp_widths": f"yes when the mean RP between widths is lowest at an interior N and >= {HIGH:g} at both ends; partly "
                 "when one of the two holds; no when neither",
    "gl_rises": f"yes when every network has GL <= {LOW_GL:g} at the smallest N and >= {HIGH_GL:g} at the largest; "
                "partly when some of these hold; no when none does",
    "gl_later": "yes when the N at which GL first reaches 0.5 (log-interpolated) is at least as large for the widest "
                "network as for the narrowest; no when smaller; not tested when either never crosses",
    "time_grows": "yes when the bootstrap interval of the fitted exponent b (t ~ N^b, copy level 0.5) lies above 0; "
                  "no when it lies below or at 0; partly when b > 0 but the interval includes 0",
}
ZHANG = "Zhang et al. (2024)"


# -- reading the cells ----------------------------------------------------------------------------------------------
@dataclass
class PointResult:
    """One cell at one stored evaluation point."""

    cell: Cell
    images: int
    steps: int
    folder: Path
    metrics: dict[str, Any]
    final: bool

    @property
    def has_samples(self) -> bool:
        """Whether the samples are stored (not when only ``per_seed.npz`` came back from another machine)."""
        return (self.folder / PER_SAMPLE_FILE).is_file()

    def arrays(self, *names: str) -> list[np.ndarray]:
        """Stored per-seed arrays (or samples) of this point: from ``per_sample.npz``, else ``per_seed.npz``."""
        for file in (PER_SAMPLE_FILE, PER_SEED_FILE):
            if (self.folder / file).is_file():
                with np.load(self.folder / file) as z:
                    if all(name in z.files for name in names):
                        return [z[name] for name in names]
        raise InputError(f"out: {self.folder} has metrics.json but no {PER_SAMPLE_FILE} or {PER_SEED_FILE} with "
                         f"{', '.join(names)}; copy that file back beside it, or move the cell out of the folder",
                         parameter="out")


def read_results(out: Path, cells: Sequence[Cell], key: str) -> list[PointResult]:
    """The stored evaluation points of ``cells`` (missing ones are skipped)."""
    results = []
    for cell in cells:
        for point in cell.points:
            folder = point_dir(out, cell, key, point)
            if (folder / METRICS_FILE).is_file():
                metrics = json.loads((folder / METRICS_FILE).read_text())
                results.append(PointResult(cell, point.images, point.steps, folder, metrics,
                                           point.steps == cell.final_steps))
    return results


def last_points(results: Sequence[PointResult]) -> dict[str, PointResult]:
    """Each cell's last stored evaluation point, by cell name."""
    out: dict[str, PointResult] = {}
    for r in results:
        if r.cell.name not in out or r.images > out[r.cell.name].images:
            out[r.cell.name] = r
    return out


def record(r: PointResult) -> dict[str, Any]:
    """The summary record of one cell at one evaluation point."""
    m = r.metrics
    per_sigma = m["per_sigma"]
    return {
        "n": r.cell.n, "arch": r.cell.arch, "width": r.cell.model_channels, "net": r.cell.net, "seed": r.cell.seed,
        "steps": r.steps, "images_seen": r.images, "final": r.final,
        "rp_optimum": m["rp_optimum"], "rp_optimum_ci": m["rp_optimum_ci"],
        "copy_fraction": m["copy_fraction"], "copy_fraction_ci": m["copy_fraction_ci"],
        "memorized_fraction": m["memorized_fraction"], "gl": m["gl"],
        "copy_fraction_optimum": m["copy_fraction_optimum"], "median_nn_ratio": m["median_nn_ratio"],
        "loss": m["loss"], "loss_floor": m["loss_floor"], "loss_ratio": m["loss_ratio"],
        "sigmas": per_sigma["sigmas"], "distance": per_sigma["distance"],
        "eval_seconds": m["timing_s"]["total"], "eval_precision": m.get("dtypes", {}).get("net_precision", "fp32"),
        "cell": r.cell.name,
    }


# -- cross-cell RP --------------------------------------------------------------------------------------------------
def cross_rp(results: Sequence[PointResult], backend: Similarity, *, level: float = 0.95,
             resamples: int = 2000, seed: int = 0) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """RP between widths (pairs of networks at equal N, seed, images) and between training seeds (pairs of seeds at
    equal N, network, images), with per-seed similarities (keyed ``<kind>/<n>/<images>/<a>/<b>``). Each row also
    carries its degenerate control ``rp_mismatched``: seed i of one net against seed i + 1 of the other, near 0 when
    the metric tells the nets' different samples apart (a high RP with a high control says nothing)."""
    groups: dict[tuple[Any, ...], list[PointResult]] = defaultdict(list)
    for r in (r for r in results if r.has_samples):
        groups[("widths", r.cell.n, r.images, r.cell.seed)].append(r)
        groups[("seeds", r.cell.n, r.images, r.cell.net)].append(r)
    rows, per_seed = [], {}
    cache: dict[Path, torch.Tensor] = {}

    def samples(r: PointResult) -> torch.Tensor:
        if r.folder not in cache:
            cache[r.folder] = torch.from_numpy(r.arrays("samples")[0]).to(torch.float64).clamp(-1.0, 1.0)
        return cache[r.folder]

    for (kind, n, images, shared), members in sorted(groups.items(), key=lambda kv: str(kv[0])):
        members = sorted(members, key=lambda r: (r.cell.model_channels, r.cell.net, r.cell.seed))
        for a, b in combinations(members, 2):
            agree = agreement(samples(a), samples(b), backend, level=level, resamples=resamples, seed=seed)
            control = (mismatched_agreement(samples(a), samples(b), backend, level=level, resamples=resamples,
                                            seed=seed) if samples(a).shape[0] > 1 else None)
            name_a, name_b = (a.cell.net, b.cell.net) if kind == "widths" else (a.cell.seed, b.cell.seed)
            rows.append({"kind": kind, "n": n, "images_seen": images,
                         "seed": shared if kind == "widths" else None, "net": shared if kind == "seeds" else None,
                         "a": name_a, "b": name_b,
                         "width_a": a.cell.model_channels, "width_b": b.cell.model_channels,
                         "rp": agree.rp, "rp_ci": list(agree.ci),
                         "median_similarity": float(np.median(agree.similarity)),
                         "rp_mismatched": None if control is None else control.rp,
                         "rp_mismatched_ci": None if control is None else list(control.ci),
                         "final": a.final and b.final})
            per_seed[per_seed_key(rows[-1])] = agree.similarity
    return rows, per_seed


def per_seed_key(row: dict[str, Any]) -> str:
    """The key of an RP row's per-seed similarities in ``cross_per_seed.npz`` (``/`` written as ``__``): kind, N,
    images, the pair, then what the pair shares (``seed<k>`` between widths, the net between seeds), so that two
    training seeds' width pairs (or two nets' seed pairs) at one point keep their own arrays."""
    shared = f"seed{row['seed']}" if row["kind"] == "widths" else row["net"]
    return f"{legacy_per_seed_key(row)}/{shared}"


def legacy_per_seed_key(row: dict[str, Any]) -> str:
    """The key that merges before the shared field was added wrote (without it): still read from such files where it
    names one row only."""
    return f"{row['kind']}/{row['n']}/{row['images_seen']}/{row['a']}/{row['b']}"


def _row_identity(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["kind"], row["n"], row["images_seen"], row.get("seed"), row.get("net"), str(row["a"]), str(row["b"]))


# -- RP rows of an earlier merge --------------------------------------------------------------------------------------
@dataclass
class CrossImport:
    """The RP rows (and per-seed similarities, when stored) of one earlier merge's ``cross.csv``."""

    file: Path
    rows: list[dict[str, Any]]
    per_seed: dict[str, np.ndarray]
    per_seed_file: Path | None


#: Columns an imported ``cross.csv`` must have (``seed`` for rows between widths, ``net`` for rows between seeds).
CROSS_COLUMNS = ("kind", "n", "images_seen", "seed", "net", "a", "b", "rp", "rp_lo", "rp_hi")


def read_cross_imports(paths: Sequence[str | Path]) -> list[CrossImport]:
    """Read every ``--cross-from`` path (a ``cross.csv`` or the folder holding it) completely, before anything is
    written; raise :class:`InputError` naming the path and the fix for a missing, unreadable or incomplete file."""
    return [_read_cross_import(Path(p)) for p in paths]


def _read_cross_import(path: Path) -> CrossImport:
    import csv

    def bad(why: str) -> InputError:
        return InputError(f"cross_from={str(path)!r}: {why}", parameter="cross_from")

    file = path / CROSS_FILE if path.is_dir() else path
    if not file.is_file():
        raise bad(f"no {CROSS_FILE} there; pass an earlier merge's {CROSS_FILE} or the folder holding it")
    try:
        raw = read_csv(file)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise bad(f"cannot read {file.name} ({type(exc).__name__}: {exc})") from None
    raw = [r for r in raw if any((v or "").strip() for v in r.values() if isinstance(v, str))]
    missing = [c for c in CROSS_COLUMNS if c not in raw[0]] if raw else []
    if missing:  # a merge without pairs writes a bare "kind" header: nothing to import, not an error
        raise bad(f"{file.name} lacks the column(s) {', '.join(missing)}; pass the cross.csv that "
                  "`mogsim cifar-optimal-gap --merge` wrote")
    rows = []
    for line, r in enumerate(raw, start=2):
        try:
            rows.append(_cross_row(r, str(file)))
        except (KeyError, ValueError) as exc:
            raise bad(f"{file.name} line {line}: {exc}; pass an unedited cross.csv of a merge") from None
    per_seed, npz = {}, file.parent / CROSS_PER_SEED_FILE
    if npz.is_file():
        try:
            with np.load(npz) as z:
                per_seed = {k.replace("__", "/"): z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise bad(f"cannot read {npz.name} beside it ({type(exc).__name__}: {exc}); move it away or copy it "
                      "again") from None
    return CrossImport(file, rows, per_seed, npz if npz.is_file() else None)


def _cross_row(r: dict[str, str], source: str) -> dict[str, Any]:
    """One row of a ``cross.csv`` back in the summary's types."""
    def number(key: str) -> float | None:
        text = (r.get(key) or "").strip()
        return float(text) if text else None

    kind = r["kind"].strip()
    if kind not in ("widths", "seeds"):
        raise ValueError(f"kind {kind!r} is neither widths nor seeds")
    pair = (int(r["a"]), int(r["b"])) if kind == "seeds" else (r["a"], r["b"])
    lo, hi = number("rp_mismatched_lo"), number("rp_mismatched_hi")
    return {"kind": kind, "n": int(r["n"]), "images_seen": int(r["images_seen"]),
            "seed": int(r["seed"]) if kind == "widths" else None, "net": r["net"] if kind == "seeds" else None,
            "a": pair[0], "b": pair[1],
            "width_a": int(r["width_a"]) if r.get("width_a") else None,
            "width_b": int(r["width_b"]) if r.get("width_b") else None,
            "rp": float(r["rp"]), "rp_ci": [float(r["rp_lo"]), float(r["rp_hi"])],
            "median_similarity": number("median_similarity"), "rp_mismatched": number("rp_mismatched"),
            "rp_mismatched_ci": None if lo is None or hi is None else [lo, hi],
            "final": (r.get("final") or "").strip() == "True",
            "source": source if (r.get("source") or COMPUTED).strip() in ("", COMPUTED) else r["source"].strip()}


def add_imported(cross: list[dict[str, Any]], per_seed: dict[str, np.ndarray], imports: Sequence[CrossImport],
                 records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add to ``cross`` (computed here) the imported rows of pairs not computed here whose two cells are in
    ``records`` at that point (first import first), with their per-seed similarities; their ``final`` follows this
    merge's cells. Returns what each import gave (written to the summary)."""
    final = {(r["n"], r["net"], r["seed"], r["images_seen"]): r["final"] for r in records}

    def ends(row: dict[str, Any]) -> list[tuple[Any, ...]]:
        if row["kind"] == "widths":
            return [(row["n"], net, row["seed"], row["images_seen"]) for net in (row["a"], row["b"])]
        return [(row["n"], row["net"], seed, row["images_seen"]) for seed in (row["a"], row["b"])]

    taken = {_row_identity(c): c["source"] for c in cross}
    used = []
    for imp in imports:
        counts = {"used": 0, "computed_here": 0, "cells_not_here": 0, "earlier_import": 0}
        legacy_keys = Counter(legacy_per_seed_key(row) for row in imp.rows)
        for row in imp.rows:
            identity = _row_identity(row)
            if identity in taken:
                counts["computed_here" if taken[identity] == COMPUTED else "earlier_import"] += 1
            elif not all(e in final for e in ends(row)):
                counts["cells_not_here"] += 1
            else:
                cross.append({**row, "final": all(final[e] for e in ends(row))})
                taken[identity] = row["source"]
                counts["used"] += 1
                stored = imp.per_seed.get(per_seed_key(row))
                if stored is None and legacy_keys[legacy_per_seed_key(row)] == 1:
                    stored = imp.per_seed.get(legacy_per_seed_key(row))
                if stored is not None:
                    per_seed[per_seed_key(row)] = stored
        used.append({"file": str(imp.file), "per_seed_file": None if imp.per_seed_file is None
                     else str(imp.per_seed_file), "rows": len(imp.rows), **counts})
    cross.sort(key=lambda c: (c["kind"], c["n"], c["images_seen"], str(c.get("seed")), str(c.get("net")),
                              str(c["a"]), str(c["b"])))
    return used


# -- memorization time ----------------------------------------------------------------------------------------------
def crossing(images: Sequence[float], fractions: Sequence[float], level: float) -> dict[str, Any]:
    """When ``fractions`` (at ascending ``images``) first reach ``level``: ``time`` (log-interpolated) or None,
    ``censored`` (None, ``left``: at or above it at the first point, ``right``: never reached) and ``bound`` (the
    first or last point for a censored series)."""
    for k, f in enumerate(fractions):
        if f >= level:
            if k == 0:
                return {"time": None, "censored": "left", "bound": float(images[0])}
            f0, f1 = fractions[k - 1], f
            x0, x1 = math.log(images[k - 1]), math.log(images[k])
            return {"time": math.exp(x0 + (level - f0) / (f1 - f0) * (x1 - x0)), "censored": None, "bound": None}
    return {"time": None, "censored": "right", "bound": float(images[-1]) if len(images) else None}


def projection(images: Sequence[float], fractions: Sequence[float], level: float) -> float | None:
    """For a series that never reached ``level``: the images at which the straight line through its last two
    points (copy fraction against images seen) would reach it, or None when that line does not rise."""
    if len(images) < 2 or fractions[-1] >= level:
        return None
    slope = (fractions[-1] - fractions[-2]) / (images[-1] - images[-2])
    return float(images[-1] + (level - fractions[-1]) / slope) if slope > 0 else None


def fit_power(ns: Sequence[float], times: Sequence[float]) -> tuple[float, float] | None:
    """Least-squares ``log t = a + b log N``: (b, a), or None with fewer than two distinct N."""
    if len(set(ns)) < 2:
        return None
    b, a = np.polyfit(np.log(np.asarray(ns, dtype=float)), np.log(np.asarray(times, dtype=float)), 1)
    return float(b), float(a)


def memorization(results: Sequence[PointResult], *, levels: Sequence[float] = MEMORIZATION_LEVELS,
                 resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED, ci_level: float = 0.95
                 ) -> dict[str, Any]:
    """Memorization times per cell and the per-network fits against N (see the module docs)."""
    series: dict[str, list[PointResult]] = defaultdict(list)
    for r in results:
        series[r.cell.name].append(r)
    cells, flags = [], {}
    for name, points in series.items():
        points.sort(key=lambda r: r.images)
        cell = points[0].cell
        images = [float(p.images) for p in points]
        fractions = [float(p.metrics["copy_fraction"]) for p in points]
        flags[name] = (cell, images, np.stack([p.arrays("is_copy")[0].astype(bool) for p in points]))
        for lvl in levels:
            cross = crossing(images, fractions, lvl)
            cells.append({"n": cell.n, "net": cell.net, "width": cell.model_channels, "seed": cell.seed,
                          "level": lvl, **cross,
                          "projected": projection(images, fractions, lvl) if cross["censored"] == "right" else None,
                          "points": len(points), "last_images": images[-1], "last_copy_fraction": fractions[-1]})
    fits = []
    nets = sorted({(c["width"], c["net"]) for c in cells})
    sizes = {arr.shape[1] for _, _, arr in flags.values()}
    rng = np.random.Generator(np.random.PCG64(seed))
    draws = [rng.integers(0, min(sizes), min(sizes)) for _ in range(resamples)] if len(sizes) == 1 else []
    for lvl in levels:
        for _, net in nets:
            own = [c for c in cells if c["net"] == net and c["level"] == lvl]
            done = [c for c in own if c["time"] is not None]
            fit = fit_power([c["n"] for c in done], [c["time"] for c in done])
            slopes = []
            for idx in draws:
                ns, times = [], []
                for cell, images, arr in (v for v in flags.values() if v[0].net == net):
                    t = crossing(images, arr[:, idx].mean(axis=1).tolist(), lvl)["time"]
                    if t is not None:
                        ns.append(cell.n)
                        times.append(t)
                boot = fit_power(ns, times)
                if boot is not None:
                    slopes.append(boot[0])
            tail = (1 - ci_level) / 2
            ci = [float(np.quantile(slopes, tail)), float(np.quantile(slopes, 1 - tail))] if slopes else None
            fits.append({"net": net, "level": lvl, "exponent": fit[0] if fit else None,
                         "log_prefactor": fit[1] if fit else None, "exponent_ci": ci, "ci_level": ci_level,
                         "cells_fitted": len(done), "cells_censored": len(own) - len(done),
                         "ns_fitted": sorted({c["n"] for c in done}), "bootstrap_resamples": resamples,
                         "bootstrap_used": len(slopes)})
    return {"levels": list(levels), "cells": cells, "fits": fits,
            "rule": "time = images seen at which the copy fraction first reaches the level, linear in log(images) "
                    "between the evaluation points around it; censored cells are not fitted; fit log t = a + b log N "
                    "per network; percentile bootstrap of b over sampler seeds resampled jointly (seed "
                    f"{seed}); projected = the straight line (copy fraction against images) through the last two "
                    "points, for right-censored cells"}


# -- the paper's claims ------------------------------------------------------------------------------------------------
def _verdict(hits: int, total: int) -> str:
    return "yes" if total and hits == total else "partly" if hits else "no"


def _fmt(x: float | None, digits: int = 2) -> str:
    """A fraction with ``digits`` decimals; large values (loss ratios) with three significant digits."""
    if x is None:
        return "-"
    return f"{x:.3g}" if abs(x) >= 10 else f"{x:.{digits}f}"


def claims(records: Sequence[dict[str, Any]], cross: Sequence[dict[str, Any]], mem: dict[str, Any]
           ) -> list[dict[str, Any]]:
    """The paper's claims with what we measured and the judgment by :data:`RULES` (at each cell's last point)."""
    last = [r for r in records if r["is_last"]]
    ns = sorted({r["n"] for r in last})
    nets = sorted({(r["width"], r["net"]) for r in last})
    out = []
    if not last:
        return out
    small, large = ns[0], ns[-1]

    def at(n: int, net: str, key: str) -> list[float]:
        return [r[key] for r in last if r["n"] == n and r["net"] == net]

    def by_net(key: str, n: int) -> str:
        return "; ".join(f"{net} {', '.join(_fmt(v) for v in at(n, net, key))}" for _, net in nets if at(n, net, key))

    def at_ends(key: str) -> str:
        """``key`` at the smallest and the largest N (once when they are the same N)."""
        return "; ".join(f"at N = {n}: {by_net(key, n)}" for n in dict.fromkeys((small, large)))

    tested = len(ns) > 1
    memorizing = any(r["copy_fraction"] >= HIGH for r in last)
    untested = "one N only" if not tested else None if memorizing else (
        f"no cell memorizes at its budget (copy fraction < {HIGH:g} everywhere): the small-N end is not reached")
    conds = [v >= HIGH for _, net in nets for v in at(small, net, "rp_optimum")]
    conds += [v <= LOW for _, net in nets for v in at(large, net, "rp_optimum")]
    out.append({"paper": f"The fraction of seeds on which the net's sample and the empirical optimum's sample are the "
                         f"same image is high at small N and falls to about 0 as N grows ({ZHANG}, Fig. 4 left).",
                "measured": f"RP to the optimum {at_ends('rp_optimum')}",
                "agrees": _verdict(sum(conds), len(conds)) if untested is None else "not tested",
                "basis": untested or RULES["rp_falls"]})
    if len(nets) > 1:
        narrow, wide = nets[0][1], nets[-1][1]
        pairs = []  # at equal N and seed, at the most images seen that both networks were evaluated at
        for n, seed in sorted({(r["n"], r["seed"]) for r in records}):
            rp = {net: {r["images_seen"]: r["rp_optimum"] for r in records
                        if r["net"] == net and r["n"] == n and r["seed"] == seed} for net in (wide, narrow)}
            common = set(rp[wide]) & set(rp[narrow])
            if common:
                images = max(common)
                pairs.append((n, images, rp[wide][images], rp[narrow][images]))
        informative = [(a, b) for _, _, a, b in pairs if max(a, b) > 0]
        out.append({"paper": f"A wider net stays closer to the empirical optimum at every N ({ZHANG}, Fig. 4 left).",
                    "measured": f"RP to the optimum, {wide} vs {narrow}: "
                                + "; ".join(f"N = {n} at {images:,} images: {_fmt(a)} vs {_fmt(b)}"
                                            for n, images, a, b in pairs),
                    "agrees": _verdict(sum(a >= b for a, b in informative), len(informative)) if informative
                    else "not tested",
                    "basis": RULES["wider_closer"] if informative else "both RP are 0 at every common point"})
    else:
        out.append({"paper": f"A wider net stays closer to the empirical optimum at every N ({ZHANG}, Fig. 4 left).",
                    "measured": f"one width ({nets[0][1]})", "agrees": "not tested", "basis": "one width only"})
    ratio_small = [v for _, net in nets for v in at(small, net, "loss_ratio")]
    ratio_large = [v for _, net in nets for v in at(large, net, "loss_ratio")]
    if untested is not None:
        verdict = "not tested"
    elif all(v <= NEAR_FLOOR for v in ratio_small):
        verdict = "yes"
    else:
        verdict = "partly" if max(ratio_small) < min(ratio_large) else "no"
    out.append({"paper": f"The empirical optimum's loss is the floor of the training loss, which a memorizing net "
                         f"approaches ({ZHANG}, Fig. 4 right).",
                "measured": f"loss over its floor {at_ends('loss_ratio')}",
                "agrees": verdict, "basis": untested or RULES["loss_floor"]})
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}  # each pair of widths at its last common point
    for c in cross:
        k = (c["n"], c["a"], c["b"], c.get("seed"))
        if c["kind"] == "widths" and (k not in latest or c["images_seen"] > latest[k]["images_seen"]):
            latest[k] = c
    widths_rp = defaultdict(list)
    for c in latest.values():
        widths_rp[c["n"]].append(c["rp"])
    if len(widths_rp) >= 3:
        xs = sorted(widths_rp)
        means = [float(np.mean(widths_rp[n])) for n in xs]
        lowest = int(np.argmin(means))
        interior = 0 < lowest < len(xs) - 1
        ends = means[0] >= HIGH and means[-1] >= HIGH
        measured = "mean RP between widths " + "; ".join(f"N = {n}: {_fmt(m)}" for n, m in zip(xs, means))
        if untested is not None:  # the memorization end of the curve is not reached: nothing to judge there
            verdict, basis = "not tested", untested
        else:
            verdict = "yes" if interior and ends else "partly" if interior or ends else "no"
            basis = RULES["rp_widths"]
    else:
        verdict, measured = "not tested", "needs two or more networks at three or more N"
        basis = "not enough cells"
    out.append({"paper": f"RP between widths at equal N is high in the memorization and the generalization regime "
                         f"and lowest in between ({ZHANG}, Fig. 2).", "measured": measured, "agrees": verdict,
                "basis": basis})
    conds = [v <= LOW_GL for _, net in nets for v in at(small, net, "gl")]
    conds += [v >= HIGH_GL for _, net in nets for v in at(large, net, "gl")]
    out.append({"paper": f"GL rises from about 0 to about 1 as N grows ({ZHANG}, Fig. 2).",
                "measured": f"GL {at_ends('gl')}",
                "agrees": _verdict(sum(conds), len(conds)) if untested is None else "not tested",
                "basis": untested or RULES["gl_rises"]})
    if len(nets) > 1 and tested:
        cross_n = {}
        for _, net in (nets[0], nets[-1]):
            own = [n for n in ns if at(n, net, "gl")]
            gl = [float(np.mean(at(n, net, "gl"))) for n in own]
            cross_n[net] = crossing([float(n) for n in own], gl, 0.5)["time"] if len(own) > 1 else None
        a, b = cross_n[nets[0][1]], cross_n[nets[-1][1]]
        verdict = "not tested" if a is None or b is None else "yes" if b >= a else "no"
        out.append({"paper": f"GL rises at larger N for wider nets ({ZHANG}, Fig. 2).",
                    "measured": f"N at GL = 0.5: {nets[0][1]} {_fmt(a, 0)}, {nets[-1][1]} {_fmt(b, 0)}",
                    "agrees": verdict, "basis": RULES["gl_later"]})
    fits = [f for f in mem["fits"] if f["level"] == MEMORIZATION_LEVELS[0] and f["exponent"] is not None]
    if fits:
        verdicts = []
        for f in fits:
            ci = f["exponent_ci"]
            if ci is None:
                verdicts.append("not judged")
            elif ci[0] > 0:
                verdicts.append("yes")
            elif ci[1] <= 0:
                verdicts.append("no")
            else:
                verdicts.append("partly" if f["exponent"] > 0 else "no")
        verdict = verdicts[0] if len(set(verdicts)) == 1 else "partly"
        measured = "; ".join(f"{f['net']}: b = {_fmt(f['exponent'])}"
                             + (f" [{_fmt(f['exponent_ci'][0])}, {_fmt(f['exponent_ci'][1])}]"
                                if f["exponent_ci"] else "") + f" over N = {', '.join(map(str, f['ns_fitted']))}"
                             for f in fits)
        basis = RULES["time_grows"]
    else:
        verdict, measured, basis = "not tested", "no network reached a copy fraction of 0.5 at two N", "no fit"
    out.append({"paper": "The training time a network needs to memorize grows with N (Bonnaire et al., 2025; "
                         "roughly linearly).", "measured": measured, "agrees": verdict, "basis": basis})
    return out


# -- writing the combined results ------------------------------------------------------------------------------------
def combine(out: Path, cells: Sequence[Cell], key: str, backend: Similarity, meta: dict[str, Any],
            imports: Sequence[CrossImport] = ()) -> dict[str, Any]:
    """Read every stored evaluation point of ``cells`` and write the combined results into ``out`` (see the module
    docs); returns the summary. ``meta`` is stored as is (configuration, deviations, data, provenance, ...);
    ``imports`` are RP rows of earlier merges (:func:`read_cross_imports`)."""
    results = read_results(out, cells, key)
    last = last_points(results)
    records = []
    for r in sorted(results, key=lambda r: (r.cell.n, r.cell.model_channels, r.cell.net, r.cell.seed, r.images)):
        records.append({**record(r), "is_last": last[r.cell.name] is r})
    cross, per_seed = cross_rp(results, backend)
    for c in cross:
        c["source"] = COMPUTED
    imported = add_imported(cross, per_seed, imports, records)
    mem = memorization(results)
    expected = sum(len(c.points) for c in cells)
    summary = {
        "format": FORMAT, "version": 1, **meta,
        "cells_total": len(cells), "cells_with_results": len(last), "points_total": expected,
        "points_done": len(results), "complete": len(results) == expected,
        "missing": [{"cell": c.name, "images_seen": p.images} for c in cells for p in c.points
                    if not (point_dir(out, c, key, p) / METRICS_FILE).is_file()],
        "records": records, "cross": cross, "cross_imports": imported, "memorization": mem,
        "paper_claims": claims(records, cross, mem),
        "rules": RULES,
    }
    write_json(out / SUMMARY_FILE, summary)
    write_csv(out / "cells.csv", [_cells_row(r) for r in records])
    write_csv(out / "per_sigma.csv", _per_sigma_rows(records))
    write_csv(out / CROSS_FILE, [_cross_csv_row(c) for c in cross] or [{"kind": ""}])
    write_csv(out / "memorization.csv", mem["cells"] or [{"n": ""}])
    if per_seed:
        from ...io import write_npz

        write_npz(out / CROSS_PER_SEED_FILE, **{k.replace("/", "__"): v for k, v in per_seed.items()})
    summary["figures"] = draw_figures(out, summary)
    summary["sample_grids"] = write_sample_grids(out, results)
    write_json(out / SUMMARY_FILE, summary)
    return summary


def _cross_csv_row(c: dict[str, Any]) -> dict[str, Any]:
    """A row of ``cross.csv``: the summary's row with its intervals as ``_lo``/``_hi`` columns, ``source`` last."""
    control = c.get("rp_mismatched_ci") or (None, None)
    row = {k: v for k, v in c.items() if k not in ("rp_ci", "rp_mismatched_ci", "source")}
    return {**row, "rp_lo": c["rp_ci"][0], "rp_hi": c["rp_ci"][1], "rp_mismatched_lo": control[0],
            "rp_mismatched_hi": control[1], "source": c["source"]}


def _cells_row(r: dict[str, Any]) -> dict[str, Any]:
    keys = ("n", "net", "arch", "width", "seed", "steps", "images_seen", "final", "is_last", "rp_optimum",
            "copy_fraction", "memorized_fraction", "gl", "loss", "loss_floor", "loss_ratio", "median_nn_ratio",
            "copy_fraction_optimum", "eval_seconds")
    row = {k: r[k] for k in keys}
    row.update(rp_optimum_lo=r["rp_optimum_ci"][0], rp_optimum_hi=r["rp_optimum_ci"][1],
               copy_fraction_lo=r["copy_fraction_ci"][0], copy_fraction_hi=r["copy_fraction_ci"][1], cell=r["cell"])
    return row


def _per_sigma_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in records:
        for query_set, refs in r["distance"].items():
            for ref, values in refs.items():
                for sigma, d in zip(r["sigmas"], values):
                    rows.append({"n": r["n"], "net": r["net"], "width": r["width"], "seed": r["seed"],
                                 "images_seen": r["images_seen"], "is_last": r["is_last"], "query_set": query_set,
                                 "reference": ref, "sigma": sigma, "distance": d})
    return rows or [{"n": ""}]


def draw_figures(out: Path, summary: dict[str, Any]) -> list[str] | str:
    """The figures as ``fig_*.png`` and together in ``figures.pdf``; a note instead when matplotlib is missing."""
    try:
        from matplotlib.backends.backend_pdf import PdfPages

        from ...report import figures
    except ImportError as exc:  # a bare GPU image: the results stay, `mogsim report` draws them later
        return f"not drawn ({exc})"
    from ...io import atomic_path

    if not summary["records"]:
        return []
    drawn = {"fig_optimum_vs_n": figures.gap_vs_n_figure(summary["records"], summary["cross"]),
             "fig_training_time": figures.gap_training_figure(summary["records"], summary["memorization"]),
             "fig_memorization_time": figures.memorization_time_figure(summary["memorization"]),
             "fig_per_sigma": figures.gap_per_sigma_figure(_per_sigma_rows(summary["records"]))}
    for name, fig in drawn.items():
        with atomic_path(out / f"{name}.png") as tmp:
            fig.savefig(tmp, format="png", dpi=150)
    with atomic_path(out / "figures.pdf") as tmp:
        with PdfPages(tmp) as pdf:
            for fig in drawn.values():
                pdf.savefig(fig)
    return [f"{name}.png" for name in drawn] + ["figures.pdf"]


#: Samples per row of the sample grids, and at most this many N shown.
GRID_COLUMNS, GRID_NS = 8, 4


def write_sample_grids(out: Path, results: Sequence[PointResult]) -> dict[str, Any] | None:
    """``sample_grids.png``: for up to :data:`GRID_NS` N (smallest to largest), the samples of the cell trained
    longest (then the widest network) at its last point (one row) above the empirical optimum's from the same seeds
    (the next row)."""
    last = last_points([r for r in results if r.has_samples])
    if not last:
        return None
    by_n: dict[int, PointResult] = {}
    for r in last.values():
        best = by_n.get(r.cell.n)
        rank = (r.images, r.cell.model_channels, -r.cell.seed)
        if best is None or rank > (best.images, best.cell.model_channels, -best.cell.seed):
            by_n[r.cell.n] = r
    ns = sorted(by_n)
    if len(ns) > GRID_NS:
        ns = [ns[round(i * (len(ns) - 1) / (GRID_NS - 1))] for i in range(GRID_NS)]
    rows, shown = [], []
    for n in ns:
        r = by_n[n]
        net, opt = r.arrays("samples", "optimum_samples")
        k = min(GRID_COLUMNS, len(net), len(opt))
        rows += [net[:k], opt[:k]]
        shown.append({"n": n, "net": r.cell.net, "seed": r.cell.seed, "images_seen": r.images, "columns": k})
    k = min(len(row) for row in rows)
    write_image_grid(out / "sample_grids.png", np.concatenate([np.clip(row[:k], -1, 1) for row in rows]),
                     columns=k, limit=len(rows) * k)
    return {"file": "sample_grids.png", "rows": "for each N: the net's samples, then the optimum's from the same "
            "sampler seeds (the first seeds)", "shown": shown}

"""The 2.46-Mimg grid's transition by several measures, along training time and under several copy rules.

    python reports/unet-molrg-grid-2m5/measures.py      # reads this folder, writes crossings.csv, copy_rules.csv,
                                                        # measures.json and crossing_vs_images.png / .pdf here

Everything comes from the files the GPU calls returned (``sweep_time.csv``: each cell's aggregate measures at the 9
time-axis steps; ``raw-2.tar.gz``: each cell's ``config.json`` and per-sample ``samples.npz`` at the last step).

* **Crossings along training time** (``crossings.csv``): per step, per d and pooled (the mean of the d curves, as
  :func:`mogsim.analysis.collapse.collapse` pools), the N_k / d where a measure first reaches its level
  (:func:`mogsim.analysis.transitions.crossing`: linear in log N_k / d between grid points), with a 95% interval from a
  parametric bootstrap of the sampling error (each cell's fraction redrawn as Binomial(256, p) / 256; it does not
  cover the spread between training seeds, which was not measured), and the collapse ratio max / min over d.
  Measures: GL = 1 - copies (ratio rule d1/d2 < 1/3) reaching 0.9 and 0.5; kappa (copies net of the true sampler's
  chance copies) falling to 0.1; and three that do not use a copy rule: RP(net, true-score sampler) reaching 0.5
  and 0.8, the worst relative error against D_true on fresh queries falling to 0.1, and the first N_k / d judged
  generalizing.
* **Crossing against images seen** (``measures.json: fits``): log crossing = a + b log(images) by least squares over
  the steps whose crossing is defined and where at least half of the samples lie on a subspace (a net that has not
  learned copies nothing); b's interval from the same bootstrap; and the local exponents between successive steps.
* **Copy rules** (``copy_rules.csv``, last step only: per-sample arrays exist only there): GL under the ratio rule at
  1/4, 1/3 and 1/2 (the true sampler's own rate under the same rule is the chance), and under an absolute rule of
  the kind the authors use for images (largest cosine similarity to a training point above tau = 0.99, 0.995,
  0.999), with its chance measured on 2,048 fresh draws of the true MoLRG. The training sets are regenerated from
  each cell's ``config.json`` (``mogsim.experiments.score_match.run.make_problem``) and checked against the stored
  nearest distances. Reported: raw GL and chance-corrected GL (1 - kappa, kappa = (copies - chance) / (1 - chance)).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import tarfile
from pathlib import Path

import numpy as np
import torch

from mogsim.analysis.transitions import crossing, first_crossings
from mogsim.experiments.score_match.config import ScoreMatchConfig
from mogsim.experiments.score_match.run import make_problem
from mogsim.runs import write_csv

HERE = Path(__file__).resolve().parent
K = 2
SAMPLES = 256          # sampler seeds per cell (config: sample_seeds)
RESAMPLES = 2000       # parametric bootstrap draws
FRESH = 2048           # fresh true-MoLRG draws for the cosine rule's chance
RATIOS = (1 / 4, 1 / 3, 1 / 2)
COSINES = (0.99, 0.995, 0.999)
AUTHORS_IMAGES = 6e6   # paper 2's budget per model, about 6 Mimg (issue 14)
ON_SUBSPACE_MIN = 0.5  # a crossing enters the fit only where at least half of the samples lie on a subspace
# (key, label, level, direction, bootstrapped): the table's measures
MEASURES = [("gl", "GL (ratio 1/3)", 0.9, "up", True), ("gl", "GL (ratio 1/3)", 0.5, "up", True),
            ("kappa", "kappa", 0.1, "down", True), ("rp_net_true", "RP(net, true sampler)", 0.5, "up", True),
            ("rp_net_true", "RP(net, true sampler)", 0.8, "up", True),
            ("worst_rel_true_fresh", "rel. error vs D_true", 0.1, "down", False)]


def _rows() -> list[dict]:
    rows = list(csv.DictReader(open(HERE / "sweep_time.csv")))
    for r in rows:
        r["d"], r["step"] = int(r["rank"]), int(r["step"])
        r["nk_over_d"] = int(r["n"]) / (K * r["d"])
        for key in ("copy_fraction_net", "copy_fraction_true", "kappa", "rp_net_true", "worst_rel_true_fresh",
                    "on_subspace_fraction_net"):
            r[key] = float(r[key])
        r["gl"] = 1.0 - r["copy_fraction_net"]
    return rows


def _draws(at: list[dict], key: str, rng: np.random.Generator) -> np.ndarray:
    """(RESAMPLES, cells) bootstrap draws of a measure: fractions redrawn as Binomial(SAMPLES, p) / SAMPLES."""
    def redraw(p: np.ndarray) -> np.ndarray:
        return rng.binomial(SAMPLES, np.clip(p, 0, 1), size=(RESAMPLES, len(p))) / SAMPLES
    if key == "gl":
        return 1.0 - redraw(np.array([r["copy_fraction_net"] for r in at]))
    if key == "kappa":
        net, chance = (redraw(np.array([r[k] for r in at])) for k in ("copy_fraction_net", "copy_fraction_true"))
        return (net - chance) / np.maximum(1.0 - chance, 1e-12)
    return redraw(np.array([r[key] for r in at]))


def crossings_over_time(rows: list[dict], rng: np.random.Generator) -> list[dict]:
    """One row per (step, measure, level, d or pooled), plus the collapse ratio over d."""
    out = []
    ds = sorted({r["d"] for r in rows})
    for step in sorted({r["step"] for r in rows}):
        at = sorted((r for r in rows if r["step"] == step), key=lambda r: (r["d"], r["nk_over_d"]))
        xs = sorted({r["nk_over_d"] for r in at})
        for key, label, level, direction, boot in MEASURES:
            values = np.array([r[key] for r in at]).reshape(len(ds), len(xs))
            draws = _draws(at, key, rng).reshape(RESAMPLES, len(ds), len(xs)) if boot else None
            found = {}
            for name, curve, sub, cdraws in [
                    *[(str(d), values[i], [r["on_subspace_fraction_net"] for r in at if r["d"] == d],
                       None if draws is None else draws[:, i]) for i, d in enumerate(ds)],
                    ("pooled", values.mean(0), list(np.mean([[r["on_subspace_fraction_net"] for r in at
                                                              if r["d"] == d] for d in ds], 0)),
                     None if draws is None else draws.mean(1))]:
                res = crossing(xs, list(curve), level, direction)
                lo = hi = None
                if cdraws is not None:
                    b = first_crossings(xs, cdraws, level, direction)
                    lo, hi = (float(q) for q in np.quantile(b, [0.025, 0.975], method="inverted_cdf"))
                reached = next((i for i, v in enumerate(curve) if (v >= level if direction == "up" else v <= level)),
                               None)
                found[name] = res["n_star"]
                out.append({"step": step, "images_seen": step * 512, "measure": label, "level": level, "d": name,
                            "nk_over_d": res["n_star"], "status": res["status"], "monotone": res["monotone"],
                            "ci_low": lo, "ci_high": hi,
                            "on_subspace_where_reached": None if reached is None else sub[reached]})
            per_d = [found[str(d)] for d in ds]
            out.append({"step": step, "images_seen": step * 512, "measure": label, "level": level,
                        "d": "max/min over d", "nk_over_d": (max(per_d) / min(per_d)) if None not in per_d else None,
                        "status": "", "monotone": "", "ci_low": None, "ci_high": None,
                        "on_subspace_where_reached": None})
        for d in ds:
            gen = [r["nk_over_d"] for r in at if r["d"] == d and r["verdict"] == "generalizing"]
            out.append({"step": step, "images_seen": step * 512, "measure": "first verdict generalizing", "level": "",
                        "d": str(d), "nk_over_d": min(gen) if gen else None,
                        "status": "crossed" if gen else "not_reached", "monotone": "", "ci_low": None,
                        "ci_high": None, "on_subspace_where_reached": None})
    return out


def fit_against_images(table: list[dict], rows: list[dict], rng_seed: int = 1) -> list[dict]:
    """log crossing = a + b log images per (measure, level, d) over the informative steps; b's bootstrap interval
    (the crossing's draws rebuilt step by step with the same generator) and the local exponents."""
    fits = []
    for key, label, level, direction, boot in MEASURES:
        for d in ("3", "6", "pooled"):
            pts = [t for t in table if t["measure"] == label and t["level"] == level and t["d"] == d
                   and t["status"] == "crossed" and (t["on_subspace_where_reached"] or 0) >= ON_SUBSPACE_MIN]
            if len(pts) < 2:
                fits.append({"measure": label, "level": level, "d": d, "b": None, "points": len(pts)})
                continue
            x, y = np.log([p["images_seen"] for p in pts]), np.log([p["nk_over_d"] for p in pts])
            b, a = np.polyfit(x, y, 1)
            interval = None
            if boot:
                rng = np.random.default_rng(rng_seed)
                steps = [p["step"] for p in pts]
                ys = []
                for step in steps:
                    at = sorted((r for r in rows if r["step"] == step), key=lambda r: (r["d"], r["nk_over_d"]))
                    xs = sorted({r["nk_over_d"] for r in at})
                    ds = sorted({r["d"] for r in at})
                    dr = _draws(at, key, rng).reshape(RESAMPLES, len(ds), len(xs))
                    curves = dr.mean(1) if d == "pooled" else dr[:, ds.index(int(d))]
                    with np.errstate(divide="ignore", invalid="ignore"):  # +-inf: a draw outside the grid
                        ys.append(np.log(first_crossings(xs, curves, level, direction)))
                ys_arr = np.array(ys).T  # (RESAMPLES, points)
                ys_arr = ys_arr[np.isfinite(ys_arr).all(1)]
                interval = [float(q) for q in np.quantile(np.polyfit(x, ys_arr.T, 1)[0], [0.025, 0.975])]
            local = []
            for i in range(len(pts) - 1):
                entry = {"from_images": pts[i]["images_seen"], "to_images": pts[i + 1]["images_seen"],
                         "b": float((y[i + 1] - y[i]) / (x[i + 1] - x[i]))}
                if boot:
                    slopes = (ys_arr[:, i + 1] - ys_arr[:, i]) / (x[i + 1] - x[i])
                    entry["b_interval_95"] = [float(q) for q in np.quantile(slopes, [0.025, 0.975])]
                local.append(entry)
            fits.append({"measure": label, "level": level, "d": d, "b": float(b), "prefactor": float(math.exp(a)),
                         "b_interval_95": interval, "points": len(pts),
                         "images": [p["images_seen"] for p in pts], "crossings": [p["nk_over_d"] for p in pts],
                         "local_b": local})
    return fits


def _cells() -> dict[str, dict]:
    """Each cell's config and per-sample arrays from the archive that holds every cell."""
    cells: dict[str, dict] = {}
    with tarfile.open(HERE / "raw-2.tar.gz") as tar:
        for m in tar.getmembers():
            parts = m.name.split("/")
            if len(parts) == 4 and parts[1] == "cells" and parts[3] in ("config.json", "samples.npz"):
                data = tar.extractfile(m).read()
                cell = cells.setdefault(parts[2], {})
                if parts[3] == "config.json":
                    cell["config"] = json.loads(data)["config"]
                else:
                    cell["samples"] = dict(np.load(io.BytesIO(data)))
    return cells


def copy_rules() -> list[dict]:
    """GL at the last step under the ratio rule (1/4, 1/3, 1/2) and the cosine rule (0.99, 0.995, 0.999)."""
    fields = {f.name for f in dataclasses.fields(ScoreMatchConfig)}
    out = []
    for name, cell in sorted(_cells().items()):
        cfg = ScoreMatchConfig(**{k: v for k, v in cell["config"].items() if k in fields})
        mol, train = make_problem(cfg)
        s = cell["samples"]
        net = torch.from_numpy(s["samples_net"])
        stored = s["net_nn_distance"]
        regenerated = torch.cdist(net, train).min(1).values.numpy()
        if not np.allclose(regenerated, stored, rtol=1e-9, atol=1e-9):
            raise SystemExit(f"{name}: the regenerated training set does not give the stored nearest distances")
        fresh, _ = mol.sample(FRESH, seed=cfg.seeds()["training_set"] + 1)
        unit = torch.nn.functional.normalize(train, dim=1)
        cos_net = (torch.nn.functional.normalize(net, dim=1) @ unit.T).max(1).values.numpy()
        cos_fresh = (torch.nn.functional.normalize(fresh, dim=1) @ unit.T).max(1).values.numpy()
        rules = [(f"ratio d1/d2 < {t:.3g}", s["net_nn_ratio"] < t, s["true_nn_ratio"] < t) for t in RATIOS]
        rules += [(f"cosine > {t:g}", cos_net > t, cos_fresh > t) for t in COSINES]
        for rule, net_copies, chance_copies in rules:
            copies, chance = float(net_copies.mean()), float(chance_copies.mean())
            kappa = (copies - chance) / (1.0 - chance) if chance < 1 else float("nan")
            out.append({"rule": rule, "d": cfg.rank, "n": cfg.num_train,
                        "nk_over_d": cfg.num_train / (K * cfg.rank), "gl": 1.0 - copies, "chance": chance,
                        "gl_net_of_chance": 1.0 - kappa})
    return out


def rule_crossings(rules: list[dict], level: float = 0.9) -> list[dict]:
    """Per rule, d and pooled: where GL (raw and net of chance) first reaches ``level``."""
    out = []
    for rule in dict.fromkeys(r["rule"] for r in rules):
        mine = [r for r in rules if r["rule"] == rule]
        ds = sorted({r["d"] for r in mine})
        xs = sorted({r["nk_over_d"] for r in mine})
        for key in ("gl", "gl_net_of_chance"):
            curves = {str(d): [next(r[key] for r in mine if r["d"] == d and r["nk_over_d"] == x) for x in xs]
                      for d in ds}
            curves["pooled"] = list(np.mean(list(curves.values()), 0))
            found = {d: crossing(xs, c, level, "up") for d, c in curves.items()}
            per_d = [found[str(d)]["n_star"] for d in ds]
            out.append({"rule": rule, "gl": key, "level": level,
                        **{f"d{d}": f["n_star"] if f["n_star"] else f["status"] for d, f in found.items()},
                        "max/min over d": max(per_d) / min(per_d) if None not in per_d else None})
    return out


def draw(table: list[dict], earlier: list[dict], rules: list[dict], path: Path) -> None:
    """(a) The crossing against images seen (log-log), per measure: pooled with its interval, d = 3 and 6 as
    markers; (b) pooled GL at the last step against N_k / d under each copy rule (dashed: net of chance)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    shown = [("GL (ratio 1/3)", 0.9, "C0", "-"), ("GL (ratio 1/3)", 0.5, "C9", "-"), ("kappa", 0.1, "C2", "--"),
             ("RP(net, true sampler)", 0.5, "C3", "-"), ("RP(net, true sampler)", 0.8, "C1", "-"),
             ("rel. error vs D_true", 0.1, "C4", "-")]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13.0, 5.2), gridspec_kw={"width_ratios": [1.25, 1]})
    for label, level, color, style in shown:
        pts = [t for t in table if t["measure"] == label and t["level"] == level and t["d"] == "pooled"
               and t["status"] == "crossed" and (t["on_subspace_where_reached"] or 0) >= ON_SUBSPACE_MIN]
        x = np.array([p["images_seen"] for p in pts]) / 1e6
        y = np.array([p["nk_over_d"] for p in pts])
        word = "falls to" if label in ("kappa", "rel. error vs D_true") else "reaches"
        ax.plot(x, y, style, marker="o", color=color, label=f"{label} {word} {level:g} (pooled)")
        if pts and pts[0]["ci_low"] is not None:
            lo = np.array([p["ci_low"] for p in pts])
            hi = np.array([p["ci_high"] for p in pts])
            ax.fill_between(x, np.clip(lo, 1, None), np.where(np.isfinite(hi), hi, 400), color=color, alpha=0.15)
        for d, marker in (("3", "v"), ("6", "^")):
            q = [t for t in table if t["measure"] == label and t["level"] == level and t["d"] == d
                 and t["status"] == "crossed" and (t["on_subspace_where_reached"] or 0) >= ON_SUBSPACE_MIN]
            ax.plot([p["images_seen"] / 1e6 for p in q], [p["nk_over_d"] for p in q], marker, color=color,
                    ms=5, alpha=0.7, ls="none")
    if earlier:
        ax.plot([e["images_seen"] / 1e6 for e in earlier], [e["nk_over_d"] for e in earlier], "s", color="k",
                mfc="none", ms=8, ls="none", label="GL 0.9, earlier 24-cell grid (d = 3-6)")
    ax.axhspan(50, 60, color="grey", alpha=0.2, lw=0)
    ax.axvline(6.0, color="grey", ls=":", lw=1)
    ax.text(5.6, 52, "paper 2:\n50-60 at\n~6 Mimg", ha="right", va="bottom", fontsize=8, color="0.3")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(0.09, 8)
    ax.set_ylim(8, 250)
    for axis, ticks in ((ax.xaxis, [0.1, 0.2, 0.5, 1, 2, 5]), (ax.yaxis, [10, 20, 50, 100, 200])):
        axis.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
        axis.set_major_formatter(matplotlib.ticker.FixedFormatter([f"{t:g}" for t in ticks]))
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("images seen per model (Mimg)")
    ax.set_ylabel("crossing N_k / d")
    ax.set_title("(a) Where the transition lies, by measure, along training\n(lines: pooled over d = 3 and 6, "
                 "shaded: 95% sampling interval;\ntriangles down: d = 3, up: d = 6)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper left")
    xs = sorted({r["nk_over_d"] for r in rules})
    for i, rule in enumerate(dict.fromkeys(r["rule"] for r in rules)):
        mine = [r for r in rules if r["rule"] == rule]
        for key, style in (("gl", "-"), ("gl_net_of_chance", "--")):
            y = [np.mean([r[key] for r in mine if r["nk_over_d"] == x]) for x in xs]
            bx.plot(xs, y, style, marker="o" if style == "-" else None, ms=3, color=f"C{i}",
                    label=rule if style == "-" else None)
    bx.axhline(0.9, color="grey", ls=":", lw=1)
    bx.axvspan(50, 60, color="grey", alpha=0.2, lw=0)
    bx.set_xscale("log")
    bx.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(xs))
    bx.xaxis.set_major_formatter(matplotlib.ticker.FixedFormatter([f"{x:g}" for x in xs]))
    bx.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    bx.set_xlabel("N_k / d")
    bx.set_ylabel("GL (mean over d = 3, 6)")
    bx.set_title("(b) GL at 2.46 Mimg under six copy rules\n(solid: raw; dashed: net of the true "
                 "distribution's chance rate;\ngrey band: paper 2's 50-60)", fontsize=10)
    bx.grid(True, alpha=0.3)
    bx.legend(fontsize=7.5, loc="upper left", title="a sample copies when", title_fontsize=7.5)
    fig.tight_layout()
    fig.savefig(path.with_suffix(".png"), dpi=130)
    fig.savefig(path.with_suffix(".pdf"))
    plt.close(fig)


def earlier_grid() -> list[dict]:
    """The 24-cell grid's pooled GL-0.9 crossings (../unet-molrg-grid/measures.csv) where nets lie on a subspace."""
    path = HERE.parent / "unet-molrg-grid" / "measures.csv"
    if not path.exists():
        return []
    rows = [r for r in csv.DictReader(open(path)) if r["measure"].startswith("GL") and r["d"] == "pooled"
            and r["status"] == "crossed"]
    return [{"images_seen": int(r["images_seen"]), "nk_over_d": float(r["nk_over_d"])} for r in rows
            if int(r["step"]) >= 210]


def main() -> None:
    rows = _rows()
    table = crossings_over_time(rows, np.random.default_rng(0))
    write_csv(HERE / "crossings.csv", table)
    fits = fit_against_images(table, rows)
    rules = copy_rules()
    write_csv(HERE / "copy_rules.csv", rules)
    by_rule = rule_crossings(rules)
    earlier = earlier_grid()
    gl = next(f for f in fits if f["measure"] == "GL (ratio 1/3)" and f["level"] == 0.9 and f["d"] == "pooled")
    last, b_last = gl["crossings"][-1], gl["local_b"][-1]["b"]
    ratio = AUTHORS_IMAGES / gl["images"][-1]
    extrapolated = {"authors_images": AUTHORS_IMAGES, "from_images": gl["images"][-1], "from_crossing": last,
                    "last_local_b": b_last, "with_last_local_b": last * ratio ** b_last,
                    "with_half_the_last_local_b": last * ratio ** (b_last / 2),
                    "note": "projections of GL's pooled 0.9 crossing to the authors' budget, not measurements"}
    (HERE / "measures.json").write_text(json.dumps(
        {"fits": fits, "extrapolated_to_authors_budget": extrapolated, "copy_rule_crossings": by_rule, "earlier_grid_gl_crossings": earlier,
         "bootstrap": f"parametric: each cell's fraction as Binomial({SAMPLES}, p)/{SAMPLES}, {RESAMPLES} draws; "
                      "sampling error only, not the spread between training seeds",
         "fit_rule": f"least squares of log crossing on log images over the crossed steps with at least "
                     f"{ON_SUBSPACE_MIN} of the samples on a subspace where the level is first reached"},
        indent=1, default=float))
    draw(table, earlier, rules, HERE / "crossing_vs_images")
    for t in table:
        if t["d"] in ("pooled", "max/min over d") and t["step"] >= 360:
            x = t["nk_over_d"]
            ci = f" [{t['ci_low']:.1f}, {t['ci_high']:.1f}]" if t["ci_low"] is not None else ""
            print(f"{t['images_seen']:>9,} {t['measure']:<24} {t['level']!s:>4} {t['d']:<15} "
                  f"{f'{x:.2f}' if x else t['status']}{ci}")
    for f in fits:
        if f["b"] is not None:
            ci = f"[{f['b_interval_95'][0]:.2f}, {f['b_interval_95'][1]:.2f}]" if f["b_interval_95"] else ""
            local = [f"{e['b']:.2f}" + (f" [{e['b_interval_95'][0]:.2f}, {e['b_interval_95'][1]:.2f}]"
                                        if "b_interval_95" in e else "") for e in f["local_b"]]
            print(f"fit {f['measure']} {f['level']} d={f['d']}: b = {f['b']:.2f} {ci} over {f['points']} steps; "
                  f"local {', '.join(local)}")
    for r in by_rule:
        print(r)
    print("extrapolated:", extrapolated)


if __name__ == "__main__":
    main()

"""The memorization-time exponent of unet-64 with the run-to-run spread (README: "The memorization-time exponent").

    python reports/cifar-optimal-gap-seeds/exponent.py

Reads the unet-64 crossing times (the images seen at which the copy fraction first reaches 0.5 and 0.9) from the
``memorization.csv`` of every run folder in :data:`RUNS`, and fits ``log t = a + b log N`` with the package's
:func:`mogsim.experiments.cifar_gap.combine.fit_power` through one point per N: the geometric mean of that N's runs.

The interval for ``b`` is a bootstrap over training runs (the sampler seeds are not resampled: each run's crossing
already carries their noise, and every run used the same 256 seeds):

* ``observed runs only``: at each N, draw that N's runs with replacement. N = 32 and 64 have one run each, so they
  do not move; the interval shows N = 16's spread alone and is too narrow.
* ``borrowed spread``: the same at N = 16; at an N with fewer than ``MIN_RUNS`` runs its log-time is its observed
  mean plus the mean of as many draws from N = 16's centred log-times (scaled by sqrt(k / (k - 1)) for k runs, the
  usual small-sample correction). Assumption: the run-to-run spread is a fixed *relative* (multiplicative) spread,
  the same at every N and for the compiled, differently scheduled N = 64 cell.

A right-censored cell (never reached the level by its last point) gives a lower bound: the time is above ``bound``,
and since the least-squares slope grows with the largest N's log-time, the fit with ``bound`` in its place is a lower
bound on ``b``. Writes ``exponent.json`` and ``fig_exponent.png`` here (CPU, seconds).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402
import numpy as np  # noqa: E402

from mogsim.experiments.cifar_gap.combine import fit_power  # noqa: E402
from mogsim.io import write_json  # noqa: E402
from mogsim.provenance import provenance  # noqa: E402
from mogsim.runs import read_csv  # noqa: E402

HERE = Path(__file__).resolve().parent
REPORTS = HERE.parent
#: The run folders with unet-64 crossings, and what sets each apart.
RUNS = {
    "cifar-optimal-gap-exponent": "N = 16 and 32, 5 points each, CUDA graph, not compiled, training seed 0",
    "cifar-optimal-gap-widths": "N = 16 (and 4096), 3 points, CUDA graph, not compiled, training seed 0",
    "cifar-optimal-gap-memorize": "N = 64, points at 150k, 300k and 500k images, compiled (torch.compile), seed 0",
    "cifar-optimal-gap-seeds": "N = 16, 3 points, CUDA graph, not compiled, training seeds 0 and 1",
}
NET = "unet-64"
LEVELS = (0.5, 0.9)
MIN_RUNS = 2
RESAMPLES = 10_000
SEED = 0
CI = (0.025, 0.975)


def read_cells() -> list[dict]:
    """Every unet-64 row of the runs' memorization.csv, with its run folder."""
    rows = []
    for run in RUNS:
        for row in read_csv(REPORTS / run / "memorization.csv"):
            if row["net"] != NET:
                continue
            rows.append({"run": run, "n": int(row["n"]), "seed": int(row["seed"]), "level": float(row["level"]),
                         "time": float(row["time"]) if row["time"] else None,
                         "censored": row["censored"] or None,
                         "bound": float(row["bound"]) if row["bound"] else None,
                         "projected": float(row["projected"]) if row["projected"] else None,
                         "last_images": float(row["last_images"]),
                         "last_copy_fraction": float(row["last_copy_fraction"])})
    return rows


def log_times(cells: list[dict]) -> dict[int, np.ndarray]:
    """Per N, the log crossing times of its runs (a right-censored run contributes log(bound), a lower bound)."""
    out: dict[int, list[float]] = defaultdict(list)
    for c in cells:
        if c["time"] is not None:
            out[c["n"]].append(math.log(c["time"]))
        elif c["censored"] == "right":
            out[c["n"]].append(math.log(c["bound"]))
    return {n: np.array(v) for n, v in sorted(out.items())}


def slope(per_n: dict[int, float]) -> float:
    """``b`` of fit_power through one point per N (the exp of the given mean log-time)."""
    ns = sorted(per_n)
    return fit_power(ns, [math.exp(per_n[n]) for n in ns])[0]


def bootstrap(logs: dict[int, np.ndarray], *, borrow: bool, rng: np.random.Generator) -> np.ndarray:
    """Slopes of :data:`RESAMPLES` bootstrap replicates (see the module docs for the two kinds)."""
    ref = max(logs, key=lambda n: len(logs[n]))
    k = len(logs[ref])
    centred = (logs[ref] - logs[ref].mean()) * math.sqrt(k / (k - 1))
    means = {}
    for n, v in logs.items():
        if len(v) >= MIN_RUNS or not borrow:
            means[n] = rng.choice(v, size=(RESAMPLES, len(v))).mean(axis=1)
        else:
            means[n] = v.mean() + rng.choice(centred, size=(RESAMPLES, len(v))).mean(axis=1)
    ns = sorted(means)
    return np.array([slope(dict(zip(ns, row))) for row in np.stack([means[n] for n in ns], axis=1)])


def interval(slopes: np.ndarray) -> list[float]:
    return [float(q) for q in np.quantile(slopes, CI)]


def analyse(cells: list[dict], level: float, rng: np.random.Generator) -> dict:
    """Point estimate and both bootstrap intervals at one level, and the censored lower bound when there is one."""
    own = [c for c in cells if c["level"] == level]
    done = [c for c in own if c["time"] is not None]
    censored = [c for c in own if c["time"] is None]
    logs = log_times(done)
    relative = {n: float(np.std(v, ddof=1)) for n, v in logs.items() if len(v) > 1}
    out: dict = {
        "level": level,
        "runs": [{k: c[k] for k in ("run", "n", "seed", "time", "censored", "bound", "projected",
                                    "last_images", "last_copy_fraction")} for c in own],
        "runs_per_n": {n: len(v) for n, v in logs.items()},
        "geometric_mean_time": {n: float(math.exp(v.mean())) for n, v in logs.items()},
        "relative_spread_sd_log": relative,
        "ns_fitted": sorted(logs),
    }
    if len(logs) >= 2:
        out["exponent"] = slope({n: v.mean() for n, v in logs.items()})
        out["exponent_all_runs_as_points"] = fit_power([c["n"] for c in done], [c["time"] for c in done])[0]
        out["ci_observed_runs_only"] = interval(bootstrap(logs, borrow=False, rng=rng))
        out["ci_borrowed_spread"] = interval(bootstrap(logs, borrow=True, rng=rng))
        out["exponent_leaving_out_one_n16_run"] = {
            f"{c['run']} seed {c['seed']}": slope({**{n: v.mean() for n, v in logs.items()},
                                                   c["n"]: np.mean([math.log(d["time"]) for d in done
                                                                    if d["n"] == c["n"] and d is not c])})
            for c in done if len(logs[c["n"]]) > 1}
    for n in sorted({c["n"] for c in censored} - set(logs)):
        at_n = [c for c in censored if c["n"] == n]
        bound = {**logs, n: np.array([math.log(c["bound"]) for c in at_n])}
        projected = [c["projected"] for c in at_n]
        out.setdefault("censored_lower_bounds", []).append({
            "n": n, "runs": [c["run"] for c in at_n], "bound": [c["bound"] for c in at_n],
            "last_copy_fraction": [c["last_copy_fraction"] for c in at_n],
            "exponent_at_least": slope({m: v.mean() for m, v in bound.items()}),
            "exponent_at_least_ci_borrowed_spread": interval(bootstrap(bound, borrow=True, rng=rng)),
            "exponent_at_least_two_n": (math.log(min(c["bound"] for c in at_n)) - logs[min(logs)].mean())
            / math.log(n / min(logs)),
            "exponent_with_projection": slope({**{m: v.mean() for m, v in logs.items()},
                                               n: float(np.mean(np.log(projected)))}) if all(projected) else None,
        })
    return out


def figure(results: list[dict], path: Path, max_n: int = 64) -> None:
    """Crossing times against N (up to ``max_n``) per level: each run, the geometric mean per N, the fit, and
    right-censored cells as arrows up from their last point."""
    fig, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 4.4), squeeze=False)
    markers = dict(zip(RUNS, "osD^"))
    for ax, res in zip(axes[0], results):
        for r in (r for r in res["runs"] if r["n"] <= max_n):
            name = r["run"].replace("cifar-optimal-gap-", "")
            if r["time"] is not None:
                x = r["n"] * (1 + 0.05 * (list(RUNS).index(r["run"]) + r["seed"] - 1.5))
                ax.scatter(x, r["time"], marker=markers[r["run"]], facecolors="none", edgecolors="C0",
                           label=f"{name} run, seed {r['seed']}")
            else:
                ax.annotate("", xy=(r["n"], r["bound"] * 1.5), xytext=(r["n"], r["bound"]),
                            arrowprops={"arrowstyle": "->", "color": "C3"})
                ax.scatter(r["n"], r["bound"], marker="_", s=200, color="C3",
                           label=f"{name} run: N = {r['n']} not reached by {r['bound']:,.0f}")
        gm = res["geometric_mean_time"]
        ax.scatter(list(gm), list(gm.values()), marker="x", color="k", s=60, label="geometric mean per N", zorder=3)
        if "exponent" in res:
            ns = np.array([12.0, 80.0])
            a = np.mean([math.log(t) for t in gm.values()]) - res["exponent"] * np.mean([math.log(n) for n in gm])
            lo, hi = res["ci_borrowed_spread"]
            ax.plot(ns, np.exp(a) * ns ** res["exponent"], "k-", lw=1,
                    label=f"fit: b = {res['exponent']:.2f} [{lo:.2f}, {hi:.2f}]")
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        ax.legend(unique.values(), unique.keys(), fontsize=7, loc="lower right")
        ax.set(xscale="log", yscale="log", xlabel="N (training images)", ylabel="images seen at the crossing",
               title=f"unet-64: copy fraction reaches {res['level']:g}", xlim=(11, 90), ylim=(4e4, 9e5))
        ax.set_xticks([16, 32, 64], labels=["16", "32", "64"])
        ax.xaxis.set_minor_formatter(NullFormatter())
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main() -> None:
    rng = np.random.Generator(np.random.PCG64(SEED))
    cells = read_cells()
    results = [analyse(cells, level, rng) for level in LEVELS]
    figure(results, HERE / "fig_exponent.png")
    write_json(HERE / "exponent.json", {
        "what": f"memorization-time exponent b (t ~ N^b) of {NET} from the crossing times of every run, with a "
                "bootstrap over training runs (see exponent.py)",
        "runs": RUNS, "resamples": RESAMPLES, "bootstrap_seed": SEED, "ci_quantiles": list(CI),
        "min_runs_without_borrowing": MIN_RUNS,
        "assumption_borrowed_spread": "an N with fewer than two runs gets N = 16's relative run-to-run spread: its "
                                      "log-time varies by draws from N = 16's centred log-times (times sqrt(k/(k-1)))",
        "levels": results,
        "provenance": provenance(),
    })
    for r in results:
        line = f"level {r['level']:g}: runs per N {r['runs_per_n']}"
        if "exponent" in r:
            line += (f"; b = {r['exponent']:.3f}, observed runs only {r['ci_observed_runs_only']}, "
                     f"borrowed spread {r['ci_borrowed_spread']}")
        for lb in r.get("censored_lower_bounds", []):
            line += (f"; N = {lb['n']} not reached by {lb['bound']}: b >= {lb['exponent_at_least']:.3f} "
                     f"{lb['exponent_at_least_ci_borrowed_spread']} (two N: {lb['exponent_at_least_two_n']:.3f}; "
                     f"with the projection {lb['exponent_with_projection']})")
        print(line)
    print(json.dumps({r["level"]: r["relative_spread_sd_log"] for r in results}))


if __name__ == "__main__":
    main()

"""The grid's transition by several measures along training time, on paper 2's axis N_k / d (README: the reading).

    python reports/unet-molrg-grid/measures.py        # reads sweep_time.csv here, writes measures.csv here

For each evaluated step, each d and pooled over d (the mean of the four curves), the N_k / d where a measure first
reaches its level (mogsim.analysis.transitions.crossing: linear in log N_k / d between grid points): the paper's
GL = 1 - copies reaching 0.9, kappa (copies net of the true sampler's chance copies) falling to 0.1, and the
independent RP(net, true-score sampler) reaching 0.5 and 0.8; and the smallest N_k / d whose verdict is
'generalizing'.
"""

import csv
import json
from pathlib import Path

from mogsim.analysis.transitions import crossing
from mogsim.runs import write_csv

HERE = Path(__file__).resolve().parent
K = 2
MEASURES = [("gl", "GL = 1 - copy_fraction_net", 0.9, "up"), ("kappa", "kappa", 0.1, "down"),
            ("rp_net_true", "RP(net, true sampler)", 0.5, "up"), ("rp_net_true", "RP(net, true sampler)", 0.8, "up")]


def main() -> None:
    rows = list(csv.DictReader(open(HERE / "sweep_time.csv")))
    batch = int(json.loads((HERE / "sweep_metrics.json").read_text())["budget"]["batch"])
    for r in rows:
        r["gl"] = 1.0 - float(r["copy_fraction_net"])
        r["nk_over_d"] = int(r["n"]) / (K * int(r["rank"]))
    out = []
    for step in sorted({int(r["step"]) for r in rows}):
        at = [r for r in rows if int(r["step"]) == step]
        ds = sorted({r["rank"] for r in at}, key=int)
        for key, name, level, direction in MEASURES:
            curves = {d: sorted((r["nk_over_d"], float(r[key])) for r in at if r["rank"] == d) for d in ds}
            xs = [x for x, _ in curves[ds[0]]]
            curves["pooled"] = [(x, sum(c[i][1] for c in curves.values()) / len(ds)) for i, x in enumerate(xs)]
            for d, c in curves.items():
                res = crossing([x for x, _ in c], [y for _, y in c], level, direction)
                out.append({"step": step, "images_seen": step * batch, "measure": name,
                            "level": level, "d": d, "nk_over_d": res["n_star"], "status": res["status"]})
        for d in ds:
            gen = [r["nk_over_d"] for r in at if r["rank"] == d and r["verdict"] == "generalizing"]
            out.append({"step": step, "images_seen": step * batch, "measure": "first verdict generalizing",
                        "level": "", "d": d, "nk_over_d": min(gen) if gen else None,
                        "status": "crossed" if gen else "not_reached"})
    write_csv(HERE / "measures.csv", out)
    for o in out:
        if o["step"] >= 210:
            x = o["nk_over_d"]
            print(f"{o['images_seen']:>8,} images  {o['measure']:<28} {o['level']!s:>4}  d = {o['d']:<6} "
                  f"{f'{x:.1f}' if x else o['status']}")


if __name__ == "__main__":
    main()

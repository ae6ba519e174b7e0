"""Paper 2's collapse (mogsim.analysis.collapse): GL against N_k / d per d and pooled, and the N_k / d where GL
reaches 0.9, on synthetic sweep tables whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mogsim.analysis import collapse, collapse_over_time, collapse_table
from mogsim.errors import InputError

RATIOS = (4, 8, 16, 32, 64, 128)


def table(gl_by_d: dict[int, list[float]], *, k: int = 2, seeds: int = 1, step: int | None = None) -> list[dict]:
    """Sweep rows (strings, as a CSV gives them back) with GL = 1 - copy_fraction_net on the N_k / d grid."""
    rows = []
    for d, gls in gl_by_d.items():
        for ratio, gl in zip(RATIOS, gls):
            for seed in range(seeds):
                row = {"width": "64", "rank": str(d), "n": str(k * ratio * d), "seed": str(seed),
                       "copy_fraction_net": repr(1.0 - gl), "on_subspace_fraction_net": repr(1.0 - gl / 2)}
                rows.append(row if step is None else {**row, "step": str(step)})
    return rows


def test_a_known_crossing_per_d_and_pooled():
    """GL 0.8 at N_k / d = 32 and 1.0 at 64: the crossing of 0.9 is half-way in log, 32 sqrt(2), for every d and
    pooled (the curves collapse); one d that never reaches 0.9 is 'not_reached' and moves the pooled crossing."""
    curve = [0.0, 0.1, 0.4, 0.8, 1.0, 1.0]
    found = collapse(table({3: curve, 4: curve, 5: curve, 6: curve}), 2)
    for d in ("3", "4", "5", "6"):
        c = found["per_d"][d]
        assert c["status"] == "crossed" and c["crossing"] == pytest.approx(32 * math.sqrt(2), rel=1e-12)
        assert c["nk_over_d"] == [float(r) for r in RATIOS] and c["gl"] == pytest.approx(curve)
        assert c["on_subspace"] == pytest.approx([1 - g / 2 for g in curve])
    assert found["pooled"]["crossing"] == pytest.approx(32 * math.sqrt(2), rel=1e-12)
    assert found["crossing_ratio_max_over_min"] == pytest.approx(1.0) and "0.9" in found["rule"]
    low = collapse(table({3: curve, 6: [0.0, 0.1, 0.2, 0.4, 0.8, 0.85]}), 2)
    assert low["per_d"]["6"]["status"] == "not_reached" and low["per_d"]["6"]["crossing"] is None
    # pooled GL at 64 is (1.0 + 0.8) / 2 = 0.9 exactly: reached there
    assert low["pooled"]["status"] == "crossed" and low["pooled"]["crossing"] == pytest.approx(64.0)
    early = collapse(table({3: [0.95] * 6}), 2)
    assert early["per_d"]["3"]["status"] == "below_range" and early["per_d"]["3"]["crossing"] is None


def test_no_collapse_when_the_curves_follow_n_instead_of_n_over_d():
    """Curves that depend on N alone (the same GL at the same N for every d) cross at N_k / d proportional to 1/d:
    the spread of the crossings is the spread of d."""
    def gl_at(n: float) -> float:
        return float(np.clip((math.log2(n) - 4) / 6, 0, 1))  # 0 at N = 16, 1 at N = 1024

    found = collapse(table({d: [gl_at(2 * r * d) for r in RATIOS] for d in (3, 6)}), 2)
    n3, n6 = (found["per_d"][d]["crossing"] for d in ("3", "6"))
    assert n3 / n6 == pytest.approx(2.0, rel=1e-9) and found["crossing_ratio_max_over_min"] == pytest.approx(2.0)


def test_seeds_are_averaged_and_missing_values_skipped():
    rows = table({4: [0.0, 0.2, 0.6, 1.0, 1.0, 1.0]}, seeds=2)
    rows[0]["copy_fraction_net"] = ""  # a missing value (seed 0 at N_k / d = 4): skipped, not zero
    rows[3]["on_subspace_fraction_net"] = "nan"
    found = collapse(rows, 2)["per_d"]["4"]
    assert found["models"] == [1, 2, 2, 2, 2, 2] and found["gl"][0] == 0.0
    assert found["crossing"] == pytest.approx(math.exp(math.log(16) + 0.75 * math.log(2)))


def test_degenerate_and_bad_inputs():
    empty = collapse([], 2)
    assert empty["per_d"] == {} and empty["pooled"] is None and collapse_table(empty) == []
    with pytest.raises(InputError, match="components"):
        collapse(table({3: [0.5] * 6}), 0)
    with pytest.raises(InputError, match="level"):
        collapse(table({3: [0.5] * 6}), 2, level=1.0)


def test_along_training_time_and_the_csv_rows():
    rows = table({3: [0.0] * 6}, step=10) + table({3: [0.0, 0.1, 0.4, 0.8, 1.0, 1.0]}, step=100)
    steps = collapse_over_time(rows, 2, batch=512)
    assert [(e["step"], e["images_seen"]) for e in steps] == [(10, 5120), (100, 51200)]
    assert steps[0]["pooled"]["status"] == "not_reached" and steps[1]["pooled"]["status"] == "crossed"
    csv_rows = collapse_table(steps[1])
    assert len(csv_rows) == 12 and {r["d"] for r in csv_rows} == {"3", "pooled"}


def test_the_collapse_figure_draws(tmp_path):
    from mogsim.report.figures import collapse_figure

    rows = table({3: [0.0, 0.1, 0.4, 0.8, 1.0, 1.0], 5: [0.0, 0.0, 0.3, 0.7, 0.95, 1.0]}, step=100)
    fig = collapse_figure(collapse(rows, 2), collapse_over_time(rows, 2, batch=512), "synthetic")
    fig.savefig(tmp_path / "c.png", dpi=60)
    assert (tmp_path / "c.png").stat().st_size > 1000
    collapse_figure(collapse(rows, 2)).savefig(tmp_path / "no_time.pdf")  # without a time axis


def test_paper_2_claims_are_judged_by_their_stated_rule():
    """One curve for every d: yes; curves that follow N alone (crossings a factor d_max / d_min = 2 apart): no;
    one d that never reaches 0.9: partly; fewer than two crossings: not judged. Where GL reaches 0.9 is reported,
    never judged."""
    from mogsim.experiments.score_match.claims import collapse_claims

    curve = [0.0, 0.1, 0.4, 0.8, 1.0, 1.0]
    same = collapse_claims(collapse(table({3: curve, 6: curve}), 2), 4.1e5)
    assert [c["agrees"] for c in same] == ["yes", "not judged"]
    assert "45.3" in same[1]["measured"] and "0.41 Mimg" in same[1]["measured"] and "1.41" in same[0]["basis"]

    def gl_at(n: float) -> float:
        return float(np.clip((math.log2(n) - 4) / 6, 0, 1))

    by_n = collapse_claims(collapse(table({d: [gl_at(2 * r * d) for r in RATIOS] for d in (3, 6)}), 2), None)
    assert by_n[0]["agrees"] == "no" and "max / min 2 " in by_n[0]["measured"]
    short = [0.0, 0.0, 0.1, 0.2, 0.5, 0.6]
    assert collapse_claims(collapse(table({3: curve, 4: curve, 6: short}), 2), None)[0]["agrees"] == "partly"
    assert collapse_claims(collapse(table({3: curve, 6: short}), 2), None)[0]["agrees"] == "not judged"
    assert collapse_claims(collapse([], 2), None) == []


def test_an_untrained_net_has_gl_one_and_the_collapse_is_not_judged_on_it():
    """Degenerate input: a net that has learned nothing copies nothing (GL = 1 everywhere) and puts no sample on a
    subspace. GL is 'below_range' (past 0.9 from the start) and the collapse claim is not judged."""
    from mogsim.experiments.score_match.claims import collapse_claims

    rows = [{**r, "on_subspace_fraction_net": "0.0"} for r in table({3: [1.0] * 6, 6: [1.0] * 6})]
    found = collapse(rows, 2)
    assert all(c["status"] == "below_range" and c["on_subspace_where_reached"] == 0.0 for c in found["per_d"].values())
    claim = collapse_claims(found, None)[0]
    assert claim["agrees"] == "not judged" and "d = 3, 6" in claim["measured"]
    # the same GL curves with data-like samples where GL reaches 0.9 are judged
    curve = [0.0, 0.1, 0.4, 0.8, 1.0, 1.0]
    assert collapse_claims(collapse(table({3: curve, 6: curve}), 2), None)[0]["agrees"] == "yes"

"""N*(r) from sweep tables: crossings, seed bootstrap, power-law fit; and the committed 30k-step sweep's numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mogsim.analysis import (COPY_EXCESS, COPY_FRACTION, OLD_INDEX, POSITION_TRAIN, RP_TRUE, analyse,
                             analyse_measure, column, crossing, fit_power_law, label_share, position_at_levels,
                             with_fixed_position)
from mogsim.errors import InputError
from mogsim.runs import read_csv

NS = [16, 32, 64, 128, 256, 512, 1024]
SWEEP_30K = Path(__file__).resolve().parents[1] / "reports" / "score-match-30k"


def linear_in_log(n_star: float, slope: float = 0.3):
    """A curve that is exactly linear in log N and equals 0.5 at n_star (so interpolation recovers it exactly)."""
    return [0.5 + slope * (math.log(n) - math.log(n_star)) for n in NS]


def table(curves: dict[int, list[list[float]]], key: str = "m") -> list[dict]:
    """Rows (rank, n, seed, key) from rank -> per-seed curves over NS."""
    return [{"rank": r, "n": n, "seed": s, key: curve[i]}
            for r, per_seed in curves.items() for s, curve in enumerate(per_seed) for i, n in enumerate(NS)]


# -- crossing ----------------------------------------------------------------------------------------------------------
def test_crossing_recovers_a_known_n_star_exactly():
    res = crossing(NS, linear_in_log(90.0))
    assert res["status"] == "crossed" and res["monotone"]
    assert res["n_star"] == pytest.approx(90.0, rel=1e-12)


def test_crossing_downwards_mirrors_upwards():
    up = crossing(NS, linear_in_log(300.0))
    down = crossing(NS, [1.0 - v for v in linear_in_log(300.0)], direction="down")
    assert down["n_star"] == pytest.approx(up["n_star"], rel=1e-12) == pytest.approx(300.0, rel=1e-12)


def test_crossing_below_and_above_the_range():
    assert crossing(NS, [0.6] * len(NS)) == {"n_star": None, "status": "below_range", "crossings": [],
                                            "monotone": False}
    assert crossing(NS, [0.4] * len(NS))["status"] == "above_range"
    assert crossing(NS, [0.6] * len(NS), direction="down")["status"] == "above_range"
    assert crossing([], [])["status"] == "no_data"


def test_crossing_of_a_non_monotone_curve_is_the_first_and_flagged():
    values = [0.1, 0.6, 0.4, 0.3, 0.7, 0.8, 0.9]
    res = crossing(NS, values)
    assert not res["monotone"] and len(res["crossings"]) == 3
    assert 16 < res["n_star"] < 32 and res["n_star"] == res["crossings"][0]
    dip = crossing(NS, [0.7, 0.4, 0.6, 0.7, 0.8, 0.9, 0.9])  # starts past the level, dips, recovers
    assert dip["status"] == "below_range" and not dip["monotone"] and len(dip["crossings"]) == 2


def test_crossing_ignores_input_order():
    order = [3, 0, 6, 1, 5, 2, 4]
    values = linear_in_log(200.0)
    res = crossing([NS[i] for i in order], [values[i] for i in order])
    assert res["n_star"] == pytest.approx(200.0, rel=1e-12)


@given(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=9), st.floats(0.05, 0.95), st.floats(0.01, 100.0))
def test_crossing_properties(values, level, scale):
    ns = [16 * 2**i for i in range(len(values))]
    res = crossing(ns, values, level)
    if res["status"] == "crossed":
        i = next(k for k, v in enumerate(values) if v >= level)
        assert ns[i - 1] <= res["n_star"] * (1 + 1e-12) and res["n_star"] <= ns[i] * (1 + 1e-12)
        # the log-linear interpolant equals the level at N*
        t = (math.log(res["n_star"]) - math.log(ns[i - 1])) / (math.log(ns[i]) - math.log(ns[i - 1]))
        assert values[i - 1] + t * (values[i] - values[i - 1]) == pytest.approx(level, abs=1e-9)
        scaled = crossing([n * scale for n in ns], values, level)  # N* moves with the N axis
        assert scaled["n_star"] == pytest.approx(res["n_star"] * scale, rel=1e-9)
    mirrored = crossing(ns, [1.0 - v for v in values], 1.0 - level, direction="down")
    if not any(abs(v - level) < 1e-12 for v in values):  # ties aside (1 - v rounds), the mirror image is the same
        assert mirrored["status"] == res["status"]
        if res["n_star"] is not None:
            assert mirrored["n_star"] == pytest.approx(res["n_star"], rel=1e-9)


# -- fit and bootstrap ---------------------------------------------------------------------------------------------
def test_power_law_fit_is_exact_on_exact_data():
    fit = fit_power_law({2: 10 * 2**1.3, 4: 10 * 4**1.3, 8: 10 * 8**1.3, 16: None})
    assert fit["b"] == pytest.approx(1.3, abs=1e-12) and fit["prefactor"] == pytest.approx(10.0, rel=1e-12)
    assert fit["used"] == [2, 4, 8]
    assert fit_power_law({2: 50.0, 4: None})["b"] is None


def test_noise_free_seeds_give_degenerate_intervals_and_the_true_exponent():
    truth = {r: 20.0 * r**0.8 for r in (2, 4, 6, 8)}
    rows = table({r: [linear_in_log(ns)] * 3 for r, ns in truth.items()})
    res = analyse_measure(rows, column("m", "up", "test"), resamples=50)
    for r, ns in truth.items():
        e = res["n_star"][str(r)]
        assert e["n_star"] == pytest.approx(ns, rel=1e-12)
        assert e["ci_low"] == pytest.approx(ns, rel=1e-12) and e["ci_high"] == pytest.approx(ns, rel=1e-12)
    assert res["fit"]["b"] == pytest.approx(0.8, abs=1e-9)
    assert res["fit"]["ci_low"] == pytest.approx(0.8, abs=1e-9) and res["fit"]["ci_high"] == pytest.approx(0.8, abs=1e-9)


def test_noisy_seeds_give_intervals_around_the_estimate_reproducibly():
    rng = np.random.default_rng(0)
    rows = table({r: [[v + 0.05 * rng.standard_normal() for v in linear_in_log(30.0 * r)] for _ in range(4)]
                  for r in (2, 4, 8)})
    a = analyse_measure(rows, column("m", "up", "test"), resamples=200, seed=3)
    b = analyse_measure(rows, column("m", "up", "test"), resamples=200, seed=3)
    assert a == b
    for r in (2, 4, 8):
        e = a["n_star"][str(r)]
        assert e["ci_low"] < e["n_star"] < e["ci_high"]
        assert e["ci_low"] < 30.0 * r < e["ci_high"]
    assert a["fit"]["ci_low"] < 1.0 < a["fit"]["ci_high"]


def test_open_interval_when_resamples_leave_the_range():
    # seeds disagree at the smallest N: some resamples start past the level
    rows = table({2: [[0.9, 0.9, 0.95, 1, 1, 1, 1], [0.1, 0.2, 0.7, 1, 1, 1, 1], [0.2, 0.3, 0.8, 1, 1, 1, 1]]})
    e = analyse_measure(rows, column("m", "up", "test"), resamples=400)["n_star"]["2"]
    assert e["status"] == "crossed" and e["ci_low"] is None and "below the N range" in e["ci_note"]


def test_missing_values_are_skipped_and_bad_rows_rejected():
    rows = table({2: [linear_in_log(100.0)] * 2})
    rows += [{"rank": 2, "n": n, "seed": 9, "m": bad} for n, bad in zip(NS, ["", "nan", None, "x", "inf", "", ""])]
    e = analyse_measure(rows, column("m", "up", "test"), resamples=10)["n_star"]["2"]
    assert e["n_star"] == pytest.approx(100.0, rel=1e-12) and set(e["seeds_per_n"].values()) == {2}
    with pytest.raises(InputError, match="rank, n and seed"):
        analyse_measure([{"n": 16, "m": 0.1}], column("m", "up", "test"))
    with pytest.raises(InputError, match="no rows"):
        analyse([])
    with pytest.raises(InputError, match="direction"):
        column("m", "sideways", "test")


def test_label_share_and_copy_excess_measures():
    share = label_share("generalizing")
    assert share.value({"verdict": "generalizing"}) == 1.0 and share.value({"verdict": "in transition"}) == 0.0
    assert share.value({"verdict": ""}) is None
    assert COPY_EXCESS.value({"copy_fraction_net": "0.55", "copy_fraction_true": "0.1"}) == pytest.approx(0.5)
    assert COPY_EXCESS.value({"copy_fraction_net": 1.0, "copy_fraction_true": 1.0}) is None


def test_position_at_fixed_levels_averages_exactly_those_levels():
    per_sigma = [{"rank": 2, "n": 16, "seed": 0, "queries": q, "sigma": s, "position": t}
                 for q, s, t in [("train", 0.0599473, 0.2), ("train", 0.13951, 0.4), ("train", 0.29644, 0.9),
                                 ("train", 0.5853, 5.0), ("true", 0.13951, -3.0)]]
    per_sigma += [{"rank": 2, "n": 32, "seed": 0, "queries": "train", "sigma": 0.0599473, "position": 0.3}]
    pos = position_at_levels(per_sigma)
    assert pos == {(2, 16, 0): pytest.approx(0.5)}  # (2, 32, 0) lacks two of the levels
    rows = with_fixed_position([{"rank": "2", "n": "16", "seed": "0"}, {"rank": 2, "n": 32, "seed": 0}], per_sigma)
    assert rows[0]["position_train_fixed"] == pytest.approx(0.5) and rows[1]["position_train_fixed"] is None


# -- the committed 30k-step sweep (issue 10's numbers) ---------------------------------------------------------------
@pytest.fixture(scope="module")
def sweep_30k():
    if not (SWEEP_30K / "sweep_table.csv").exists():
        pytest.skip("reports/score-match-30k is not in this checkout")
    return with_fixed_position(read_csv(SWEEP_30K / "sweep_table.csv"), read_csv(SWEEP_30K / "sweep_per_sigma.csv"))


@pytest.mark.parametrize("measure, expected", [
    (RP_TRUE, {2: 77, 4: 232, 6: 373, 8: 438}),
    (POSITION_TRAIN, {2: 85, 4: 136, 6: 186, 8: 223}),
    (OLD_INDEX, {2: 200, 4: 150, 6: 160, 8: 200}),
    (COPY_FRACTION, {2: 41, 4: 102, 6: 135, 8: 131}),
])
def test_committed_sweep_reproduces_the_issue_numbers(sweep_30k, measure, expected):
    res = analyse_measure(sweep_30k, measure, resamples=20)
    got = {int(r): e["n_star"] for r, e in res["n_star"].items()}
    assert {r: round(v) for r, v in got.items()} == expected
    assert all(e["monotone"] for e in res["n_star"].values())


def test_committed_sweep_exponents(sweep_30k):
    stored = analyse(sweep_30k, (RP_TRUE, POSITION_TRAIN, OLD_INDEX), resamples=20)
    assert json.loads(json.dumps(stored, allow_nan=False)) == stored  # JSON-ready: reports print stored numbers
    res = stored["measures"]
    assert res["rp_net_true"]["fit"]["b"] == pytest.approx(1.29, abs=0.01)
    assert res["position_train_fixed"]["fit"]["b"] == pytest.approx(0.70, abs=0.01)
    assert res["generalization_index"]["fit"]["b"] == pytest.approx(-0.04, abs=0.01)


# -- vectorised crossings ----------------------------------------------------------------------------------------------
@given(st.lists(st.lists(st.floats(0.0, 1.0), min_size=5, max_size=5), min_size=1, max_size=8),
       st.floats(0.05, 0.95), st.sampled_from(["up", "down"]))
def test_first_crossings_agree_with_crossing(curves, level, direction):
    from mogsim.analysis.transitions import first_crossings

    ns = [16, 32, 64, 128, 256]
    got = first_crossings(ns, np.array(curves), level, direction)
    for value, curve in zip(got, curves):
        res = crossing(ns, curve, level, direction)
        expected = {"below_range": -math.inf, "above_range": math.inf}.get(res["status"], res["n_star"])
        assert value == pytest.approx(expected, rel=1e-12)


# -- the training-time axis --------------------------------------------------------------------------------------------
STEPS = [30, 65, 139, 300, 646, 1392, 3000, 6463, 13925, 30000]


def time_rows(onset, accurate, seeds=3, noise=0.0, rng=None):
    """Rows whose kappa reaches 0.1 exactly at ``onset(N)`` and whose max rel drops to 0.2 at ``accurate(N)``, both
    linear in log(step); None: never within the steps."""
    rows = []
    for rank in (2, 4):
        for n in (16, 64, 256, 1024):
            for seed in range(seeds):
                for step in STEPS:
                    jitter = noise * rng.standard_normal() if rng is not None else 0.0
                    t_on, t_acc = onset(rank, n), accurate(rank, n)
                    kappa = 0.1 + 0.2 * (math.log(step) - math.log(t_on)) + jitter if t_on else -0.05
                    rel = 0.2 - 0.05 * (math.log(step) - math.log(t_acc)) if t_acc else 5.0
                    rows.append({"width": 256, "rank": rank, "n": n, "seed": seed, "step": step, "kappa": kappa,
                                 "worst_rel_true_fresh": rel, "worst_rel_true_train": rel - 0.01,
                                 "verdict": "generalizing" if t_acc and step >= t_acc else "in transition"})
    return rows


def test_event_steps_and_exponents_are_recovered_exactly():
    from mogsim.analysis import analyse_time

    rows = time_rows(lambda r, n: 5.0 * n, lambda r, n: 200.0 * r)
    res = analyse_time(rows, resamples=20)["events"]
    onset, acc = res["memorization_onset"], res["accurate"]
    assert onset["cells"]["256/2/64"]["step"] == pytest.approx(320.0, rel=1e-12)
    assert acc["cells"]["256/4/1024"]["step"] == pytest.approx(800.0, rel=1e-12)
    for rank in (2, 4):
        fit = onset["fits"][f"256/{rank}"]
        assert fit["b"] == pytest.approx(1.0, abs=1e-9) and fit["ci_low"] == pytest.approx(1.0, abs=1e-9)
        assert fit["prefactor"] == pytest.approx(5.0, rel=1e-9) and fit["censored_never"] == 0
        assert acc["fits"][f"256/{rank}"]["b"] == pytest.approx(0.0, abs=1e-9)
    assert onset["cells"]["256/2/64"]["per_seed"]["1"]["step"] == pytest.approx(320.0, rel=1e-12)


def test_censored_cells_are_counted_and_left_out():
    from mogsim.analysis import analyse_time

    rows = time_rows(lambda r, n: 5.0 * n if n < 1024 else None, lambda r, n: 10.0 if n == 16 else 100.0)
    res = analyse_time(rows, resamples=20)["events"]
    fit = res["memorization_onset"]["fits"]["256/2"]
    assert fit["censored_never"] == 1 and fit["used"] == [16, 64, 256] and fit["b"] == pytest.approx(1.0, abs=1e-9)
    acc = res["accurate"]["fits"]["256/2"]
    assert acc["censored_before_first"] == 1 and res["accurate"]["cells"]["256/2/16"]["status"] == "before_first"


def test_noisy_seeds_give_exponent_intervals_around_the_truth():
    from mogsim.analysis import analyse_time

    rows = time_rows(lambda r, n: 5.0 * n, lambda r, n: 300.0, seeds=6, noise=0.03, rng=np.random.default_rng(1))
    fit = analyse_time(rows, resamples=300, seed=2)["events"]["memorization_onset"]["fits"]["256/4"]
    assert fit["ci_low"] < 1.0 < fit["ci_high"] and fit["ci_high"] - fit["ci_low"] < 0.3


def test_cell_events_of_one_run():
    from mogsim.analysis import cell_events

    rows = [r for r in time_rows(lambda r, n: 5.0 * n, lambda r, n: 400.0) if r["rank"] == 2 and r["n"] == 16
            and r["seed"] == 0]
    events = cell_events(rows)
    assert events["memorization_onset"]["step"] == pytest.approx(80.0, rel=1e-12)
    assert events["accurate"]["step"] == pytest.approx(400.0, rel=1e-12)
    assert events["generalizing"]["status"] == "crossed"

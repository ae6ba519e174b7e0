"""The subspace-recovery experiment and the ``mogsim subspace-recovery`` command (paper 2, Fig. 4).

* On a small grid the estimators show the theorem's transition exactly: success rate 0 below N_k = d, 1 from it on.
* Trials depend on their own seeds only; the run folder is complete, reused, and resumes after a time limit with the
  same numbers as a straight run.
* Bad inputs (d > n, K d > n, N_k < 1, unknown methods, ...) are one line, exit 2, and leave no files.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from mogsim.errors import InputError
from mogsim.experiments.subspace_recovery import (KSubspacesMethod, RecoveryConfig, run_cell,
                                                  run_subspace_recovery)
from mogsim.runs import LOCK_FILE, read_csv

SMALL = RecoveryConfig(dim=24, components=(1, 2), ranks=(2, 3), per_component=(1, 2, 3, 4), trials=3)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    return run_subspace_recovery(SMALL, tmp_path_factory.mktemp("recovery"))


def test_small_grid_shows_the_transition_at_n_k_equal_d(small_run):
    m = small_run.metrics
    assert small_run.complete and not small_run.reused and small_run.trials_done == 2 * 2 * 4 * 3
    for cell in m["cells"]:
        expected = 1.0 if cell["per_component"] >= cell["rank"] else 0.0
        assert cell["success_rate"] == expected, cell
        if cell["per_component"] >= cell["rank"]:
            assert cell["error_max"] < 1e-9 and cell["completion_error"] == 0.0
        else:
            assert cell["error_median"] > 0.3 and cell["completion_error"] > 0.3
    assert {(s["method"], s["components"]) for s in m["summary"]} == {("pca", 1), ("ksubspaces", 2)}
    for s in m["summary"]:
        assert s["ratio_star_mean"] == 1.0 and s["cells_agreeing_with_theorem"] == s["cells"] == 8
    assert all(t["ratio_star"] == 1.0 for t in m["transitions"])
    assert "success" in m["rules"] and m["config"]["threshold"] == 0.1 and m["provenance"]["git_commit"] is not None


def test_run_folder_files_and_reuse(small_run, tmp_path_factory):
    folder = small_run.path
    for name in ("config.json", "metrics.json", "trials.csv", "cells.csv", "phase.png", "phase.pdf"):
        assert (folder / name).exists(), name
    assert not [p for p in folder.iterdir() if p.name.startswith(".") and p.name != LOCK_FILE]  # no temporary files
    rows = read_csv(folder / "trials.csv")
    assert len(rows) == small_run.trials_done and {"error_max", "success", "residual"} <= set(rows[0])
    stored = json.loads((folder / "config.json").read_text())
    assert stored["config"]["per_component"] == [1, 2, 3, 4] and "seeds_rule" in stored["config"]
    again = run_subspace_recovery(SMALL, folder.parent)
    assert again.reused and again.metrics == json.loads((folder / "metrics.json").read_text())


def test_resume_after_a_time_limit_gives_the_straight_run(small_run, tmp_path):
    part = run_subspace_recovery(SMALL, tmp_path, deadline=0.0)
    assert not part.complete and part.trials_done == 0 and not (part.path / "metrics.json").exists()
    done = run_subspace_recovery(SMALL, tmp_path)
    assert done.complete and not done.reused
    straight = read_csv(small_run.path / "trials.csv")
    resumed = read_csv(done.path / "trials.csv")
    assert straight == resumed


def test_trials_depend_on_their_own_seed_only():
    few, more = replace(SMALL, trials=2), replace(SMALL, trials=4)
    method = KSubspacesMethod()
    a = run_cell(few, method, 2, 3, 2)
    b = run_cell(more, method, 2, 3, 2)
    assert a == b[:2]
    other_seed = run_cell(replace(few, seed=1), method, 2, 3, 2)
    assert [r["errors"] for r in other_seed] != [r["errors"] for r in a]


def test_unconstrained_method_runs():
    cfg = replace(SMALL, components=(2,), ranks=(2,), per_component=(2, 3), methods=("ksubspaces-free",))
    cfg.check()
    rows = run_cell(cfg, cfg.make_methods()[0], 2, 2, 3)
    assert all(r["success"] for r in rows)


@pytest.mark.parametrize("changes, needle", [
    (dict(ranks=(2, 30)), "exceeds --dim"),
    (dict(components=(3,), ranks=(9,)), "K * d"),
    (dict(per_component=(0, 2)), "N_k >= 1"),
    (dict(trials=0), "--trials"),
    (dict(threshold=-1.0), "--threshold"),
    (dict(methods=("svd",)), "--methods"),
    (dict(methods=("pca",), components=(2,)), "not applicable"),
    (dict(components=(2, 2)), "listed twice"),
])
def test_config_rejects_bad_values(changes, needle):
    with pytest.raises(InputError, match=needle):
        replace(SMALL, **changes).check()


# -- the command ------------------------------------------------------------------------------------------------------
def _cli(args, capsys):
    from mogsim.cli.app import main

    with pytest.raises(SystemExit) as exc:
        main(args)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


SMALL_ARGS = ["--dim", "24", "--components", "1,2", "--ranks", "2,3", "--nks", "1,2,3,4", "--trials", "3", "--quiet"]


def test_cli_prints_the_grid_and_reuses(small_run, capsys):
    out_dir = small_run.path.parent
    code, out, err = _cli(["subspace-recovery", *SMALL_ARGS, "--out", str(out_dir)], capsys)
    assert code == 0, err
    assert "pca, K = 1" in out and "ksubspaces, K = 2" in out and "N_k*/d" in out
    assert "8/8 cells agree with the theorem" in out and "reused finished results" in out


def test_cli_is_registered():
    from mogsim.cli.app import COMMAND_MODULES

    assert "subspace_recovery" in COMMAND_MODULES


@pytest.mark.parametrize("args, needle", [
    (["--ranks", "2,49"], "--ranks"),
    (["--components", "7", "--ranks", "8"], "K * d"),
    (["--nks", "0,2"], "--nks"),
    (["--nks", "2,x"], "--nks"),
    (["--methods", "pca,bogus"], "--methods"),
    (["--trials", "0"], "--trials"),
    (["--threshold", "0"], "--threshold"),
    (["--time-limit", "0"], "--time-limit"),
    (["--components", "1", "--methods", "ksubspaces"], "not applicable"),
])
def test_cli_bad_inputs_are_one_line_and_leave_no_files(args, needle, capsys, tmp_path):
    out_dir = tmp_path / "out"
    code, _, err = _cli(["subspace-recovery", "--out", str(out_dir), *args], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mogsim: error:") and needle in lines[0]
    assert not out_dir.exists()

"""The subspace-recovery experiment and the ``mogsim subspace-recovery`` command (paper 2, Fig. 4).

* On a small grid the estimators show the theorem's transition exactly: success rate 0 below N_k = d, 1 from it on.
* The trained low-rank denoiser (soft and hard gate) recovers the subspaces for N_k well above d and fails below
  (margins: errors ~1e-3 against the threshold 0.1 above, > 0.5 below), whatever the thread count.
* Estimator trials depend on their own seeds only; the run folder is complete, reused, and resumes after a time limit
  with the same numbers as a straight run (trained cells too).
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

SMALL = RecoveryConfig(dim=24, components=(1, 2), ranks=(2, 3), per_component=(1, 2, 3, 4), trials=3,
                       methods=("pca", "ksubspaces"))
#: the trained method on a tiny grid: N_k = 1 < d = 2 and N_k = 8 = 4 d
TRAINED = RecoveryConfig(dim=16, methods=("lowrank-net",), net_components=(1, 2), net_ranks=(2,), net_nks=(1, 8),
                         net_trials=4, net_starts=6, net_steps=300, net_batch=32)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    return run_subspace_recovery(SMALL, tmp_path_factory.mktemp("recovery"))


def test_small_grid_shows_the_transition_at_n_k_equal_d(small_run):
    m = small_run.metrics
    assert small_run.complete and not small_run.reused and small_run.done == 2 * 2 * 4 * 3
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
    assert len(rows) == small_run.done and {"error_max", "success", "residual"} <= set(rows[0])
    stored = json.loads((folder / "config.json").read_text())
    assert stored["config"]["per_component"] == [1, 2, 3, 4] and "seeds_rule" in stored["config"]
    again = run_subspace_recovery(SMALL, folder.parent)
    assert again.reused and again.metrics == json.loads((folder / "metrics.json").read_text())


def test_resume_after_a_time_limit_gives_the_straight_run(small_run, tmp_path):
    part = run_subspace_recovery(SMALL, tmp_path, deadline=0.0)
    assert not part.complete and part.done == 0 and not (part.path / "metrics.json").exists()
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
    (dict(ranks=(2, 30)), "exceeds dim"),
    (dict(components=(3,), ranks=(9,)), "K \\* d"),
    (dict(per_component=(0, 2)), "per_component"),
    (dict(trials=0), "trials"),
    (dict(threshold=-1.0), "threshold"),
    (dict(methods=("svd",)), "methods"),
    (dict(methods=("pca",), components=(2,)), "not applicable"),
    (dict(components=(2, 2)), "listed twice"),
    (dict(methods=("lowrank-net",), net_ranks=(30,)), "net_ranks"),
    (dict(methods=("lowrank-net",), net_components=(3,), net_ranks=(9,)), "net_components \\* net_ranks"),
    (dict(net_sigma_min=0.5), "net_sigma_min"),
])
def test_config_rejects_bad_values(changes, needle):
    with pytest.raises(InputError, match=needle):
        replace(SMALL, **changes)


def test_default_methods_are_those_that_apply():
    assert RecoveryConfig().methods == ("pca", "ksubspaces", "lowrank-net")
    assert RecoveryConfig(components=(2,), net_components=(2,)).methods == ("ksubspaces", "lowrank-net")
    full = RecoveryConfig()
    cells = {m.name: len(full.cells_for(m)) for m in full.make_methods()}
    assert cells == {"pca": 7 * 14, "ksubspaces": 2 * 7 * 14, "lowrank-net": 2 * 2 * 6}


# -- the trained low-rank denoiser ----------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["lowrank-net", "lowrank-net-hard"])
def test_trained_denoiser_recovers_above_d_and_fails_below(method):
    cfg = replace(TRAINED, methods=(method,))
    trained = cfg.make_methods()[0]
    for k in (1, 2):
        below = run_cell(cfg, trained, k, 2, 1)
        above = run_cell(cfg, trained, k, 2, 8)
        assert all(r["error_max"] > 0.5 and not r["success"] for r in below), below  # a direction is missing
        good = [r for r in above if r["success"]]
        assert len(good) >= (4 if k == 1 else 3), above  # K = 1 is PCA (no local minima); K = 2: 6 starts each
        assert all(r["error_max"] < 0.02 for r in good)  # far below the threshold 0.1
        assert all(r["starts"] == (1 if k == 1 else 6) and 0 <= r["start"] < r["starts"] for r in above)


def test_trained_cell_does_not_depend_on_the_thread_count():
    import torch

    trained = TRAINED.make_methods()[0]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run_cell(TRAINED, trained, 2, 2, 8)
        torch.set_num_threads(2)
        two = run_cell(TRAINED, trained, 2, 2, 8)
    finally:
        torch.set_num_threads(threads)
    assert [r["start"] for r in one] == [r["start"] for r in two]
    assert [r["error_max"] for r in one] == pytest.approx([r["error_max"] for r in two], abs=1e-4)


TINY_TRAINED = replace(TRAINED, net_components=(2,), net_trials=2, net_starts=2, net_steps=50)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    return run_subspace_recovery(TINY_TRAINED, tmp_path_factory.mktemp("trained"))


def test_trained_run_resumes_to_the_straight_run(trained_run, tmp_path):
    cfg, straight = TINY_TRAINED, trained_run
    part = run_subspace_recovery(cfg, tmp_path / "b", deadline=0.0)
    assert not part.complete
    done = run_subspace_recovery(cfg, tmp_path / "b")
    assert read_csv(done.path / "trials.csv") == read_csv(straight.path / "trials.csv")
    summary = straight.metrics["summary"]
    assert [(s["method"], s["components"], s["trials"], s["trained"]) for s in summary] == [("lowrank-net", 2, 2, True)]
    assert {"start", "starts", "selection_loss", "train_loss"} <= set(read_csv(straight.path / "trials.csv")[0])


# -- the command ------------------------------------------------------------------------------------------------------
def _cli(args, capsys):
    from mogsim.cli.app import main

    with pytest.raises(SystemExit) as exc:
        main(args)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


SMALL_ARGS = ["--dim", "24", "--components", "1,2", "--ranks", "2,3", "--nks", "1,2,3,4", "--trials", "3", "--quiet",
              "--methods", "pca,ksubspaces"]


def test_cli_prints_the_grid_and_reuses(small_run, capsys):
    out_dir = small_run.path.parent
    code, out, err = _cli(["subspace-recovery", *SMALL_ARGS, "--out", str(out_dir)], capsys)
    assert code == 0, err
    assert "pca, K = 1" in out and "ksubspaces, K = 2" in out and "N_k*/d" in out
    assert "8/8 cells agree with the theorem" in out and "reused finished results" in out


def test_cli_is_registered():
    from mogsim.cli.app import COMMAND_MODULES

    assert "subspace_recovery" in COMMAND_MODULES


def test_cli_config_file_sets_options(small_run, tmp_path, capsys):
    config = tmp_path / "grid.json"
    config.write_text(json.dumps({"dim": 24, "components": [1, 2], "ranks": [2, 3], "nks": [1, 2, 3, 4],
                                  "trials": 3, "methods": ["pca", "ksubspaces"]}))
    code, out, err = _cli(["subspace-recovery", "--config", str(config), "--quiet", "--out",
                           str(small_run.path.parent)], capsys)
    assert code == 0, err
    assert "reused finished results" in out  # the same configuration as SMALL, hence the same run folder


def test_report_prints_only_stored_numbers(small_run, trained_run, tmp_path):
    from test_report import check_report

    from mogsim.report import write_report

    result = write_report([small_run.path, trained_run.path], tmp_path / "r.pdf")
    assert [s.kind for s in result.sections] == ["subspace recovery"] * 2
    text = " ".join(check_report(result).split())
    assert "Noiseless recovery of the subspaces is exact if and only if" in text and "lowrank-net, K = 2" in text
    claims = result.sections[0].claims
    assert [c.agrees for c in claims] == ["yes", "yes", "not judged"]  # the stored labels, then the unjudged ratio


def test_cli_report_flag_writes_report_pdf(small_run, capsys):
    code, out, err = _cli(["subspace-recovery", *SMALL_ARGS, "--out", str(small_run.path.parent), "--report"], capsys)
    assert code == 0, err
    assert (small_run.path / "report.pdf").is_file()

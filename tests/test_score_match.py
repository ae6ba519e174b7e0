"""The score-matching experiment: batched members, training, evaluation against closed forms, the training-time
axis, run folders, sweeps (width axis, budget per sample, shards), CLI."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from mogsim.closed_forms import EmpiricalDenoiser
from mogsim.conventions import EDMPrecond
from mogsim.errors import InputError
from mogsim.experiments.score_match import (ScoreMatchConfig, SweepConfig, evaluate, export_compact, make_problem,
                                            run_score_match, run_sweep, train_members, training_config)
from mogsim.nets import MLP, PreconditionedDenoiser
from mogsim.runs import RunFolder, load_checkpoint, read_csv
from mogsim.training import RuntimeOptions, Trainer
from members import trainers_alone

#: A configuration small enough for a CPU test (the defaults are the real experiment's); no cost cap, so the time
#: axis evaluates every scheduled step whatever the machine's speed.
TINY = ScoreMatchConfig(rank=2, num_train=8, components=2, dim=8, width=32, depth=2, steps=40, batch=32,
                        eval_queries=64, sample_seeds=16, sampler_steps=6, eval_cost_cap=1e6)
CPU = torch.device("cpu")


def ensemble(members: int, dim: int, *, width: int, depth: int, sigma_data=0.5, seed: int = 0):
    """M independent MLPs with EDM preconditioning and one sigma_data each."""
    torch.manual_seed(seed)
    return PreconditionedDenoiser(MLP(dim, members=members, width=width, depth=depth), EDMPrecond(),
                                  sigma_data=sigma_data)


def group_folder(tmp_path: Path, name: str) -> RunFolder:
    return RunFolder(tmp_path / name, kind="test-group")



# -- batched members ---------------------------------------------------------------------------------------------------
def test_member_matches_its_slice_of_the_ensemble():
    ens = ensemble(3, 8, width=16, depth=3, sigma_data=[0.3, 0.5, 1.0], seed=1)
    x = torch.randn(3, 5, 8)
    sigma = torch.rand(3, 5) + 0.1
    full = ens.denoise(x, sigma)
    for m in range(3):
        alone = ens.member(m)(x[m], sigma[m])
        torch.testing.assert_close(alone, full[m], rtol=1e-5, atol=1e-6)


def test_members_are_independent_in_training():
    ens = ensemble(2, 6, width=8, depth=2)
    x = torch.randn(2, 4, 6)
    sigma = torch.ones(2, 4)
    ens.denoise(x, sigma)[0].pow(2).sum().backward()
    for p in ens.parameters():
        if p.grad is not None:
            assert torch.all(p.grad[1] == 0)


def test_fresh_member_is_the_skip_connection():
    ens = ensemble(1, 4, width=8, depth=1, sigma_data=0.5)
    x = torch.randn(3, 4, dtype=torch.float64)
    c_skip = 0.25 / (1.0 + 0.25)
    torch.testing.assert_close(ens.member(0)(x, 1.0), c_skip * x, rtol=0, atol=1e-4)


def test_member_rejects_bad_inputs():
    d = ensemble(1, 4, width=8, depth=3).member(0)
    with pytest.raises(InputError):
        d(torch.zeros(2, 5), 1.0)
    with pytest.raises(InputError):
        d(torch.zeros(2, 4), 0.0)


# -- training ----------------------------------------------------------------------------------------------------------
def test_tiny_training_lowers_the_loss():
    cfg = replace(TINY, steps=150, lr=3e-3)
    _, train = make_problem(cfg)
    trainer = Trainer(training_config([cfg]), [train.float()], runtime=RuntimeOptions(log_every=10, progress="none"))
    out = trainer.fit(150)
    losses = [row[1] for row in trainer.history]
    assert out["complete"] and out["steps"] == 150 and len(losses) == 15
    assert np.mean(losses[-3:]) < 0.85 * np.mean(losses[:3])


def _same_checkpoints(a: dict, b: dict) -> None:
    """Weights, EMA, optimizer state and loss history agree bitwise."""
    assert a["step"] == b["step"]
    for key in ("net", "ema"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name}"
    assert a["optimizer"]["steps"] == b["optimizer"]["steps"]
    for name in ("exp_avg", "exp_avg_sq"):
        assert all(torch.equal(x, y) for x, y in zip(a["optimizer"][name], b["optimizer"][name], strict=True))
    assert a["loss"]["history"] == b["loss"]["history"] and len(a["loss"]["history"]) >= 1


def test_interrupted_training_resumes_exactly(tmp_path):
    cfgs = [replace(c, steps=120) for c in (TINY, replace(TINY, num_train=4))]
    sets = [make_problem(c)[1] for c in cfgs]
    straight = train_members(cfgs, sets, group_folder(tmp_path, "straight"), None, CPU)
    part = train_members(cfgs, sets, group_folder(tmp_path, "cut"), None, CPU, deadline=0.0)
    assert not part.complete and part.summary["steps"] == 1
    resume = group_folder(tmp_path, "cut").latest_checkpoint()
    assert resume is not None and resume.name == "ckpt-000000001.pt"
    rest = train_members(cfgs, sets, group_folder(tmp_path, "cut"), resume, CPU)
    assert rest.complete and rest.summary["steps"] == 120 and rest.resumed_at_step == 1
    for a, b in zip(straight.denoiser.state_dict().values(), rest.denoiser.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    _same_checkpoints(load_checkpoint(group_folder(tmp_path, "straight").latest_checkpoint()),
                      load_checkpoint(group_folder(tmp_path, "cut").latest_checkpoint()))
    assert straight.history == rest.history and len(rest.history) == 3  # a row every 50 steps and at the end


def test_ctrl_c_saves_state_and_resumes_exactly(tmp_path):
    cfg = replace(TINY, steps=120)
    sets = [make_problem(cfg)[1]]
    straight = train_members([cfg], sets, group_folder(tmp_path, "straight"), None, CPU)
    calls = {"n": 0}

    def interrupt(k: int, note: str | None = None) -> None:
        calls["n"] += k
        if calls["n"] == 70:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_members([cfg], sets, group_folder(tmp_path, "cut"), None, CPU, progress=lambda d, t: interrupt)
    saved = group_folder(tmp_path, "cut").latest_checkpoint()
    assert load_checkpoint(saved)["step"] == 70  # mid log interval: its running loss sums are saved too
    rest = train_members([cfg], sets, group_folder(tmp_path, "cut"), saved, CPU)
    for a, b in zip(straight.denoiser.state_dict().values(), rest.denoiser.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    _same_checkpoints(load_checkpoint(group_folder(tmp_path, "straight").latest_checkpoint()),
                      load_checkpoint(group_folder(tmp_path, "cut").latest_checkpoint()))


def test_training_recipe_rejects_bad_values():
    with pytest.raises(InputError, match="steps"):
        replace(TINY, steps=0)
    with pytest.raises(InputError, match="lr"):
        replace(TINY, lr=-1.0)


# -- evaluation against the closed forms -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_problem():
    cfg = replace(TINY, num_train=6)
    mol, train = make_problem(cfg)
    return cfg, mol, train


def test_true_denoiser_as_model_scores_zero_against_truth(tiny_problem):
    cfg, mol, train = tiny_problem
    ev = evaluate(mol, mol, train, cfg, CPU)
    m = ev.metrics
    assert m["l_score_true"] < 1e-20 and m["l_score_true_train_queries"] < 1e-20
    assert m["l_score_empirical"] > 0.1
    assert m["verdict"] == "generalizing" and m["verdict_detail"]["verdict"] == "generalizing"
    assert m["rp_net_true"] == 1.0 and m["on_subspace_fraction_net"] == 1.0 and m["kappa"] == 0.0
    assert m["worst_rel_true_fresh"] == 0.0 and m["copy_fraction_net"] == m["copy_fraction_true"]
    assert np.all(ev.per_sample["rel_distance_net_true"] == 0)


def test_empirical_denoiser_as_model_scores_zero_against_empirical(tiny_problem):
    cfg, mol, train = tiny_problem
    emp = EmpiricalDenoiser(train, compute_dtype=torch.float64)
    m = evaluate(emp, mol, train, cfg, CPU).metrics
    assert m["l_score_empirical"] < 1e-20 and m["l_score_empirical_train_queries"] < 1e-20
    assert m["l_score_true"] > 0.1
    assert m["verdict"] == "memorizing" and m["worst_rel_empirical_train"] == 0.0
    assert m["copy_fraction_net"] == 1.0 and m["rp_net_empirical"] == 1.0 and m["kappa"] == 1.0


def test_problem_is_seeded_and_balanced():
    mol_a, a = make_problem(TINY)
    mol_b, b = make_problem(TINY)
    assert torch.equal(a, b) and torch.equal(mol_a.bases, mol_b.bases)
    assert torch.equal(make_problem(replace(TINY, num_train=4))[0].bases, mol_a.bases)  # subspaces: not on N
    labels = mol_a.posterior_weights(a, 1e-3).argmax(dim=1)
    assert torch.bincount(labels).tolist() == [4, 4]


@pytest.mark.parametrize("change, option", [
    (dict(rank=5), "components=2 \\* rank=5"),
    (dict(num_train=0), "num_train"),
    (dict(num_train=7), "num_train=7: must be a multiple of components=2"),
    (dict(arch="transformer"), "arch"),
    (dict(arch="unet", dim=20), "dim"),
    (dict(steps=0), "steps"),
    (dict(steps=10**20), "steps"),
    (dict(lr=float("nan")), "lr"),
])
def test_config_rejects_bad_values(change, option):
    """The library names its parameters (the command line rewrites them to flags: test_cli_bad_inputs...)."""
    with pytest.raises(InputError, match=option):
        replace(TINY, **change).check()


# -- run folders -------------------------------------------------------------------------------------------------------
def test_run_folder_is_written_and_reused(tmp_path):
    res = run_score_match(TINY, tmp_path, device="cpu", report=True)
    assert not res.reused
    files = {p.name for p in res.path.iterdir()}
    assert {"config.json", "metrics.json", "per_sigma.csv", "per_sigma.png", "checkpoints", "log.csv", "samples.npz",
            "time.csv", "time_axis.csv", "time_axis.json", "report.pdf"} <= files
    assert [s for s, _ in RunFolder(res.path).checkpoints()] == [TINY.steps]  # only the final state is kept
    m = json.loads((res.path / "metrics.json").read_text())
    assert isinstance(m["l_score_true"], float) and isinstance(m["l_score_empirical"], float)
    assert m["verdict"] in ("memorizing", "generalizing", "in transition", "neither")
    assert m["verdict_detail"]["verdict"] == m["verdict"] and m["verdict_detail"]["rule"]
    times = read_csv(res.path / "time.csv")
    assert [int(r["step"]) for r in times] == TINY.eval_schedule() == m["time_axis"]["evaluated"]
    assert times[-1]["verdict"] == m["verdict"] and float(times[-1]["kappa"]) == m["kappa"]
    assert set(m["time_axis"]["events"]) == {"memorization_onset", "memorization_majority", "accurate", "generalizing"}
    stored = json.loads((res.path / "config.json").read_text())
    assert stored["config"]["derived_seeds"] == TINY.seeds() and stored["provenance"]["versions"]["torch"]
    again = run_score_match(TINY, tmp_path, device="cpu")
    assert again.reused and again.metrics["l_score_true"] == m["l_score_true"]
    other = run_score_match(replace(TINY, steps=42), tmp_path, device="cpu")
    assert not other.reused and other.path != res.path


def test_run_resumes_after_time_limit(tmp_path):
    part = run_score_match(TINY, tmp_path, device="cpu", deadline=0.0)
    assert not part.complete and [s for s, _ in RunFolder(part.path).checkpoints()] == [1]
    assert [int(r["step"]) for r in read_csv(part.path / "time_axis.csv")] == [1]  # the first point is judged
    done = run_score_match(TINY, tmp_path, device="cpu")
    assert done.complete and done.resumed_at_step == 1
    assert [s for s, _ in RunFolder(done.path).checkpoints()] == [TINY.steps]
    fresh = run_score_match(TINY, tmp_path / "b", device="cpu")
    assert fresh.metrics["l_score_true"] == done.metrics["l_score_true"]
    assert fresh.metrics["loss_history"] == done.metrics["loss_history"]
    assert fresh.metrics["verdict_detail"]["per_level"] == done.metrics["verdict_detail"]["per_level"]
    assert _time_numbers(fresh.path) == _time_numbers(done.path)  # the whole time axis, resumed mid-way


def _time_numbers(path: Path) -> list[dict]:
    return read_csv(path / "time.csv")


def test_resume_in_the_middle_of_the_time_axis(tmp_path):
    """Stopped between two evaluated steps (a checkpoint mid-segment), the run resumes there and ends with the rows
    and weights of an uninterrupted run."""
    cfg = replace(TINY, steps=120, eval_steps=4)
    straight = run_score_match(cfg, tmp_path / "a", device="cpu")
    calls = {"n": 0}

    def stop_at_70(description, total):
        def advance(k, note=None):
            calls["n"] += k
            if calls["n"] >= 70 and description.startswith("training"):
                raise KeyboardInterrupt
        return advance

    with pytest.raises(KeyboardInterrupt):
        run_score_match(cfg, tmp_path / "b", device="cpu", progress=stop_at_70)
    folder = next((tmp_path / "b").iterdir())
    assert [s for s, _ in RunFolder(folder).checkpoints()] == [70]
    done = run_score_match(cfg, tmp_path / "b", device="cpu")
    assert done.resumed_at_step == 70 and cfg.eval_schedule() == [1, 5, 24, 120]
    assert _time_numbers(done.path) == _time_numbers(straight.path)
    assert done.metrics["verdict_detail"]["samples"] == straight.metrics["verdict_detail"]["samples"]


def test_cost_cap_skips_intermediate_points_and_records_them(tmp_path):
    res = run_score_match(replace(TINY, eval_cost_cap=0.0), tmp_path, device="cpu")
    axis = res.metrics["time_axis"]
    assert axis["evaluated"] == [1, TINY.steps]  # the first point is measured; none fits in a cap of 0
    assert axis["skipped"] == TINY.eval_schedule()[1:-1] and axis["cap"] == 0.0
    assert len(axis["point_seconds"]) == 1 and axis["extra_fraction"] == axis["point_seconds"][0] / axis["train_seconds"]
    assert [int(r["step"]) for r in read_csv(res.path / "time.csv")] == [1, TINY.steps]


# -- sweep -------------------------------------------------------------------------------------------------------------
def test_sweep_writes_combined_results_and_resumes(tmp_path):
    sweep = SweepConfig(base=replace(TINY, steps=30), ranks=(1, 2), train_sizes=(2, 4, 8), seeds=(0,), group_size=4)
    part = run_sweep(sweep, tmp_path, device="cpu", deadline=0.0, report=False)
    assert not part.complete
    res = run_sweep(sweep, tmp_path, device="cpu")
    assert res.complete and len(res.rows) == 6
    for name in ("sweep_table.csv", "sweep_per_sigma.csv", "sweep_time.csv", "sweep_metrics.json", "sweep_fig5.png",
                 "sweep_time.png", "sweep_report.pdf"):
        assert (res.path / name).exists(), name
    summary = json.loads((res.path / "sweep_metrics.json").read_text())
    found = summary["analysis"]["by_width"]["32"]
    assert set(found["n_star"]["measures"]["rp_net_true"]["n_star"]) == {"1", "2"}
    assert {"verdict_generalizing", "verdict_memorizing", "copy_excess_normalised"} <= set(found["n_star"]["measures"])
    assert set(found["time"]["events"]) == {"memorization_onset", "memorization_majority", "accurate", "generalizing"}
    assert summary["budget"]["steps"] == 30 and [c["agrees"] for c in summary["paper_claims"]]
    times = read_csv(res.path / "sweep_time.csv")
    assert len(times) == 6 * len(sweep.base.eval_schedule())
    table = read_csv(res.path / "sweep_table.csv")
    assert {"width", "kappa", "copy_fraction_true", "worst_rel_true_fresh", "rp_net_true", "on_subspace_fraction_net",
            "verdict", "position_train_fixed"} <= set(table[0])
    again = run_sweep(sweep, tmp_path, device="cpu", report=False)
    assert again.reused_cells == 6
    copied = export_compact(res.path, tmp_path / "export")
    assert 5 <= len(copied) <= 8 and all(p.parent == tmp_path / "export" for p in copied)
    assert (tmp_path / "export" / "sweep_time.csv").exists()


def test_shards_partition_the_groups_and_merge_to_the_single_process_results(tmp_path):
    sweep = SweepConfig(base=replace(TINY, steps=12, eval_steps=3), ranks=(1, 2), train_sizes=(2, 4, 8),
                        seeds=(0,), group_size=2)
    assert [len(g) for g in sweep.groups()] == [2, 2, 2]
    from mogsim.experiments.score_match.sweep import shard_groups

    parts = [shard_groups(3, (i, 2)) for i in range(2)]
    assert parts == [[0, 2], [1]] and sorted(sum(parts, [])) == [0, 1, 2]
    with pytest.raises(InputError, match="shard"):
        shard_groups(3, (0, 4))
    one = run_sweep(sweep, tmp_path / "one", device="cpu", report=False)
    first = run_sweep(sweep, tmp_path / "sharded", device="cpu", report=False, shard=(0, 2))
    assert not first.complete and first.cells_done == 4
    second = run_sweep(sweep, tmp_path / "sharded", device="cpu", report=False, shard=(1, 2))
    assert second.complete and second.cells_done == 6
    for name in ("sweep_table.csv", "sweep_time.csv", "sweep_per_sigma.csv"):
        assert read_csv(second.path / name) == read_csv(one.path / name), name
    merged = json.loads((second.path / "sweep_metrics.json").read_text())
    single = json.loads((one.path / "sweep_metrics.json").read_text())
    assert merged["analysis"] == single["analysis"] and merged["paper_claims"] == single["paper_claims"]


def test_width_axis_and_budget_per_sample(tmp_path):
    base = replace(TINY, budget_per_sample=64.0, eval_steps=2)
    assert replace(base, num_train=8).steps == 16 and replace(base, num_train=4).steps == 8  # ceil(64 N / 32)
    assert base.budget()["convention"].startswith("steps scale with N")
    sweep = SweepConfig(base=base, ranks=(1,), train_sizes=(4, 8), seeds=(0,), widths=(16, 24))
    groups = sweep.groups()  # one group per (width, steps)
    assert [(g[0].width, g[0].steps, len(g)) for g in groups] == [(16, 8, 1), (16, 16, 1), (24, 8, 1), (24, 16, 1)]
    res = run_sweep(sweep, tmp_path, device="cpu", report=False)
    assert res.complete and sorted({int(r["width"]) for r in res.rows}) == [16, 24]
    assert {r["steps"] for r in res.rows} == {8, 16}
    summary = json.loads((res.path / "sweep_metrics.json").read_text())
    assert set(summary["analysis"]["by_width"]) == {"16", "24"}
    assert summary["budget"]["budget_per_sample"] == 64.0 and summary["budget"]["steps"] is None


def test_eval_schedule():
    from mogsim.experiments.score_match.config import eval_schedule

    assert eval_schedule(30000, 10) == [30, 65, 139, 300, 646, 1392, 3000, 6463, 13925, 30000]
    assert eval_schedule(40, 10)[-1] == 40 and eval_schedule(40, 10)[0] == 1
    assert eval_schedule(5, 10) == [1, 2, 3, 4, 5] and eval_schedule(100, 1) == [100]


# -- command line ------------------------------------------------------------------------------------------------------
def _cli(args, capsys):
    from mogsim.cli.app import main

    with pytest.raises(SystemExit) as exc:
        main(args)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


TINY_ARGS = ["--rank", "2", "--n", "8", "--dim", "8", "--width", "32", "--depth", "2", "--steps", "40", "--batch",
             "32", "--eval-queries", "64", "--sample-seeds", "16", "--device", "cpu", "--quiet"]


def test_cli_smoke_run_writes_run_folder(tmp_path, capsys):
    code, out, err = _cli(["score-match", *TINY_ARGS, "--out", str(tmp_path)], capsys)
    assert code == 0, err
    assert "verdict:" in out and "run folder:" in out
    folders = list(tmp_path.iterdir())
    assert len(folders) == 1 and (folders[0] / "metrics.json").exists()
    code, out, _ = _cli(["score-match", *TINY_ARGS, "--out", str(tmp_path)], capsys)
    assert code == 0 and "reused finished results" in out


@pytest.mark.parametrize("args, needle", [
    (["--rank", "30", "--components", "2", "--dim", "48"], "--rank"),
    (["--n", "0"], "--n"),
    (["--arch", "resnet"], "--arch"),
    (["--ns", "16,x"], "--ns"),
    (["--sweep", "--ns", "16,48,...,4096"], "--ns"),
])
def test_cli_bad_inputs_give_one_line_errors(args, needle, capsys, tmp_path):
    code, _, err = _cli(["score-match", "--out", str(tmp_path), *args], capsys)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mogsim: error:") and needle in lines[0]


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_cli_unwritable_out_as_user(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    code, _, err = _cli(["score-match", *TINY_ARGS, "--out", str(locked / "x")], capsys)
    assert code != 0 and "--out" in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux /proc (not writable, even for root)")
def test_cli_unwritable_out(capsys):
    code, _, err = _cli(["score-match", *TINY_ARGS, "--out", "/proc/mogsim-test/out"], capsys)
    assert code != 0 and "--out" in err and "writable" in err and len(err.strip().splitlines()) == 1


def test_cli_out_that_is_a_file(tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("x")
    code, _, err = _cli(["score-match", *TINY_ARGS, "--out", str(target)], capsys)
    assert code != 0 and "--out" in err and len(err.strip().splitlines()) == 1


def test_parse_int_list():
    from mogsim.parsing import parse_int_list

    assert parse_int_list("16,32,...,4096", option="--ns") == tuple(2**k for k in range(4, 13))
    assert parse_int_list("2,4,6,...,12", option="--ranks") == (2, 4, 6, 8, 10, 12)
    assert parse_int_list("2,4,6,8", option="--ranks") == (2, 4, 6, 8)
    with pytest.raises(InputError):
        parse_int_list("16,32,...,100", option="--ns")


def test_unet_arch_runs_or_says_why(tmp_path):
    cfg = replace(TINY, arch="unet", dim=16, width=8, steps=3, batch=8)
    res = run_score_match(cfg, tmp_path, device="cpu")
    assert res.complete and np.isfinite(res.metrics["l_score_true"])


def test_cli_config_file_sweep(tmp_path, capsys):
    cfg = {"rank": 2, "n": 8, "dim": 8, "width": 16, "depth": 2, "steps": 20, "batch": 16, "eval_queries": 32,
           "sample_seeds": 16, "sampler_steps": 6, "sweep": True, "ranks": [1, 2], "ns": [4, 8], "device": "cpu"}
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(cfg))
    code, out, err = _cli(["score-match", "--config", str(path), "--quiet", "--out", str(tmp_path / "o"),
                           "--export", str(tmp_path / "e")], capsys)
    assert code == 0, err
    assert "N*(r)" in out and (tmp_path / "e" / "sweep_table.csv").exists()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rnak": 2}))
    code, _, err = _cli(["score-match", "--config", str(bad)], capsys)
    assert code == 2 and "rnak" in err and len(err.strip().splitlines()) == 1


def test_cli_says_when_it_resumed(tmp_path, capsys):
    code, out, _ = _cli(["score-match", *TINY_ARGS, "--out", str(tmp_path), "--time-limit", "1e-9"], capsys)
    assert code == 3 and "state saved" in out
    code, out, _ = _cli(["score-match", *TINY_ARGS, "--out", str(tmp_path)], capsys)
    assert code == 0 and "resumed training at step 1 of 40" in out and "verdict:" in out


def test_a_second_process_on_the_same_run_stops_with_one_line(tmp_path, capsys):
    from mogsim.experiments.score_match.run import RUN_KIND

    cfg = replace(TINY, sampler_steps=18, eval_cost_cap=ScoreMatchConfig().eval_cost_cap)  # what TINY_ARGS give
    folder = RunFolder.keyed(tmp_path, cfg.slug(), cfg.resolved(CPU), kind=RUN_KIND)
    with folder.locked():  # as another process training this configuration would
        code, _, err = _cli(["score-match", *TINY_ARGS, "--out", str(tmp_path)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "another mogsim process" in err and "--out" in err
    assert not (folder.path / "config.json").exists()


def test_the_sweep_script_runs_without_typer_rich_or_matplotlib(tmp_path):
    """scripts/score_match_sweep.py is a thin call of the package and needs only torch and numpy: importing typer,
    click, rich, matplotlib or reportlab fails in this run, and the sweep still finishes (figures left for later)."""
    import subprocess
    import sys
    import textwrap

    root = Path(__file__).resolve().parents[1]
    guard = textwrap.dedent(f"""
        import builtins, runpy, sys
        real = builtins.__import__
        def guarded(name, *args, **kwargs):
            if name.split(".")[0] in ("typer", "click", "rich", "matplotlib", "reportlab"):
                raise ImportError("not installed here: " + name)
            return real(name, *args, **kwargs)
        builtins.__import__ = guarded
        sys.argv = ["score_match_sweep.py", "--ranks", "1", "--ns", "4,8", "--dim", "8", "--width", "16",
                    "--depth", "2", "--steps", "10", "--batch", "16", "--eval-queries", "16", "--sample-seeds", "16",
                    "--sampler-steps", "4", "--device", "cpu", "--out", {str(tmp_path)!r}]
        runpy.run_path({str(root / "scripts" / "score_match_sweep.py")!r}, run_name="__main__")
    """)
    proc = subprocess.run([sys.executable, "-c", guard], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "2/2 cells done" in proc.stdout and "training group 1/1" in proc.stderr
    summary = json.loads(next(tmp_path.glob("sweep_*/sweep_metrics.json")).read_text())
    assert summary["figures"].startswith("not drawn") and "--redraw" in summary["figures"]


# -- UNet cells as the members of one model; paper 2's N_k / d axis ----------------------------------------------------
UNET = replace(TINY, arch="unet", dim=16, width=8, steps=8, batch=8, eval_steps=2)


def test_unet_cells_of_a_group_train_as_they_would_alone():
    """Mirrors the MLP's member test (test_member_axis.py) through the score-match recipe: a 2-member UNet group
    (different ranks, so different sigma_data and data) and two one-member trainers started from the members'
    weights and fed the same rows of every step's draws have the same losses, weights, EMA and Adam moments
    (bitwise on the CPU: each member is its own module, Adam and the EMA are element-wise)."""
    cfgs = [replace(UNET, rank=1, num_train=4), replace(UNET, rank=2, num_train=8)]
    sets = [make_problem(c)[1].float() for c in cfgs]
    recipe = training_config(cfgs)
    assert recipe.members == 2 and recipe.sigma_data == tuple(c.sigma_data for c in cfgs)
    assert recipe.net["family"] == "unet-vector" and "members" not in training_config(cfgs[:1]).net["kwargs"]
    quiet = RuntimeOptions(progress="none", log_every=2, checkpoint_every=0)
    group = Trainer(recipe, sets, runtime=quiet)
    alone = trainers_alone(group, [training_config([c]) for c in cfgs], sets, quiet)
    for step in range(4):
        loss_group, _ = group.train_step(step)
        for m, one in enumerate(alone):
            assert torch.equal(loss_group[m:m + 1], one.train_step(step)[0])
    for m, one in enumerate(alone):
        for a, b in zip(one.net.parameters(), group.net.member(m).parameters()):
            assert torch.equal(a, b)
        for a, b in zip(one.ema.module.parameters(), group.ema.module.member(m).parameters()):
            assert torch.equal(a, b)


def test_unet_sweep_over_nk_over_d_groups_resumes_and_writes_the_collapse(tmp_path):
    sweep = SweepConfig(base=UNET, ranks=(1, 2), nk_over_d=(2, 4), seeds=(0,))
    assert sweep.group_size == 8 and SweepConfig(base=TINY, ranks=(1,)).group_size == 0  # the defaults per arch
    assert [(c.rank, c.num_train) for c in sweep.cells()] == [(1, 4), (1, 8), (2, 8), (2, 16)]  # N = K * v * r
    assert sweep.resolved(CPU)["nk_over_d"] == [2, 4] and sweep.resolved(CPU)["train_sizes"] == [4, 8, 16]
    assert "nk_over_d" not in SweepConfig(base=TINY, ranks=(1,)).resolved(CPU)  # earlier sweeps keep their keys
    two = replace(sweep, group_size=2)
    assert [len(g) for g in two.groups()] == [2, 2]
    straight = run_sweep(two, tmp_path / "straight", device="cpu", report=False)
    part = run_sweep(two, tmp_path / "cut", device="cpu", deadline=0.0, report=False)
    assert not part.complete and part.cells_done == 0
    stopped = json.loads((part.path / "sweep_collapse.json").read_text())
    assert stopped["cells_only_on_the_time_axis"] == 2 and [e["step"] for e in stopped["over_time"]] == [1]
    done = run_sweep(two, tmp_path / "cut", device="cpu", report=False)
    assert done.complete and done.cells_done == 4
    for name in ("sweep_table.csv", "sweep_time.csv", "sweep_collapse.csv"):
        assert read_csv(done.path / name) == read_csv(straight.path / name), name
    found = json.loads((done.path / "sweep_collapse.json").read_text())
    assert set(found["final"]["per_d"]) == {"1", "2"} and found["final"]["pooled"]["nk_over_d"] == [2.0, 4.0]
    assert [e["images_seen"] for e in found["over_time"]] == [s * UNET.batch for s in UNET.eval_schedule()]
    summary = json.loads((done.path / "sweep_metrics.json").read_text())
    assert summary["collapse"]["file"] == "sweep_collapse.json"
    assert set(summary["collapse"]["crossing_per_d"]) == {"1", "2"}
    assert {"sweep_collapse.png", "sweep_collapse.pdf"} <= {p.name for p in done.path.iterdir()}


@pytest.mark.parametrize("change, option", [
    (dict(nk_over_d=(4, 8), train_sizes=(16, 32)), "train_sizes and nk_over_d"),
    (dict(nk_over_d=(4, 4)), "nk_over_d=4,4"),
    (dict(nk_over_d=(0,)), "nk_over_d"),
    (dict(nk_over_d=()), "nk_over_d"),
    (dict(group_size=-1), "group_size"),
])
def test_sweep_rejects_bad_n_axes(change, option):
    with pytest.raises(InputError, match=option):
        SweepConfig(base=UNET, ranks=(1,), **change)


@pytest.mark.parametrize("args, needle", [
    (["--sweep", "--nk-over-d", "4,x"], "--nk-over-d"),
    (["--nk-over-d", "4,8"], "--nk-over-d"),
    (["--sweep", "--nk-over-d", "4,8", "--ns", "16,32"], "--nk-over-d"),
])
def test_cli_bad_n_axes_give_one_line_errors(args, needle, capsys, tmp_path):
    code, _, err = _cli(["score-match", "--out", str(tmp_path / "o"), *args], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("mogsim: error:") and needle in lines[0]
    assert not (tmp_path / "o").exists()


def test_a_group_that_finished_training_is_evaluated_past_the_deadline(tmp_path):
    """One step per cell and a deadline already passed: the first group still trains its one step (a launch makes
    at least one) and, trained, is judged and recorded (seconds; its training is what cost the time); the sweep
    then stops before the next group."""
    sweep = SweepConfig(base=replace(UNET, steps=1, eval_steps=1), ranks=(1, 2), nk_over_d=(2,), group_size=1)
    part = run_sweep(sweep, tmp_path, device="cpu", deadline=0.0, report=False)
    assert not part.complete and part.cells_done == 1 and len(sweep.groups()) == 2
    assert run_sweep(sweep, tmp_path, device="cpu", report=False).cells_done == 2

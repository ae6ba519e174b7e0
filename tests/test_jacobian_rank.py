"""``mogsim jacobian-rank`` (paper 2, Fig. 3): the experiment, its run folder, the command and its report section.

* The MoLRG closed form gives rank K d at the largest noise level and d at the smallest, for every seed; the stored
  claims say "yes"; a seed's ranks do not depend on the other seeds; the run resumes after a time limit to the
  straight run's ranks and is reused when finished.
* Trained networks from run folders: a score-match MLP (its d and K are the reference) and a ``mogsim train`` UNet,
  which near sigma = 0 is close to the identity (EDM/VP skip connection) and so nearly full rank.
* Known answers through the command: a one-component MoLRG (a projection, rank d at every level) and a train run
  with zeroed weights (the identity, ceil(0.9801 n) of n); the violin's rank axis separates small ranks at n = 3,072.
* The report prints only stored numbers (checked as in test_report); bad inputs are rows of test_bad_inputs.py.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from mogsim.experiments.jacobian_rank import JacobianConfig, run_jacobian_rank
from mogsim.runs import read_csv

SMALL = JacobianConfig(rank=2, components=3, dim=12, seeds=(0, 1, 2, 3), sampler_steps=8)


@pytest.fixture(scope="module")
def molrg_run(tmp_path_factory):
    return run_jacobian_rank(SMALL, tmp_path_factory.mktemp("jr"), device="cpu")


def test_closed_form_rank_is_kd_at_low_snr_and_d_at_high_snr(molrg_run):
    m = molrg_run.metrics
    assert molrg_run.complete and not molrg_run.reused and m["dim"] == 12 and m["dtype"] == "float64"
    levels = m["levels"]
    assert len(levels) == 8 and levels[0]["sigma"] == 80.0 and levels[-1]["sigma"] == pytest.approx(0.002)
    assert (levels[0]["rank_min"], levels[0]["rank_max"]) == (6, 6)  # K d at sigma = 80, every seed
    assert (levels[-1]["rank_min"], levels[-1]["rank_max"]) == (2, 2)  # d at sigma = 0.002
    assert m["reference_ranks"] == {"high_snr": 2, "low_snr": 6, "fraction_equal_at_high_snr": 1.0,
                                    "fraction_equal_at_low_snr": 1.0}
    assert [c["agrees"] for c in m["paper_claims"]] == ["yes", "yes"]
    rows = read_csv(molrg_run.path / "ranks.csv")
    assert len(rows) == 8 * 4 and {r["seed"] for r in rows} == {"0", "1", "2", "3"}
    for name in ("config.json", "metrics.json", "violin.png", "violin.pdf"):
        assert (molrg_run.path / name).is_file()
    stored = json.loads((molrg_run.path / "config.json").read_text())
    assert stored["format"] == "mogsim-jacobian-rank" and stored["config"]["reference"] == {"rank": 2, "components": 3}


def test_reuse_resume_and_seed_independence(molrg_run, tmp_path):
    again = run_jacobian_rank(SMALL, molrg_run.path.parent, device="cpu")
    assert again.reused and again.metrics == molrg_run.metrics
    part = run_jacobian_rank(SMALL, tmp_path, device="cpu", deadline=0.0)  # stops after the first level
    assert not part.complete and part.done == 1 and not (part.path / "metrics.json").exists()
    done = run_jacobian_rank(SMALL, tmp_path, device="cpu")
    columns = ("level", "sigma", "seed", "rank")
    pick = lambda rows: [tuple(r[c] for c in columns) for r in rows]  # noqa: E731 - seconds differ, ranks not
    assert pick(read_csv(done.path / "ranks.csv")) == pick(read_csv(molrg_run.path / "ranks.csv"))
    fewer = run_jacobian_rank(replace(SMALL, seeds=(2, 3)), tmp_path, device="cpu")
    mine = [(r["level"], r["seed"], r["rank"]) for r in read_csv(fewer.path / "ranks.csv")]
    theirs = [(r["level"], r["seed"], r["rank"]) for r in read_csv(molrg_run.path / "ranks.csv") if r["seed"] in "23"]
    assert mine == theirs


def _cli(args, capsys):
    from mogsim.cli.app import main

    with pytest.raises(SystemExit) as exc:
        main(args)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory):
    """A tiny score-match run (MLP on an MoLRG) and a tiny mogsim train run (unet-tiny on random 3x8x8 images)."""
    from mogsim.cli.app import main

    root = tmp_path_factory.mktemp("trained")
    with pytest.raises(SystemExit) as exc:
        main(["score-match", "--rank", "2", "--dim", "8", "--width", "32", "--depth", "2", "--steps", "30", "--batch",
              "32", "--eval-queries", "32", "--sample-seeds", "16", "--device", "cpu", "--quiet", "--n", "8",
              "--out", str(root / "sm")])
    assert exc.value.code == 0
    np.save(root / "img.npy", np.random.default_rng(0).uniform(-1, 1, (8, 3, 8, 8)).astype(np.float32))
    with pytest.raises(SystemExit) as exc:
        main(["train", "--data", str(root / "img.npy"), "--out", str(root / "train"), "--arch", "unet-tiny", "--width",
              "8", "--batch", "4", "--device", "cpu", "--precond", "vp", "--steps", "2", "--no-progress"])
    assert exc.value.code == 0
    return {"sm": next((root / "sm").iterdir()), "train": root / "train"}


def test_score_match_network(trained_runs, tmp_path, capsys):
    code, out, err = _cli(["jacobian-rank", "--run", str(trained_runs["sm"]), "--seeds", "0-2", "--sampler-steps",
                           "4", "--out", str(tmp_path), "--quiet", "--device", "cpu"], capsys)
    assert code == 0, err
    assert "score-match network" in out and "reference (the MoLRG closed form): d = 2" in out
    (folder,) = tmp_path.iterdir()
    m = json.loads((folder / "metrics.json").read_text())
    assert m["dim"] == 8 and m["dtype"] == "float32" and m["reference"] == {"rank": 2, "components": 2}
    assert m["model"]["checkpoint_sha256"] and len(m["paper_claims"]) == 1  # the closed-form claim is not its own


def test_train_run_unet_is_nearly_full_rank_at_small_sigma(trained_runs, tmp_path, capsys):
    code, out, err = _cli(["jacobian-rank", "--run", str(trained_runs["train"]), "--seeds", "0-1", "--sampler-steps",
                           "3", "--out", str(tmp_path), "--quiet", "--device", "cpu", "--max-batch", "96"], capsys)
    assert code == 0, err
    (folder,) = tmp_path.iterdir()
    m = json.loads((folder / "metrics.json").read_text())
    assert m["dim"] == 192 and m["reference"] is None and m["samples"] == 2
    # D = c_skip x + c_out F with c_skip -> 1 and c_out -> 0 as sigma -> 0: nearly the identity, rank ~ 0.98 n
    assert m["levels"][-1]["rank_over_n_median"] > 0.95
    assert m["paper_claims"][0]["agrees"] in ("no", "partly")


def test_degenerate_models_through_the_command(trained_runs, tmp_path, capsys):
    """Known answers through the whole run (load, sampler, JVPs, rank, summary): a one-component MoLRG's denoiser
    is the projection U U^T / (1 + sigma^2), rank d at every level; a train run whose EMA weights are all zero is
    the identity under VP preconditioning (c_skip = 1, F = 0), rank 189 of n = 192 at every level (0.99 of the norm
    keeps ceil(0.9801 n) of n equal singular values), so no level is low-rank."""
    import shutil

    import torch

    from mogsim.runs import RunFolder

    one = run_jacobian_rank(replace(SMALL, components=1, rank=3, seeds=(0, 1)), tmp_path / "k1", device="cpu")
    assert [(lv["rank_min"], lv["rank_max"]) for lv in one.metrics["levels"]] == [(3, 3)] * 8
    zero = tmp_path / "zero"
    shutil.copytree(trained_runs["train"], zero)
    path = RunFolder(zero).latest_checkpoint()
    ckpt = torch.load(path, weights_only=True)
    ckpt["ema"] = {k: torch.zeros_like(v) for k, v in ckpt["ema"].items()}
    torch.save(ckpt, path)
    code, _, err = _cli(["jacobian-rank", "--run", str(zero), "--seeds", "0-1", "--sampler-steps", "3", "--out",
                         str(tmp_path / "jr"), "--quiet", "--device", "cpu", "--max-batch", "192"], capsys)
    assert code == 0, err
    (folder,) = (tmp_path / "jr").iterdir()
    m = json.loads((folder / "metrics.json").read_text())
    assert [(lv["rank_min"], lv["rank_max"]) for lv in m["levels"]] == [(189, 189)] * 3
    assert m["low_rank_levels"] == 0 and m["paper_claims"][0]["agrees"] == "no"


def test_violins_tell_low_ranks_of_a_cifar_sized_n_apart():
    """At n = 3,072 the ranks 50 and 160 are 0.016 and 0.052 of n (a few pixels apart on a linear axis): the rank
    axis is logarithmic above a rank of 1, the rank itself is on the right on the same map, a rank of 0 sits on the
    axis' bottom, and the flat spectrum's 3,011 is marked."""
    from mogsim.report.figures import jacobian_rank_figure

    n = 3072
    rows = [{"sigma": s, "rank_over_n": r / n} for s, r in ((80.0, 160), (10.0, 50), (10.0, 55), (1.0, 0),
                                                            (0.002, 2983))]
    fig = jacobian_rank_figure(rows, n, title="t")
    ax, right = fig.axes
    height = lambda axis, v: float(axis.transData.transform((0.0, v))[1])  # noqa: E731 - display pixels
    assert height(ax, 160 / n) - height(ax, 50 / n) > 0.1 * ax.bbox.height
    for r in (0, 1, 50, 3011, n):
        assert height(right, r) == pytest.approx(height(ax, r / n), abs=0.5)
    assert height(ax, 0.0) == pytest.approx(ax.bbox.y0, abs=0.5)
    (flat,) = [line for line in ax.get_lines() if line.get_label().startswith("flat spectrum")]
    assert flat.get_ydata()[0] == pytest.approx(3011 / n)
    assert "n = 3,072" in right.get_ylabel() and "3,072" in [t.get_text() for t in right.get_yticklabels()]
    curve = [(80.0, 8 / n), (0.002, 2970 / n)]
    (line,) = [line for line in jacobian_rank_figure(rows, n, curves={"Gaussian": curve}).axes[0].get_lines()
               if line.get_label() == "Gaussian"]
    assert list(line.get_xdata()) == pytest.approx([-math.log10(80.0), math.log10(500.0)])
    assert list(line.get_ydata()) == pytest.approx([8 / n, 2970 / n])


def test_report_prints_only_stored_numbers(molrg_run, tmp_path):
    from test_report import check_report

    from mogsim.report import write_report

    result = write_report([molrg_run.path], tmp_path / "r.pdf")
    assert [s.kind for s in result.sections] == ["jacobian rank"]
    text = " ".join(check_report(result).split())
    assert "The MoLRG closed form's Jacobian has numerical rank d at high SNR" in text


def test_member_out_of_range_is_one_line(trained_runs, tmp_path, capsys):
    code, _, err = _cli(["jacobian-rank", "--run", str(trained_runs["sm"]), "--member", "3", "--out", str(tmp_path),
                         "--quiet", "--device", "cpu"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--member 3: the network holds 1 (0..0)" in err
    assert not list(tmp_path.iterdir())


def test_a_sweep_cell_is_its_member_of_the_group_model(tmp_path, capsys):
    """A cell folder of a score-match sweep has no checkpoint of its own: its net is one member of its group's."""
    code, _, err = _cli(["score-match", "--sweep", "--ranks", "2", "--ns", "8,16", "--dim", "8", "--width", "32",
                         "--depth", "2", "--steps", "20", "--batch", "16", "--eval-queries", "16", "--sample-seeds",
                         "16", "--device", "cpu", "--quiet", "--no-report", "--out", str(tmp_path / "sweep")], capsys)
    assert code == 0, err
    (root,) = (tmp_path / "sweep").iterdir()
    cell = next((root / "cells").glob("r2_N16_*"))
    code, out, err = _cli(["jacobian-rank", "--run", str(cell), "--seeds", "0-1", "--sampler-steps", "3", "--out",
                           str(tmp_path / "jr"), "--quiet", "--device", "cpu"], capsys)
    assert code == 0, err
    (folder,) = (tmp_path / "jr").iterdir()
    m = json.loads((folder / "metrics.json").read_text())
    assert m["model"]["member"] == 1 and m["reference"] == {"rank": 2, "components": 2}
    code, _, err = _cli(["jacobian-rank", "--run", str(cell), "--member", "1", "--out", str(tmp_path / "jr2"),
                         "--quiet", "--device", "cpu"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--member 1: a sweep cell is network 1 of its training group g00" in err
    assert not (tmp_path / "jr2").exists() or not list((tmp_path / "jr2").iterdir())


def test_precision_is_recorded_keyed_and_bf16_stays_near_fp32(trained_runs, tmp_path, capsys):
    """--precision picks the network's arithmetic: a separate run folder, recorded in metrics.json and printed; on a
    CPU, tf32 changes nothing and bf16 autocast moves the ranks of a tiny MLP by a few at most."""
    medians = {}
    for precision in ("fp32", "tf32", "bf16"):
        out = tmp_path / precision
        code, text, err = _cli(["jacobian-rank", "--run", str(trained_runs["sm"]), "--seeds", "0-3",
                                "--sampler-steps", "4", "--out", str(out), "--quiet", "--device", "cpu",
                                "--precision", precision], capsys)
        assert code == 0, err
        (folder,) = out.iterdir()
        m = json.loads((folder / "metrics.json").read_text())
        assert m["precision"] == precision and m["dtype"] == "float32"
        assert m["arithmetic"] in text
        medians[precision] = [lv["rank_median"] for lv in m["levels"]]
    assert len({json.loads(next((tmp_path / p).iterdir()).joinpath("config.json").read_text())["key"]
                for p in medians}) == 3
    assert medians["tf32"] == medians["fp32"]  # TF32 is a GPU mode: a CPU's float32 products stay exact
    assert max(abs(a - b) for a, b in zip(medians["bf16"], medians["fp32"])) <= 3

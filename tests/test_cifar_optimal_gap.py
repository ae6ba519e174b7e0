"""``mogsim cifar-optimal-gap``: the grid, sharding, resume, merging of cells from other grids, the submitit launcher
and the combined outputs, on a small CIFAR-like data set (random images in EDM's zip layout, no test split)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cifar_like import write_edm_zip
from mogsim.experiments.cifar_gap.cells import CELLS_DIR, plan_cells, shard_cells
from mogsim.errors import InputError
from mogsim.experiments.cifar_gap.combine import PointResult, claims, crossing, fit_power, memorization, projection
from mogsim.experiments.cifar_gap.command import main as plain_main
from mogsim.experiments.cifar_gap.command import resolve_options, run_command
from mogsim.experiments.cifar_gap.data import load_gap_data

#: A grid that trains and evaluates in seconds on a CPU: 8x8 images, a UNet of width 8, 4 sampler seeds.
TINY = {"device": "cpu", "profile": "cpu-small", "resolution": 8, "archs": "unet-tiny", "widths": "8",
        "batch": 8, "sample_seeds": "100000-100003", "distance_queries": 2, "loss_batch": 8, "held_out": 4,
        "checkpoint_every": 0, "quiet": True}


def options(data: Path, out: Path, **extra: object) -> dict[str, object]:
    given = {**TINY, "data": str(data), "out": str(out), **extra}
    return {k: (str(v) if k in ("ns", "widths", "seeds", "eval_at", "archs") else v) for k, v in given.items()}


@pytest.fixture(scope="module")
def cifar(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cifar")
    write_edm_zip(folder / "train.zip", 60)
    return folder


def stored_points(out: Path) -> dict[str, float]:
    """``cell/evals/key/images-N`` -> modification time of its metrics.json."""
    return {str(p.parent.relative_to(out)): p.stat().st_mtime_ns for p in (out / CELLS_DIR).rglob("metrics.json")}


def test_shard_partitions_the_grid_exactly(tmp_path):
    r = resolve_options(options(tmp_path, tmp_path / "x", ns="4,8,16", widths="8,16", seeds="0-1", images=64))
    cells = plan_cells(r["config"], r["train"])
    assert len(cells) == 3 * 2 * 2 and len({c.name for c in cells}) == len(cells)
    for m in range(1, 8):
        shards = [shard_cells(cells, (i, m)) for i in range(m)]
        names = [c.name for shard in shards for c in shard]
        assert sorted(names) == sorted(c.name for c in cells)  # every cell in exactly one shard
        assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_held_out_images_do_not_depend_on_the_grid(cifar):
    small, large = (load_gap_data(cifar, n, held_out=5) for n in (8, 40))
    assert (small.held_out == large.held_out).all() and small.held_out_record["split"] == "train"
    assert (large.train[:8] == small.train).all()  # nested subsets
    held = {bytes(x.numpy()) for x in large.held_out}
    assert not held & {bytes(x.numpy()) for x in large.train}


def test_resume_skips_finished_cells_and_points(cifar, tmp_path):
    out = tmp_path / "exp"
    lines: list[str] = []
    assert run_command(options(cifar, out, ns="4,8", images=32, eval_at="16,32"), echo=lines.append) == 0
    first = stored_points(out)
    assert len(first) == 4 and "2 cells: 2 trained or evaluated now, 0 reused" in "\n".join(lines)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and len(summary["records"]) == 4
    assert {(r["n"], r["images_seen"]) for r in summary["records"]} == {(4, 16), (4, 32), (8, 16), (8, 32)}
    lines.clear()
    assert run_command(options(cifar, out, ns="4,8", images=32, eval_at="16,32"), echo=lines.append) == 0
    assert "2 cells: 0 trained or evaluated now, 2 reused" in "\n".join(lines)
    assert stored_points(out) == first  # nothing evaluated again
    # a longer budget extends the same cells: only the new point is trained and evaluated
    assert run_command(options(cifar, out, ns="4", images=48, eval_at="16,32,48"), echo=lines.append) == 0
    now = stored_points(out)
    assert {k: now[k] for k in first} == first and len(now) == 5
    cell = next((out / CELLS_DIR).glob("n000004-*"))
    assert json.loads((cell / "summary.json").read_text())["steps"] == 6  # 48 images at batch 8, resumed


def test_merge_combines_cells_of_other_grids(cifar, tmp_path):
    out = tmp_path / "exp"
    assert run_command(options(cifar, out, ns="4", images=32, eval_at="16,32"), echo=lambda _: None) == 0
    assert run_command(options(cifar, out, ns="8", widths="16", images=16, eval_at="16"), echo=lambda _: None) == 0
    merge = {**options(cifar, out, ns="8", images=16, eval_at="16", merge=True), "data": None}
    assert run_command(merge, echo=lambda _: None) == 0
    summary = json.loads((out / "summary.json").read_text())
    got = {(r["n"], r["net"], r["images_seen"]) for r in summary["records"]}
    assert got == {(4, "unet-tiny-w8", 16), (4, "unet-tiny-w8", 32), (8, "unet-tiny-w16", 16)}
    assert [c["planned"] for c in summary["cells"]] == [True, False, False]
    assert summary["points_done"] == 3 and not summary["complete"]  # the planned N = 8, width 8 cell never ran


def test_merge_uses_per_seed_arrays_when_the_samples_stayed_elsewhere(cifar, tmp_path):
    """Cells that came back without samples (per_seed.npz only, as from a GPU call) still give records and
    memorization times; a point with neither file is refused with one line naming the folder."""
    out = tmp_path / "exp"
    assert run_command(options(cifar, out, ns="4", images=32, eval_at="16,32"), echo=lambda _: None) == 0
    assert run_command(options(cifar, out, ns="8", images=16, eval_at="16"), echo=lambda _: None) == 0
    merge = {**options(cifar, out, ns="8", images=16, eval_at="16", merge=True), "data": None}
    assert run_command(merge, echo=lambda _: None) == 0
    before = json.loads((out / "summary.json").read_text())["memorization"]["cells"]
    for f in (out / CELLS_DIR).glob("n000004-*/evals/*/*/per_sample.npz"):
        f.unlink()
    assert run_command(merge, echo=lambda _: None) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert {(r["n"], r["images_seen"]) for r in summary["records"]} == {(4, 16), (4, 32), (8, 16)}
    key = lambda c: (c["n"], c["level"])  # noqa: E731
    assert sorted(summary["memorization"]["cells"], key=key) == sorted(before, key=key)
    assert [row["n"] for row in summary["sample_grids"]["shown"]] == [8]  # only the cell with samples
    next((out / CELLS_DIR).glob("n000004-*/evals/*/images-000000000016/per_seed.npz")).unlink()
    with pytest.raises(InputError, match="per_seed.npz"):
        run_command(merge, echo=lambda _: None)


def test_memorization_fit_recovers_a_known_exponent(tmp_path):
    """Two cells whose copy fraction crosses 0.5 at 2,000 (N = 4) and 4,000 images (N = 8), from the same per-seed
    pattern: the exponent is 1 and every bootstrap replicate that crosses at both N gives 1 as well."""
    r = resolve_options(options(tmp_path, tmp_path / "x", ns="4,8", images=64))
    copies = {1000: [1, 1, 0, 0, 0, 0, 0, 0], 4000: [1, 1, 1, 1, 1, 1, 0, 0]}  # 0.25, then 0.75
    results = []
    for cell, scale in zip(plan_cells(r["config"], r["train"]), (1, 2)):
        for images, flags in copies.items():
            folder = tmp_path / cell.name / str(images)
            folder.mkdir(parents=True)
            np.savez(folder / "per_seed.npz", is_copy=np.array(flags, dtype=bool))
            results.append(PointResult(cell, scale * images, scale * images // 8, folder,
                                       {"copy_fraction": float(np.mean(flags))}, images == 4000))
    mem = memorization(results, levels=(0.5,), resamples=200)
    assert sorted((c["n"], round(c["time"])) for c in mem["cells"]) == [(4, 2000), (8, 4000)]
    (fit,) = mem["fits"]
    assert fit["exponent"] == pytest.approx(1.0) and fit["ns_fitted"] == [4, 8]
    assert fit["exponent_ci"] == pytest.approx([1.0, 1.0]) and 0 < fit["bootstrap_used"] <= 200


def test_plain_front_end_prints_its_help(capsys):
    with pytest.raises(SystemExit) as exc:
        plain_main(["--help"])
    assert exc.value.code == 0 and "--cuda-graph" in capsys.readouterr().out


def test_submitit_debug_executor_runs_the_shards(cifar, tmp_path):
    pytest.importorskip("submitit")
    out = tmp_path / "exp"
    lines: list[str] = []
    code = run_command(options(cifar, out, ns="4,8", images=16, eval_at="16", launcher="submitit", cluster="debug",
                               jobs=2), echo=lines.append)
    assert code == 0, lines
    assert "submitted 2 tasks" in "\n".join(lines)
    assert len(stored_points(out)) == 2 and json.loads((out / "summary.json").read_text())["complete"]


def test_memorization_time_interpolates_in_log_images():
    assert crossing([100, 400], [0.0, 1.0], 0.5)["time"] == pytest.approx(200.0)
    assert crossing([100, 400], [0.6, 1.0], 0.5) == {"time": None, "censored": "left", "bound": 100.0}
    assert crossing([100, 400], [0.1, 0.2], 0.5) == {"time": None, "censored": "right", "bound": 400.0}
    assert projection([100, 200], [0.1, 0.2], 0.5) == pytest.approx(500.0)
    assert projection([100, 200], [0.2, 0.1], 0.5) is None
    b, a = fit_power([16, 64, 256], [10 * 16**1.5, 10 * 64**1.5, 10 * 256**1.5])
    assert b == pytest.approx(1.5) and a == pytest.approx(2.302585, rel=1e-5)


def last_record(n: int, rp: float, copies: float, gl: float, ratio: float) -> dict[str, object]:
    return {"n": n, "net": "unet-64", "width": 64, "seed": 0, "images_seen": 1000, "is_last": True,
            "rp_optimum": rp, "copy_fraction": copies, "gl": gl, "loss_ratio": ratio}


def test_claims_name_each_n_once():
    """One N: each claim's measurement names it once (it printed 'at N = 64: ...; at N = 64: ...'); two N: both."""
    fits = {"fits": []}
    one = claims([last_record(64, 0.3, 0.89, 0.04, 7.57)], [], fits)
    measured = {c["measured"] for c in one}
    assert "RP to the optimum at N = 64: unet-64 0.30" in measured
    assert "loss over its floor at N = 64: unet-64 7.57" in measured and "GL at N = 64: unet-64 0.04" in measured
    assert all(c["agrees"] == "not tested" for c in one)
    two = claims([last_record(64, 0.9, 0.95, 0.02, 1.05), last_record(4096, 0.0, 0.0, 1.0, 40.0)], [], fits)
    assert two[0]["measured"] == "RP to the optimum at N = 64: unet-64 0.90; at N = 4096: unet-64 0.00"
    assert two[0]["agrees"] == "yes" and two[-2]["measured"] == "GL at N = 64: unet-64 0.02; at N = 4096: unet-64 1.00"


def test_rp_between_widths_is_not_judged_before_any_cell_memorizes():
    """Fig. 2's claim needs the memorization end: a low RP between widths at the smallest N while no cell copies is
    'not tested' (the grid run's N = 64 at 98k images), and judged once a cell memorizes there."""
    def wide(n: int, copies: float) -> list[dict[str, object]]:
        return [{**last_record(n, 0.0, copies, 1.0, 40.0), "net": net, "width": w}
                for net, w in (("unet-64", 64), ("unet-128", 128))]

    cross = [{"kind": "widths", "n": n, "a": "unet-64", "b": "unet-128", "seed": 0, "images_seen": 1000, "rp": rp}
             for n, rp in ((64, 0.2), (128, 0.95), (4096, 1.0))]
    fig2 = lambda records: next(c for c in claims(records, cross, {"fits": []})  # noqa: E731
                                if c["paper"].startswith("RP between widths"))
    early = fig2(wide(64, 0.0) + wide(128, 0.0) + wide(4096, 0.0))
    assert early["agrees"] == "not tested" and "no cell memorizes" in early["basis"]
    assert early["measured"] == "mean RP between widths N = 64: 0.20; N = 128: 0.95; N = 4096: 1.00"
    assert fig2(wide(64, 0.9) + wide(128, 0.0) + wide(4096, 0.0))["agrees"] == "no"  # lowest at an end


def test_console_command_runs_and_exits_zero(cifar, tmp_path, monkeypatch, capsys):
    from mogsim.cli.app import main
    from mogsim.report.cifar_optimal_gap import build_gap
    from mogsim.report.files import RunFiles

    monkeypatch.chdir(tmp_path)
    pytest.importorskip("reportlab")
    argv = ["cifar-optimal-gap", "--data", str(cifar), "--ns", "4", "--images", "8", "--eval-at", "8", "--report"]
    for key, value in TINY.items():
        flag = "--" + key.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    with pytest.raises(SystemExit) as info:
        main(argv)
    out = capsys.readouterr().out
    assert info.value.code == 0, out
    assert "results: runs/cifar-optimal-gap/summary.json" in out and "deviations from the paper" in out
    assert "report: runs/cifar-optimal-gap/report.pdf" in out
    assert (tmp_path / "runs" / "cifar-optimal-gap" / "report.pdf").stat().st_size > 0
    section = build_gap(RunFiles(tmp_path / "runs" / "cifar-optimal-gap"))  # one N: the answer names it once
    assert section.answer.count("at N = ") == 1 and "with copy fractions" in section.answer


@pytest.mark.parametrize("name", ["cifar-optimal-gap", "cifar-optimal-gap-memorize"])
def test_report_of_the_committed_gpu_runs(name, tmp_path):
    """The committed H200 runs report from their combined files: stored numbers only (test_report's checks), N named
    once where the run has one N, and the notes stored after the run (claims judged again, provenance) printed."""
    pytest.importorskip("reportlab")
    from test_report import check_report, flat

    from mogsim.report import write_report

    source = Path(__file__).resolve().parents[1] / "reports" / name
    folder = tmp_path / name
    folder.mkdir()
    for file in ("summary.json", "sample_grids.png"):
        (folder / file).write_bytes((source / file).read_bytes())
    result = write_report([folder], tmp_path / "r.pdf")
    text = flat(check_report(result))
    summary = json.loads((source / "summary.json").read_text())
    assert "Claims judged again after the run" in text and "Provenance." in text
    ns = {r["n"] for r in summary["records"]}
    assert result.sections[0].answer.count("at N = ") == len({min(ns), max(ns)})
    assert all(c["measured"].count(f"at N = {min(ns)}:") <= 1 for c in summary["paper_claims"])


def test_eval_precision_defaults_and_keys(tmp_path, monkeypatch):
    """fp32 on the CPU, bf16 on CUDA unless given; fp32 keeps the evaluation key it had before the option existed,
    another arithmetic gets its own key (stored beside, never mixed); the settings and deviations carry it."""
    from mogsim.experiments.cifar_gap import command
    from mogsim.experiments.cifar_gap.cells import eval_key, eval_settings
    from mogsim.metrics.similarity import make_similarity

    cpu = resolve_options(options(tmp_path, tmp_path / "x", ns="4", images=64))
    assert cpu["config"].eval_precision == "fp32"
    assert "eval_precision" not in cpu["config"].eval_record()["evaluation"]
    bf16 = resolve_options(options(tmp_path, tmp_path / "x", ns="4", images=64, eval_precision="bf16"))
    assert bf16["config"].eval_record()["evaluation"]["eval_precision"] == "bf16"
    backend = make_similarity("pixel")
    assert eval_key(cpu["config"], backend) != eval_key(bf16["config"], backend)
    assert eval_settings(bf16["config"], bf16["train"]).net_precision == "bf16"
    from mogsim.experiments.cifar_gap.config import deviations
    assert any("evaluation arithmetic bf16" in d for d in deviations(bf16["config"], bf16["train"], "cpu-small"))
    assert command.CUDA_DEFAULTS["eval_precision"] == "bf16"
    with pytest.raises(InputError):
        resolve_options(options(tmp_path, tmp_path / "x", ns="4", images=64, eval_precision="fp16"))


def test_cross_rp_rows_carry_the_mismatched_seed_control(tmp_path):
    """RP between widths comes with its control: seed-specific samples shared by two nets give RP 1 and control 0;
    seed-blind samples (one image for every seed) give RP 1 and control 1, so the high RP says nothing there."""
    from types import SimpleNamespace

    import torch

    from mogsim.experiments.cifar_gap.combine import cross_rp
    from mogsim.metrics.similarity import PixelCorrelation

    g = torch.Generator().manual_seed(0)
    distinct = torch.rand(32, 3, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    blind = (torch.rand(1, 3, 4, 4, generator=g, dtype=torch.float64) * 2 - 1).expand(32, -1, -1, -1).clone()

    def point(width: int, samples: torch.Tensor, n: int) -> SimpleNamespace:
        cell = SimpleNamespace(n=n, seed=0, net=f"unet-w{width}", model_channels=width)
        folder = tmp_path / f"{n}-{width}"
        return SimpleNamespace(has_samples=True, cell=cell, images=64, folder=folder, final=True,
                               arrays=lambda name, s=samples: (s.numpy(),))

    rows, _ = cross_rp([point(8, distinct, 4), point(16, distinct, 4), point(8, blind, 8), point(16, blind, 8)],
                       PixelCorrelation(), resamples=50)
    widths = {r["n"]: r for r in rows if r["kind"] == "widths"}
    assert widths[4]["rp"] == 1.0 and widths[4]["rp_mismatched"] == 0.0
    assert widths[8]["rp"] == 1.0 and widths[8]["rp_mismatched"] == 1.0


def test_per_seed_similarities_keep_one_array_per_rp_row(tmp_path):
    """Two training seeds x two widths at one point: four RP rows (a width pair per seed, a seed pair per net), each
    with its own per-seed array (the key names what the pair shares); an earlier merge's file written without that
    field is still read where its key names one row only."""
    from types import SimpleNamespace

    import torch

    from mogsim.experiments.cifar_gap.combine import (CrossImport, add_imported, cross_rp, legacy_per_seed_key,
                                                      per_seed_key)
    from mogsim.metrics.similarity import PixelCorrelation

    g = torch.Generator().manual_seed(1)
    samples = {(w, s): torch.rand(16, 3, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
               for w in (8, 16) for s in (0, 1)}

    def point(width: int, seed: int) -> SimpleNamespace:
        cell = SimpleNamespace(n=4, seed=seed, net=f"unet-w{width}", model_channels=width)
        return SimpleNamespace(has_samples=True, cell=cell, images=64, folder=tmp_path / f"{width}-{seed}",
                               final=True, arrays=lambda name, x=samples[(width, seed)]: (x.numpy(),))

    rows, per_seed = cross_rp([point(w, s) for w in (8, 16) for s in (0, 1)], PixelCorrelation(), resamples=20)
    assert len(rows) == 4 and len(per_seed) == 4 and set(per_seed) == {per_seed_key(r) for r in rows}
    by_key = {per_seed_key(r): r for r in rows}
    for key, similarity in per_seed.items():
        assert float(np.median(similarity)) == by_key[key]["median_similarity"]

    widths0 = next(r for r in rows if r["kind"] == "widths" and r["seed"] == 0)
    records = [{"n": 4, "net": net, "seed": 0, "images_seen": 64, "final": True} for net in ("unet-w8", "unet-w16")]
    legacy = CrossImport(tmp_path / "cross.csv", [{**widths0, "source": "old"}],
                         {legacy_per_seed_key(widths0): per_seed[per_seed_key(widths0)]}, None)
    cross, kept = [], {}
    assert add_imported(cross, kept, [legacy], records)[0]["used"] == 1
    assert list(kept) == [per_seed_key(widths0)]
    assert kept[per_seed_key(widths0)].tolist() == per_seed[per_seed_key(widths0)].tolist()


def test_merge_imports_rp_rows_of_an_earlier_merge(cifar, tmp_path, capsys):
    """--cross-from: the rows of an earlier merge come back exactly (values, intervals, per-seed similarities) when the
    samples are gone, naming their file; a row computed from samples wins over an imported one; rows of cells not in
    the folder are left out; a missing file or a CSV without the needed columns is one line, exit 2, nothing written."""
    import shutil

    from mogsim.runs import read_csv

    out, earlier = tmp_path / "exp", tmp_path / "earlier"
    grid = dict(ns="4", widths="8,16", images=16, eval_at="16")
    assert run_command(options(cifar, out, **grid), echo=lambda _: None) == 0
    merge = {**options(cifar, out, merge=True, **grid), "data": None}
    original = json.loads((out / "summary.json").read_text())["cross"]
    assert [c["source"] for c in original] == ["computed"] and original[0]["kind"] == "widths"
    earlier.mkdir()
    for file in ("cross.csv", "cross_per_seed.npz"):
        shutil.copy(out / file, earlier / file)
    with np.load(earlier / "cross_per_seed.npz") as z:
        similarity = {k: z[k] for k in z.files}
    for f in (out / CELLS_DIR).glob("*/evals/*/*/per_sample.npz"):
        f.unlink()
    assert run_command({**merge, "cross_from": (str(earlier),)}, echo=lambda _: None) == 0
    summary = json.loads((out / "summary.json").read_text())
    imported = summary["cross"]
    assert [{k: v for k, v in c.items() if k != "source"} for c in imported] == \
        [{k: v for k, v in c.items() if k != "source"} for c in original]
    assert imported[0]["source"] == str(earlier / "cross.csv")
    assert summary["cross_imports"] == [{"file": str(earlier / "cross.csv"),
                                         "per_seed_file": str(earlier / "cross_per_seed.npz"), "rows": 1, "used": 1,
                                         "computed_here": 0, "cells_not_here": 0, "earlier_import": 0}]
    with np.load(out / "cross_per_seed.npz") as z:
        assert {k: z[k].tolist() for k in z.files} == {k: v.tolist() for k, v in similarity.items()}
    assert read_csv(out / "cross.csv")[0]["source"] == str(earlier / "cross.csv")
    # the same import again, now from its own output (a chain): the row names the first file; without samples
    # and without an import the row is gone
    assert run_command({**merge, "cross_from": (str(out / "cross.csv"),)}, echo=lambda _: None) == 0
    assert json.loads((out / "summary.json").read_text())["cross"][0]["source"] == str(earlier / "cross.csv")
    assert run_command(merge, echo=lambda _: None) == 0
    assert json.loads((out / "summary.json").read_text())["cross"] == []

    # a row computed from samples wins over an imported one; rows of cells not here are counted and left out
    fresh = tmp_path / "fresh"
    assert run_command(options(cifar, fresh, **grid), echo=lambda _: None) == 0
    rows = read_csv(earlier / "cross.csv")
    rows.append({**rows[0], "n": "8"})
    rows[0]["rp"] = "0.123"
    write_rows = [dict(r) for r in rows]
    from mogsim.runs import write_csv

    write_csv(earlier / "cross.csv", write_rows)
    assert run_command({**options(cifar, fresh, merge=True, **grid), "data": None,
                        "cross_from": (str(earlier / "cross.csv"),)}, echo=lambda _: None) == 0
    summary = json.loads((fresh / "summary.json").read_text())
    assert len(summary["cross"]) == 1 and summary["cross"][0]["source"] == "computed"
    assert summary["cross"][0]["rp"] != 0.123
    assert {k: summary["cross_imports"][0][k] for k in ("used", "computed_here", "cells_not_here")} == \
        {"used": 0, "computed_here": 1, "cells_not_here": 1}

    # bad input: one line, exit 2, nothing written
    (tmp_path / "bare.csv").write_text("kind,n,rp\nwidths,4,1.0\n")
    (tmp_path / "empty").mkdir()
    argv = ["--out", str(fresh), "--merge", "--ns", "4", "--widths", "8,16", "--images", "16", "--eval-at", "16"]
    for key, value in TINY.items():
        flag = "--" + key.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    before = {p: p.stat().st_mtime_ns for p in fresh.rglob("*")}
    for bad, message in ((tmp_path / "missing.csv", "no cross.csv there"), (tmp_path / "empty", "no cross.csv"),
                         (tmp_path / "bare.csv", "lacks the column(s) images_seen, seed, net, a, b, rp_lo, rp_hi")):
        capsys.readouterr()
        assert plain_main(argv + ["--cross-from", str(earlier), "--cross-from", str(bad)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: --cross-from") and message in err and len(err.splitlines()) == 1, err
    assert {p: p.stat().st_mtime_ns for p in fresh.rglob("*")} == before


def test_committed_grid_keeps_the_calls_rp_rows_exactly(tmp_path):
    """reports/cifar-optimal-gap-grid was merged without samples: every RP row is a call's row, value for value, and
    its report names the file each came from."""
    from mogsim.experiments.cifar_gap.combine import read_cross_imports

    folder = Path(__file__).resolve().parents[1] / "reports" / "cifar-optimal-gap-grid"
    summary = json.loads((folder / "summary.json").read_text())
    imports = read_cross_imports([folder / "imported" / f"call{c}" for c in (2, 3, 4)])
    called = {(r["n"], r["images_seen"]): r for imp in imports for r in imp.rows}
    grid = {(c["n"], c["images_seen"]): c for c in summary["cross"] if c["n"] in {n for n, _ in called}}
    assert len(called) == 12 and set(grid) == set(called)
    for key, row in called.items():
        same = lambda r: {k: v for k, v in r.items() if k not in ("final", "source")}  # noqa: E731
        assert same(grid[key]) == same(row) and row["source"].endswith(grid[key]["source"])
    assert grid[(64, 98304)]["rp"] == 0.203125 and grid[(64, 98304)]["final"] is True
    assert summary["cross_imports"][3]["cells_not_here"] == 3  # the widths run's N = 16 rows


def test_console_takes_a_repeated_cross_from(tmp_path, capsys):
    """The typer front end takes --cross-from more than once and stops at the first bad one with one line, exit 2."""
    from mogsim.cli.app import main

    good = Path(__file__).resolve().parents[1] / "reports" / "cifar-optimal-gap-grid" / "imported" / "call2"
    with pytest.raises(SystemExit) as info:
        main(["cifar-optimal-gap", "--merge", "--device", "cpu", "--out", str(tmp_path / "out"),
              "--cross-from", str(good), "--cross-from", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and len(err.splitlines()) == 1 and "--cross-from" in err and "nowhere" in err, err
    assert not (tmp_path / "out").exists()

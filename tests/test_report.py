"""``mogsim report``: reports from small CPU runs of every experiment, checked as a reader would check them.

* The PDF parses (pypdf), holds every section, heading and caption, and every number in its text is one the build
  recorded with its source; each recorded number is a rounding of the value in that file (read here independently),
  each stored string equals the file's, and the only other numbers are structural (figure, table, section and page
  numbers, citation years, folder names, constants inside definitions).
* Bad input (missing folder, unknown kind, missing or damaged files, unwritable --out) is one line, exit 2, no PDF.
* "agrees?" reads stored verdicts: all, some or none of the cells agreeing gives yes, partly, no.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mogsim.cli.app import main
from mogsim.errors import InputError
from mogsim.report import write_report
from mogsim.report.printed import KEY, NUMBER, UnsourcedNumber, format_number, new_ledger, plain_text, resolve
from mogsim.report.sections import build_sections

pypdf = pytest.importorskip("pypdf")

REPO = Path(__file__).resolve().parents[1]
EXPORT_3K = REPO / "reports" / "score-match-3k"  # an old record (the generalization index)
EXPORT_V2 = REPO / "reports" / "score-match-30k-v2"  # the current verdict, N*(r) per measure, the time axis
STRUCTURAL_ROLES = {"figure", "table", "section", "page", "citation", "path", "formula"}
SM_ARGS = ["--rank", "2", "--dim", "8", "--width", "32", "--depth", "2", "--steps", "30", "--batch", "32",
           "--eval-queries", "32", "--sample-seeds", "16", "--device", "cpu", "--quiet"]


def run_cli(args: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main(args)
    return int(info.value.code or 0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small CPU runs of every experiment the report knows: a score-match run and sweep, a training, theory."""
    root = tmp_path_factory.mktemp("runs")
    assert run_cli(["score-match", *SM_ARGS, "--n", "8", "--out", str(root / "sm")]) == 0
    assert run_cli(["score-match", "--sweep", *SM_ARGS, "--ranks", "1,2", "--ns", "4,8", "--seeds", "0",
                    "--out", str(root / "sweep")]) == 0
    np.save(root / "data.npy", np.random.default_rng(0).uniform(-1, 1, (12, 3, 32, 32)).astype(np.float32))
    assert run_cli(["train", "--data", str(root / "data.npy"), "--out", str(root / "train"), "--n", "8", "--arch",
                    "unet-tiny", "--width", "8", "--batch", "4", "--device", "cpu", "--precond", "edm", "--steps",
                    "4", "--log-every", "1", "--checkpoint-every", "2", "--no-progress"]) == 0
    assert run_cli(["theory", "--only", "woodbury", "--out", str(root / "theory")]) == 0
    return {"sm": root / "sm", "sweep": root / "sweep", "train": root / "train", "theory": root / "theory"}


# -- checking a report against its files ---------------------------------------------------------------------------
def is_rounding(printed: str, value: float) -> bool:
    """True when ``printed`` (as the report writes numbers) is ``value`` rounded to the digits shown."""
    text = printed.replace("\u2212", "-").replace(",", "")
    mantissa, _, exp = text.partition("e")
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    step = 10.0 ** ((int(exp) if exp else 0) - decimals)
    return math.isfinite(float(value)) and abs(float(value) - float(text)) <= 0.5 * step * (1 + 1e-9)


def stored(file: Path, where: tuple[Any, ...]) -> Any:
    """The value at ``where`` in ``file``, read with json/csv directly (not through mogsim.report)."""
    if file.suffix == ".csv":
        with open(file, newline="") as fh:
            rows = list(csv.DictReader(fh))
        _, row, column = where
        return rows[row][column]
    node = json.loads(file.read_text())
    for key in where:
        if key == KEY:
            return "key present"
        node = node[key]
    return node


def pdf_text(path: Path) -> str:
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(str(path)).pages)


def flat(text: str) -> str:
    return " ".join(text.split())


def check_report(result: Any) -> str:
    """Every check of the module docstring on one written report; returns the PDF's text."""
    text = pdf_text(result.path)
    assert len(pypdf.PdfReader(str(result.path)).pages) == result.pages
    in_pdf = {m.group() for m in NUMBER.finditer(text)}
    recorded = {m.group() for e in result.printed for m in NUMBER.finditer(e.text)}
    assert in_pdf == recorded, (sorted(in_pdf - recorded)[:20], sorted(recorded - in_pdf)[:20])
    for entry in result.printed:
        if entry.kind == "number":
            raw = stored(entry.source.file, entry.source.where)
            assert is_rounding(entry.text, float(raw)), (entry.text, raw, str(entry.source))
        elif entry.kind == "text":
            raw = stored(entry.source.file, entry.source.where)
            if entry.source.where[-1] == KEY:
                assert raw == "key present"
            else:
                assert entry.text == (raw if isinstance(raw, str) else json.dumps(raw)), str(entry.source)
        else:
            assert entry.kind == "structural" and entry.role in STRUCTURAL_ROLES, entry
    page = flat(text)
    for heading in ("Claims and measurements", "Methods", "Results"):
        assert page.count(heading) >= len(result.sections)
    assert "Appendix A. Provenance" in page and "References" in page
    for section in result.sections:
        assert flat(plain_text(section.title))[:40] in page
        for fig in section.figures:
            assert flat(plain_text(fig.caption))[:50] in page, fig.label
        for table in section.tables:
            assert flat(plain_text(table.caption))[:30] in page, table.label
    for k in range(1, 1 + sum(len(s.figures) for s in result.sections)):
        assert f"Figure {k}." in page
    return text


# -- reports from runs ---------------------------------------------------------------------------------------------
def test_report_of_every_experiment_holds_only_stored_numbers(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "all.pdf"
    result = write_report([runs["sm"], runs["sweep"], runs["train"], runs["theory"]], out,
                          html=tmp_path / "all.html")
    assert [s.kind for s in result.sections] == ["score-match run", "score-match sweep", "train run", "theory"]
    text = check_report(result)
    assert "agrees?" in text.lower() and "Question." in text and "Answer." in text
    html = (tmp_path / "all.html").read_text()
    assert html.count("<svg") >= 5 and "Claims and measurements" in html and "\ue000" not in html
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.html", "all.pdf"]  # no temporary files left


def test_report_of_the_committed_export_from_its_combined_files(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    for name in ("sweep_metrics.json", "sweep_table.csv"):  # the two required files (the small sweep above tests
        shutil.copy(EXPORT_3K / name, folder / name)       # the optional sweep_per_sigma.csv)
    result = write_report([folder], tmp_path / "r.pdf")
    text = check_report(result)
    nstar = json.loads((EXPORT_3K / "sweep_metrics.json").read_text())["transitions"]["n_star"]
    assert f"N*(r) is {format_number(nstar['2'])}, " in flat(text)
    assert result.pages >= 5
    for cited in ("ICML 2024.", "arXiv 2409.02426.", "NeurIPS 2022."):  # strings made at import time
        assert cited in flat(text)


def test_report_of_the_v2_export_prints_its_stored_analyses(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    for name in ("sweep_metrics.json", "sweep_table.csv", "sweep_time.csv"):
        shutil.copy(EXPORT_V2 / name, folder / name)
    text = flat(check_report(write_report([folder], tmp_path / "r.pdf")))
    width = json.loads((EXPORT_V2 / "sweep_metrics.json").read_text())["analysis"]["by_width"]["256"]
    rp = width["n_star"]["measures"]["rp_net_true"]
    onset = width["time"]["events"]["memorization_onset"]["fits"]
    assert f"{format_number(rp['n_star']['2']['n_star'])} [{format_number(rp['n_star']['2']['ci_low'])}, " in text
    assert f"{format_number(rp['fit']['b'], 'dec2')} [{format_number(rp['fit']['ci_low'], 'dec2')}, " in text
    fit = next(iter(onset.values()))
    assert f"{format_number(fit['b'], 'dec2')} [{format_number(fit['ci_low'], 'dec2')}, " in text
    assert "An old record" not in text and "generalization index" not in text


def test_cli_writes_the_report(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.pdf"
    assert run_cli(["report", str(runs["theory"]), "--out", str(out)]) == 0
    assert out.is_file() and "report written to" in capsys.readouterr().out
    assert "Checks of woodbury" in flat(pdf_text(out))


# -- bad input -------------------------------------------------------------------------------------------------------
def _copy_run(src: Path, dst: Path) -> Path:
    folder = next(p for p in src.iterdir() if p.is_dir())
    shutil.copytree(folder, dst)
    return dst


@pytest.mark.parametrize("damage, message", [
    ("missing-folder", "no such folder"),
    ("unknown-folder", "not a run folder mogsim report knows"),
    ("damaged-json", "metrics.json: damaged JSON"),
    ("missing-csv", "per_sigma.csv: missing"),
    ("csv-not-a-number", "per_sigma.csv: damaged CSV (row 2, column sigma"),
    ("csv-ragged", "per_sigma.csv: damaged CSV"),
    ("csv-figure-column", "per_sigma.csv: damaged CSV (row 2, column e_true"),
    ("missing-field", "metrics.json: no field verdict"),
    ("damaged-npz", "samples.npz: damaged"),
    ("out-is-folder", "--out"),
    ("out-folder-missing", "does not exist"),
])
def test_bad_input_is_one_line_exit_2_and_no_pdf(runs: dict[str, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str], damage: str,
                                                 message: str) -> None:
    run = _copy_run(runs["sm"], tmp_path / "run")
    out = tmp_path / "out" / "r.pdf"
    out.parent.mkdir()
    target = run
    if damage == "missing-folder":
        target = tmp_path / "nope"
    elif damage == "unknown-folder":
        target = tmp_path / "out"
    elif damage == "damaged-json":
        (run / "metrics.json").write_text('{"verdict": ')
    elif damage == "missing-csv":
        (run / "per_sigma.csv").unlink()
    elif damage == "csv-not-a-number":
        lines = (run / "per_sigma.csv").read_text().splitlines()
        lines[1] = lines[1].replace(lines[1].split(",")[1], "abc", 1)
        (run / "per_sigma.csv").write_text("\n".join(lines) + "\n")
    elif damage == "csv-figure-column":  # a column only the figure reads
        with open(run / "per_sigma.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        rows[0]["e_true"] = "x"
        with open(run / "per_sigma.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif damage == "csv-ragged":
        (run / "per_sigma.csv").write_text((run / "per_sigma.csv").read_text() + "true,1.0\n")
    elif damage == "missing-field":
        metrics = json.loads((run / "metrics.json").read_text())
        del metrics["verdict"]
        (run / "metrics.json").write_text(json.dumps(metrics))
    elif damage == "damaged-npz":
        (run / "samples.npz").write_bytes(b"not a zip")
    elif damage == "out-is-folder":
        out = tmp_path / "out"
    elif damage == "out-folder-missing":
        out = tmp_path / "missing" / "r.pdf"
    assert run_cli(["report", str(target), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("mogsim: error:") and message in err, err
    assert not list((tmp_path / "out").iterdir())  # no PDF, no temporary file


def test_a_string_made_in_one_build_prints_the_same_in_another(tmp_path: Path) -> None:
    from mogsim.report.printed import Num, Source

    with new_ledger():
        made = f"N* = {Num(150.153, Source(tmp_path / 'm.json', ('n_star',)))}"
    with new_ledger() as other:
        assert resolve(made) == "N* = 150" and [e.text for e in other.rendered] == ["150"]


def test_unsourced_numbers_are_refused() -> None:
    with new_ledger():
        with pytest.raises(UnsourcedNumber):
            resolve("the net copies 3 of 4 samples")
        assert resolve("d<sub>1</sub>/d<sub>2</sub>, x0, float64, r2_N16") == "d<sub>1</sub>/d<sub>2</sub>, x0, " \
                                                                              "float64, r2_N16"


@pytest.mark.parametrize("value, style, text", [
    (0.983, "sig3", "0.983"), (0.9004, "sig3", "0.9"), (150.153, "sig3", "150"), (200.29, "sig3", "200"),
    (-0.0361, "sig2", "\u22120.036"), (7680000, "int", "7,680,000"), (4096, "int", "4096"),
    (4.5e-7, "sig3", "4.5e\u22127"), (0.9, "dec2", "0.90"), (-0.001, "dec2", "0.00"), (4153519519, "id", "4153519519"),
    (12.5, "sig3", "12.5"), (0, "sig3", "0"),
])
def test_number_format_is_a_rounding(value: float, style: str, text: str) -> None:
    assert format_number(value, style) == text
    assert is_rounding(text, value)


def test_rounding_check_can_fail() -> None:
    assert is_rounding("0.98", 0.983) and not is_rounding("0.99", 0.983) and not is_rounding("200", 201.2)
    assert not is_rounding("1.2e\u22125", 1.3e-5) and is_rounding("7,680,000", 7680000)


# -- what "agrees?" says -----------------------------------------------------------------------------------------------
def _export_with_verdicts(tmp_path: Path, smallest_n: list[str]) -> Path:
    folder = tmp_path / "export"
    folder.mkdir(exist_ok=True)
    shutil.copy(EXPORT_3K / "sweep_metrics.json", folder / "sweep_metrics.json")
    with open(EXPORT_3K / "sweep_table.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    n0 = min(int(r["n"]) for r in rows)
    cycle = iter(smallest_n * len(rows))
    for r in rows:
        if int(r["n"]) == n0:
            r["verdict"] = next(cycle)
    with open(folder / "sweep_table.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder


@pytest.mark.parametrize("verdicts, agrees", [
    (["memorizing"], "yes"), (["memorizing", "in transition"], "partly"), (["generalizing"], "no"),
    (["undecided"], "no"),
])
def test_agreement_reads_the_stored_verdicts(tmp_path: Path, verdicts: list[str], agrees: str) -> None:
    (section,) = build_sections([_export_with_verdicts(tmp_path, verdicts)])
    small_n = section.claims[0]
    assert small_n.agrees == agrees
    growth = section.claims[2]
    assert growth.agrees == "not judged"  # the files store b without an interval or a rule


def test_stored_claims_replace_the_default_reading(tmp_path: Path) -> None:
    folder = _export_with_verdicts(tmp_path, ["memorizing"])
    metrics = json.loads((folder / "sweep_metrics.json").read_text())
    metrics["paper_claims"] = [{"paper": "N* grows with r", "measured": "b in [0.1, 0.4]", "agrees": "partly",
                                "basis": "bootstrap interval"}]
    (folder / "sweep_metrics.json").write_text(json.dumps(metrics))
    (section,) = build_sections([folder])
    assert [(c.agrees, plain_text(c.basis)) for c in section.claims] == [("partly", "bootstrap interval")]
    metrics["paper_claims"][0]["agrees"] = "probably"
    (folder / "sweep_metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(InputError, match="paper_claims"):
        build_sections([folder])


def test_incomplete_sweep_and_missing_values_are_said(tmp_path: Path) -> None:
    folder = _export_with_verdicts(tmp_path, ["memorizing"])
    metrics = json.loads((folder / "sweep_metrics.json").read_text())
    metrics.update(complete=False, cells_done=100)
    metrics["transitions"]["n_star"]["2"] = None
    (folder / "sweep_metrics.json").write_text(json.dumps(metrics))
    (section,) = build_sections([folder])
    text = " ".join(plain_text(t) for t in [section.answer, *section.notes, *(c.measured for c in section.claims)])
    assert "Incomplete sweep: 100 of 108 cells finished" in text and "not crossed" in text


# -- the command's neighbours ----------------------------------------------------------------------------------------
def test_theory_out_writes_results_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["theory", "--only", "woodbury", "--out", str(tmp_path / "th"), "--report"]) == 0
    data = json.loads((tmp_path / "th" / "theory_results.json").read_text())
    assert data["format"] == "mogsim-theory-results" and data["summary"] == {**data["summary"], "verified": 1,
                                                                              "total": 1}
    (result,) = data["results"]
    assert result["status"] == "verified" and result["counts"]["passed"] == len(result["checks"]) > 0
    assert data["provenance"]["versions"]["torch"] and (tmp_path / "th" / "theory.tex").is_file()
    assert (tmp_path / "th" / "report.pdf").is_file()
    assert run_cli(["theory", "--only", "woodbury", "--report"]) == 2
    assert "--report needs --out" in capsys.readouterr().err


def test_import_mogsim_loads_neither_reportlab_nor_matplotlib() -> None:
    code = ("import sys, mogsim, mogsim.report, mogsim.experiments.score_match; "
            "print(sorted(m for m in ('reportlab', 'matplotlib', 'svglib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_verdict_shares_of_a_wide_grid_turn_to_one_row_per_n(tmp_path: Path) -> None:
    """An N_k / d sweep has a different N per rank (12 here): the share table lists N down, ranks across, to fit the
    page; a grid of at most 9 N keeps N across (the v2 export's 9)."""
    wide = REPO / "reports" / "unet-molrg-grid-2m5"
    shares = {}
    for name, source in (("wide", wide), ("v2", EXPORT_V2)):
        folder = tmp_path / name
        folder.mkdir()
        for file in ("sweep_metrics.json", "sweep_table.csv"):
            shutil.copy(source / file, folder / file)
        sections = build_sections([folder])
        shares[name] = next(t for s in sections for t in s.tables if t.label.startswith("sweep-shares"))
    ns = sorted({int(r["n"]) for r in csv.DictReader(open(wide / "sweep_table.csv"))})
    assert shares["wide"].header[0] == "N \\ r" and len(shares["wide"].header) == 3
    assert len(shares["wide"].rows) == len(ns) == 12 and all(len(row) == 3 for row in shares["wide"].rows)
    assert shares["v2"].header[0] == "r \\ N" and len(shares["v2"].header) == 10


def test_spaced_labels_blank_near_equal_values_only() -> None:
    from mogsim.report.figures import spaced_labels

    grid = [96, 138, 192, 270, 276, 384, 540, 768, 1080, 1086, 1536, 2172]  # d = 3 and 6 at N_k / d = 16..181
    assert spaced_labels(grid) == ["96", "138", "192", "270", "", "384", "540", "768", "1080", "", "1536", "2172"]
    assert spaced_labels([16, 32, 64, 128]) == ["16", "32", "64", "128"]
    assert spaced_labels([100, 105, 109, 111]) == ["100", "", "", "111"]  # measured from the last label shown

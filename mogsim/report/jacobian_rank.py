"""Report section of a ``mogsim jacobian-rank`` run folder: ``config.json`` (format mogsim-jacobian-rank),
``metrics.json`` and ``ranks.csv`` (required)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .compose import DASH, kv_list, provenance_rows, stored_claims, value_text
from .files import RunFiles
from .printed import structural
from .sections import Figure, Kind, Section, Table

FORMAT = "mogsim-jacobian-rank"
WANG = "Wang et al. ({})".format(structural(2024, "citation"))
FIG3 = "Fig. {}".format(structural(3, "citation"))
SNR = "SNR {}/σ".format(structural(1, "formula"))
RANK_COLUMNS = ("level", "sigma", "seed", "rank", "rank_over_n")
QUESTION = ("Is the Jacobian of the denoiser low-rank along the sampler's trajectories, and how does its numerical "
            "rank change with the noise level?")


def is_jacobian(folder: Path) -> bool:
    """config.json whose ``format`` is mogsim-jacobian-rank."""
    return (folder / "config.json").is_file() and RunFiles(folder).get("config.json", "format",
                                                                       default=None) == FORMAT


def build_jacobian(f: RunFiles) -> Section:
    """The section of one Jacobian-rank run."""
    M, C, R = "metrics.json", "config.json", "ranks.csv"
    f.csv(R, RANK_COLUMNS)
    levels = f.get(M, "levels")
    last = len(levels) - 1
    kind = f.text(M, "model", "kind")

    def lv(i: int, key: str, style: str = "sig3") -> Any:
        num = f.num(M, "levels", i, key, style=style, optional=True)
        return num if num is not None else DASH

    answer = (f"For the {kind} (n = {f.num(M, 'dim', style='int')}, {f.num(M, 'samples', style='int')} "
              f"trajectories), the median numerical rank / n is {lv(0, 'rank_over_n_median')} at the largest noise "
              f"level σ = {lv(0, 'sigma')} and {lv(last, 'rank_over_n_median')} at the smallest, "
              f"σ = {lv(last, 'sigma')}; {f.num(M, 'low_rank_levels', style='int')} of "
              f"{f.num(M, 'levels_total', style='int')} levels are low-rank by the stated rule.")
    if f.get(M, "reference_ranks", default=None):
        answer += (f" The median rank is {lv(last, 'rank_median')} at the smallest σ against d = "
                   f"{f.num(M, 'reference_ranks', 'high_snr', style='int')}, and {lv(0, 'rank_median')} at the "
                   f"largest against K d = {f.num(M, 'reference_ranks', 'low_snr', style='int')}.")
    rows = [[f"{lv(i, 'sigma')}", f"{lv(i, 'snr')}", f"{lv(i, 'rank_median')}",
             f"{lv(i, 'rank_min', 'int')}–{lv(i, 'rank_max', 'int')}", f"{lv(i, 'rank_over_n_median', 'dec3')}",
             f"{lv(i, 'seconds', 'sig2')}"] for i in range(len(levels))]
    tables = [Table("jacobian-levels", "Per noise level: the numerical rank over the trajectories (median and range), "
                    "the median rank / n, and the seconds its Jacobians took (the first level's include sampling the "
                    "trajectories).", ["σ", "SNR", "median rank", "range", "rank / n", "seconds"], rows, "rrrrrr")]
    methods = [f"<b>Model.</b> {kv_list(f, M, 'model')}; Jacobians in {f.text(M, 'arithmetic', optional=True) or f.text(M, 'dtype')}.",
               f"<b>Trajectories.</b> {f.text(M, 'rules', 'trajectory')}; seeds {_seeds(f)}.",
               f"<b>Rank.</b> {f.text(M, 'rules', 'rank')}; the Jacobian is built column by column from forward-mode "
               "Jacobian-vector products, its squared singular values are the eigenvalues of J J<super>T</super> "
               "(float64)."]
    for key in ("low_rank", "reference"):
        if key in f.get(M, "rules"):
            methods.append(f"<b>Rule ({key.replace('_', ' ')}).</b> {f.text(M, 'rules', key)}")
    figures = [Figure("jacobian-violins", f"Numerical rank / n (left; the rank, right; logarithmic above a rank of "
                      f"one) of the Jacobian against the {SNR}, one violin per noise level over the trajectories "
                      f"(black: median; a bar where all samples agree); dotted: a flat spectrum's rank, the most "
                      f"any Jacobian can reach"
                      + (", with d/n and K d/n dashed" if f.get(M, "reference", default=None) else "")
                      + f"; compare with {WANG}, {FIG3}. Look at where the rank changes with the noise level.",
                      lambda: _draw(f), key=True)]
    prov = provenance_rows(f, C, "provenance", label="started:")
    prov += provenance_rows(f, M, "provenance", label="finished:", same_as=f.get(C, "provenance", default=None))
    prov += [("run key", f"{f.text(C, 'key')}"), ("configuration", kv_list(f, M, "config"))]
    if isinstance(f.get(M, "timing", default=None), dict):
        prov.append(("timing (seconds, last call)", kv_list(f, M, "timing")))
    title = f"Jacobian rank along sampler trajectories: {kind} ({WANG}, {FIG3})"
    return Section("jacobian rank", title, f.folder, QUESTION, answer, stored_claims(f, M), methods, tables,
                   figures, [], prov)


def _seeds(f: RunFiles) -> str:
    """The sampler seeds: all of them when few, else their count and the first and last."""
    seeds = f.get("metrics.json", "config", "seeds")
    if len(seeds) <= 16:
        return value_text(f, "metrics.json", "config", "seeds")
    return (f"{f.num('metrics.json', 'samples', style='int')} seeds, the first "
            f"{f.num('metrics.json', 'config', 'seeds', 0, style='id')} and the last "
            f"{f.num('metrics.json', 'config', 'seeds', len(seeds) - 1, style='id')}")


def _draw(f: RunFiles) -> Any:
    from .figures import jacobian_rank_figure

    rows = f.numeric_rows("ranks.csv", ("sigma", "rank_over_n"))
    return jacobian_rank_figure(rows, int(f.get("metrics.json", "dim")),
                                f.get("metrics.json", "reference", default=None),
                                energy=float(f.get("metrics.json", "energy")))


KINDS = (Kind("jacobian rank", "config.json with format mogsim-jacobian-rank", is_jacobian, build_jacobian),)

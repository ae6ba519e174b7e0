"""Report section of a ``mogsim train`` run folder: config.json (``"format": "mogsim-train-run"``), summary.json,
log.csv (required) and subset.json (optional)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .compose import DASH, kv_list, provenance_rows, value_text, words
from .files import RunFiles
from .sections import Figure, Kind, Section, Table

FORMAT = "mogsim-train-run"
LOG_COLUMNS = ("step", "loss")


def is_train(folder: Path) -> bool:
    """config.json whose ``format`` is mogsim-train-run."""
    return (folder / "config.json").is_file() and RunFiles(folder).get("config.json", "format", default=None) == FORMAT


def build_train(f: RunFiles) -> Section:
    """The section of a training run."""
    C, S, L = "config.json", "summary.json", "log.csv"
    log = f.csv(L, LOG_COLUMNS)
    net = f.text(C, "train", "net", "name")
    n = f.num(C, "data", "n", style="int", optional=True) or f.num(C, "data", "num_items", style="int")

    def s(key: str, style: str = "sig4") -> Any:
        num = f.num(S, key, style=style, optional=True)
        return num if num is not None else DASH

    title = f"Training {net} on {n} items ({f.text(C, 'train', 'precond')} preconditioning)"
    question = f"How did the training of {net} on this data go, and what exactly was trained?"
    device = f.text(C, "runtime", "device", optional=True)
    answer = (f"The run reached step {s('steps', 'int')} ({s('images', 'int')} images, "
              f"{f.num(C, 'budget', 'epochs', style='sig3')} epochs of the budget) with final logged loss "
              f"{s('final_loss')}. The last launch trained at {s('images_per_s', 'sig3')} images per second"
              + (f" on {device}." if device is not None else "."))
    figures = []
    if log:
        figures.append(Figure("train-loss", "The training log. (a) The loss (EDM-weighted denoising loss, mean over "
                              "the logging interval); (b) the learning rate (warm-up, then constant) and the gradient "
                              "norm. Look at whether the loss still falls at the end: then a longer budget would "
                              "change the network.", lambda: _draw_loss(f), key=True))
    tables = [Table("train-summary", "The run's stored summary (summary.json).", ["quantity", "value"],
                    _summary_rows(f), "lr")]
    data, train, budget = ("data",), ("train",), ("budget",)
    methods = [
        "<b>Data.</b> " + _phrases(f, data, [("num_items", "{} items"), ("sample_shape", "of shape {}"),
                                             ("source", "from {}"), ("format", "({} format)"), ("split", "split {}"),
                                             ("subset_seed", "subset seed {}"), ("balanced", "class-balanced: {}")]),
        f"<b>Model.</b> {net} ({f.num(C, 'parameters', style='int')} parameters; "
        f"{kv_list(f, C, 'train', 'net', 'kwargs')}), "
        + _phrases(f, train, [("precond", "{} preconditioning"), ("sigma_data", "σ<sub>data</sub> = {}")]),
        "<b>Recipe.</b> Adam, " + _phrases(f, train, [
            ("lr", "learning rate {}"), ("lr_warmup_images", "warm-up over {} images"), ("batch", "batch {}"),
            ("ema_halflife_images", "EMA half-life {} images"), ("ema_rampup_ratio", "EMA ramp-up ratio {}"),
            ("grad_clip", "gradient clipping at {}"), ("xflip", "x-flips: {}"), ("seed", "seed {}"),
            ("bf16", "bf16 autocast: {}"), ("tf32", "TF32: {}")]),
        "<b>Budget.</b> " + _phrases(f, budget, [("kind", "given as {}"), ("steps", "{} steps"),
                                                 ("images", "{} images"), ("epochs", "{} epochs")]),
    ]
    prov = provenance_rows(f, C, "provenance", label="first launch:")
    launches = f.get(C, "launches", default=[]) or []
    for i in range(len(launches)):
        prov.append((f"launch: {f.text(C, 'launches', i, 'started_utc')}", kv_list(f, C, "launches", i)))
    prov += [("training configuration", kv_list(f, C, "train")), ("data", kv_list(f, C, "data")),
             ("runtime", kv_list(f, C, "runtime")),
             ("data fingerprint (sha256)", f"{f.text(C, 'data', 'sha256', optional=True) or DASH}")]
    if f.exists("subset.json"):
        prov.append(("subset", kv_list(f, "subset.json", skip=("indices",))))
    return Section("train run", title, f.folder, question, answer, [], methods, tables, figures, [], prov)


def _phrases(f: RunFiles, keys: tuple[str, ...], phrases: list[tuple[str, str]]) -> str:
    """``a 1, b 2 and c x.`` from the stored fields under ``keys`` of config.json that exist (others are skipped,
    so renamed or new fields never break the sentence; appendix A lists the whole configuration)."""
    node = f.get("config.json", *keys, default={}) or {}
    parts = [phrase.format(value_text(f, "config.json", *keys, key)) for key, phrase in phrases if key in node]
    return (words(parts) if parts else "see appendix A") + "."


def _summary_rows(f: RunFiles) -> list[list[str]]:
    S = "summary.json"
    labels = {"steps": "steps trained", "images": "images seen", "final_loss": "final logged loss",
              "total_steps": "budget (steps)", "steps_this_launch": "steps in the last launch",
              "wall_s": "seconds in the last launch", "images_per_s": "images per second (last launch)",
              "parameters": "parameters", "resumed_from": "resumed from"}
    rows = []
    for key, label in labels.items():
        raw = f.get(S, key, default=None)
        if raw is None:
            continue
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            style = "int" if isinstance(raw, int) else "sig4"
            rows.append([label, f"{f.num(S, key, style=style)}"])
        else:
            rows.append([label, f"{f.text(S, key)}"])
    return rows


def _draw_loss(f: RunFiles) -> Any:
    from .figures import loss_figure

    f.csv("log.csv", LOG_COLUMNS)
    return loss_figure(f.numeric_rows("log.csv", ("step", "loss", "lr", "grad_norm")))


KINDS = (Kind("train run", "config.json with format mogsim-train-run", is_train, build_train),)

"""Train and evaluate the cells of ``mogsim cifar-optimal-gap``, each in its own ``mogsim train`` run folder.

Layout of the experiment folder ``out``::

    cells/n000064-unet-64-seed0-<key>/    a mogsim train run folder (config.json, subset.json, log.csv,
                                          checkpoints/, summary.json) of one cell, plus
        evals/<eval key>/images-<12 digits>/   metrics.json, per_sample.npz, per_seed.npz (without samples),
                                               per_sigma.csv of one evaluation point
    cache/optimum-<key>.npz               the empirical optimum's samples per subset and seeds (shared by cells)

``<key>`` hashes what the cell's training trajectory depends on (training config, network, seed, subset); the
budget is not in it, so a longer budget extends the same cell. ``<eval key>`` hashes what an evaluation depends
on (seeds, similarity, thresholds, query counts, held-out images), so changing them evaluates again beside the
old results. ``metrics.json`` is written last: an evaluation point is finished when it exists, and is never
computed again.

A cell holds its run folder's lock (:meth:`mogsim.runs.RunFolder.session`) while it trains and evaluates; one
:class:`~mogsim.training.Trainer` per cell trains from one evaluation point to the next (resuming from the newest
checkpoint, which the trainer writes at every evaluation point), and the evaluation uses the trainer's EMA
weights. Cells are independent: ``--shard i/M`` runs cells ``i, i + M, i + 2M, ...`` of the grid's order (N, then
network, then training seed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from ...data import save_subset
from ...denoiser import Advance, ProgressFactory
from ...metrics.similarity import Similarity
from ...parsing import parse_seeds
from ...progress import silent
from ...runs import RunFolder, config_key, read_config
from ...training import Budget, RuntimeOptions, TrainConfig, Trainer
from ...training.distributed import DistContext
from ...training.run import COMPARED, IGNORED, LOG_FILE, RUN_KIND, SUMMARY_FILE, data_fingerprint, run_record
from .config import SAMPLER, EvalPoint, GapConfig, cell_key, check_network, net_label, with_net
from .data import GapData
from .eval import CellEvalSettings, CellReferences, evaluate_cell

CELLS_DIR = "cells"
CACHE_DIR = "cache"
EVALS_DIR = "evals"
SUBSET_FILE = "subset.json"
METRICS_FILE = "metrics.json"
#: Rows of the optimum's samples kept with every evaluation point (for sample grids; all are in the cache).
OPTIMUM_ROWS = 64


@dataclass(frozen=True)
class Cell:
    """One (N, network, training seed) of the grid with its training config and evaluation points."""

    n: int
    arch: str
    width: int | None
    seed: int
    train: TrainConfig
    key: str
    points: tuple[EvalPoint, ...]

    @property
    def net(self) -> str:
        return net_label(self.arch, self.width)

    @property
    def model_channels(self) -> int:
        return int(self.train.net["kwargs"]["model_channels"])

    @property
    def name(self) -> str:
        return f"n{self.n:06d}-{self.net}-seed{self.seed}-{self.key}"

    @property
    def final_steps(self) -> int:
        return self.points[-1].steps

    def label(self) -> str:
        return f"N={self.n} {self.net} seed {self.seed}"


def plan_cells(config: GapConfig, train: TrainConfig, net_overrides: Mapping[str, Any] | None = None
               ) -> list[Cell]:
    """Every cell of the grid in the order N, network, training seed (``net_overrides``: dropout, attention)."""
    cells = []
    for n in config.ns:
        for arch, width in config.nets():
            net = check_network(arch, width, config.resolution, net_overrides)
            for seed in config.seeds:
                cell_train = with_net(train, net, seed)
                data = {"n": n, "subset_seed": config.subset_seed, "balanced": True,
                        "resolution": config.resolution}
                cells.append(Cell(n, arch, width, seed, cell_train, cell_key(cell_train, data),
                                  tuple(config.points(n, train.batch))))
    return cells


def discover_cells(out: Path, key: str, known: list[Cell]) -> list[Cell]:
    """``known`` and every other cell folder under ``out/cells``, each with its planned evaluation points and every
    point stored under ``key`` (e.g. by runs of other grids or budgets into the same folder)."""
    by_name = {c.name: c for c in known}
    found = []
    for folder in sorted((out / CELLS_DIR).glob("*/")):
        record = read_config(folder / "config.json") or {}
        exp = record.get("experiment", {})
        if exp.get("cell") != folder.name or "arch" not in exp:
            continue
        train = TrainConfig.from_dict(record["train"])
        stored = {int(d.name.split("-")[1]) for d in (folder / EVALS_DIR / key).glob("images-*")
                  if (d / METRICS_FILE).is_file()}
        cell = by_name.get(folder.name)
        if cell is not None:
            points = {p.images: p for p in cell.points} | {i: EvalPoint(i // train.batch, i) for i in stored}
            by_name[folder.name] = replace(cell, points=tuple(points[i] for i in sorted(points)))
        elif stored:
            found.append(Cell(exp["n"], exp["arch"], exp["width"], exp["seed"], train, folder.name.rsplit("-", 1)[1],
                              tuple(EvalPoint(i // train.batch, i) for i in sorted(stored))))
    return [by_name[c.name] for c in known] + found


def shard_cells(cells: list[Cell], shard: tuple[int, int] | None) -> list[Cell]:
    """Shard ``i`` of ``M``: cells ``i, i + M, ...`` (every cell in exactly one shard)."""
    if shard is None:
        return list(cells)
    i, m = shard
    return cells[i::m]


def eval_key(config: GapConfig, backend: Similarity) -> str:
    """The key of the evaluation settings (``evals/<key>/``): the config's evaluation record and the similarity
    backend's record (with the model file's SHA-256)."""
    return config_key({**config.eval_record(), "backend": backend.record()})


def point_dir(out: Path, cell: Cell, key: str, point: EvalPoint) -> Path:
    return out / CELLS_DIR / cell.name / EVALS_DIR / key / f"images-{point.images:012d}"


def point_done(out: Path, cell: Cell, key: str, point: EvalPoint) -> bool:
    return (point_dir(out, cell, key, point) / METRICS_FILE).is_file()


def steps_done(out: Path, cell: Cell) -> int:
    """Optimizer steps of the cell's newest checkpoint (0 for none)."""
    found = RunFolder(out / CELLS_DIR / cell.name).checkpoints()
    return found[-1][0] if found else 0


# -- progress across cells -----------------------------------------------------------------------------------------
class GridProgress:
    """Two tasks for the whole grid: training steps of every cell, and evaluation points."""

    def __init__(self, factory: ProgressFactory, train_steps: int, points: int) -> None:
        self.train = factory("training (steps, all cells)", max(train_steps, 1))
        self.evals = factory("evaluation points", max(points, 1))

    def training(self, cell: Cell, start: int) -> ProgressFactory:
        """A factory for :meth:`Trainer.fit` that forwards the steps past ``start`` to the grid's training task."""
        seen = {"now": 0, "high": start}

        def factory(description: str, total: int) -> Advance:
            def advance(steps: int, /, note: str | None = None) -> None:
                seen["now"] += steps  # fit first catches up to the step it resumed at
                new = max(0, seen["now"] - seen["high"])
                seen["high"] = max(seen["high"], seen["now"])
                self.train(new, f"{cell.label()}: {note}" if note else None)
            return advance

        return factory

    def sampling(self, cell: Cell, point: EvalPoint) -> Callable[[int], None]:
        note = f"evaluating {cell.label()} at {point.images:,} images"
        return lambda steps: self.evals(0, note)

    def evaluated(self, cell: Cell, point: EvalPoint, metrics: dict[str, Any]) -> None:
        self.evals(1, f"{cell.label()} at {point.images:,} images: RP to the optimum {metrics['rp_optimum']:.2f}, "
                      f"copies {metrics['copy_fraction']:.2f}")


# -- one cell -------------------------------------------------------------------------------------------------------
@dataclass
class GridContext:
    """What every cell of one call shares."""

    out: Path
    config: GapConfig
    data: GapData
    device: torch.device
    runtime: RuntimeOptions
    backend: Similarity
    eval_key: str
    progress: GridProgress
    deadline: float | None = None
    references: dict[int, CellReferences] = field(default_factory=dict)

    def references_for(self, n: int) -> CellReferences:
        """The references of subset N (one subset at a time is kept: cells come ordered by N)."""
        if n not in self.references:
            self.references.clear()
            self.references[n] = CellReferences(self.data.subset(n), self.device)
        return self.references[n]

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


@dataclass
class CellOutcome:
    """What :func:`run_cell` did: ``status`` is ``reused``, ``done`` or ``stopped`` (time limit); ``skipped``
    lists evaluation points the run had already trained past without evaluating them."""

    cell: Cell
    status: str
    evaluated: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)


def eval_settings(config: GapConfig, train: TrainConfig) -> CellEvalSettings:
    """The evaluation settings of a cell: the sampler, thresholds and counts of ``config``, the cell's loss."""
    return CellEvalSettings(sampler_steps=SAMPLER["steps"], solver=SAMPLER["solver"], sample_batch=config.sample_batch,
                            copy_ratio=config.copy_ratio, distance_queries=config.distance_queries,
                            loss=train.precond, sigma_data=float(train.sigma_data[0]), loss_batch=config.loss_batch,
                            net_precision=config.eval_precision)


def run_cell(cell: Cell, ctx: GridContext) -> CellOutcome:
    """Train the cell from evaluation point to evaluation point and evaluate each (see the module docs)."""
    pending = [p for p in cell.points if not point_done(ctx.out, cell, ctx.eval_key, p)]
    if not pending:
        return CellOutcome(cell, "reused")
    subset = ctx.data.subset(cell.n)
    trainer = Trainer(cell.train, subset, runtime=ctx.runtime, ctx=DistContext(device=ctx.device))
    budget = Budget("steps", cell.final_steps)
    data_record = {**ctx.data.train_record(cell.n), "num_items": cell.n, "sample_shape": list(subset.shape[1:]),
                   "dtype": str(subset.dtype).replace("torch.", ""),
                   "sha256": data_fingerprint(subset)}
    record = run_record(cell.train, budget, ctx.runtime, data_record, trainer.ctx, cell.n, trainer.num_parameters)
    record["experiment"] = {"name": "cifar-optimal-gap", "cell": cell.name, "n": cell.n, "arch": cell.arch,
                            "width": cell.width, "seed": cell.seed,
                            "evaluation_points": [p.images for p in cell.points]}
    folder = RunFolder(ctx.out / CELLS_DIR / cell.name, kind=RUN_KIND)
    prov = record["provenance"]
    launch = {"started_utc": prov["created_utc"], "command": prov["command"], "git_commit": prov["git_commit"],
              "budget_steps": cell.final_steps, "device": str(ctx.device), "world_size": 1}
    outcome = CellOutcome(cell, "done")
    with folder.session(record, compared=COMPARED, ignored=IGNORED, launch=launch,
                        extra_files=(LOG_FILE, SUMMARY_FILE, SUBSET_FILE)) as found:
        if not folder.has(SUBSET_FILE):
            save_subset(folder.file(SUBSET_FILE), ctx.data.indices[:cell.n], seed=ctx.data.subset_seed,
                        balanced=True, source=ctx.data.source, num_items=ctx.data.num_items_source)
        if found is not None:
            trainer.resume(found)
        for point in pending:
            if trainer.step > point.steps:
                outcome.skipped.append(point.images)  # trained past it (e.g. by mogsim train) without evaluating
                continue
            if ctx.out_of_time():
                outcome.status = "stopped"
                break
            summary = trainer.fit(point.steps, folder.path, progress=ctx.progress.training(cell, trainer.step),
                                  deadline=ctx.deadline, description=cell.label())
            folder.write_json(SUMMARY_FILE, {**summary, "resumed_from": found.name if found else None,
                                             "total_steps": cell.final_steps, "parameters": trainer.num_parameters,
                                             "budget": record["budget"]})
            if not summary["complete"]:
                outcome.status = "stopped"
                break
            metrics = evaluate_point(trainer.ema_denoiser(), cell, point, ctx)
            outcome.evaluated.append(point.images)
            ctx.progress.evaluated(cell, point, metrics)
    return outcome


def evaluate_point(denoiser: Any, cell: Cell, point: EvalPoint, ctx: GridContext) -> dict[str, Any]:
    """Evaluate ``denoiser`` as cell ``cell`` at ``point`` and store the results (``metrics.json`` last)."""
    refs = ctx.references_for(cell.n)
    seeds = parse_seeds(ctx.config.sample_seeds, option="sample_seeds")
    settings = eval_settings(ctx.config, cell.train)
    ev = evaluate_cell(denoiser, ctx.data.subset(cell.n), test_images=ctx.data.held_out, sample_seeds=seeds,
                       references=refs, similarity=ctx.backend, device=ctx.device, settings=settings,
                       cache_dir=ctx.out / CACHE_DIR, progress=ctx.progress.sampling(cell, point))
    ev.metrics.update({
        "cell": {"name": cell.name, "n": cell.n, "arch": cell.arch, "width": cell.model_channels, "net": cell.net,
                 "seed": cell.seed, "key": cell.key},
        "steps": point.steps, "images_seen": point.images, "eval_key": ctx.eval_key,
        "optimum_key": refs.optimum_key(seeds, settings),
        "held_out": ctx.data.held_out_record, "data": ctx.data.train_record(cell.n)})
    ev.save(point_dir(ctx.out, cell, ctx.eval_key, point), optimum_rows=OPTIMUM_ROWS)
    return ev.metrics


# -- the grid -------------------------------------------------------------------------------------------------------
@dataclass
class GridResult:
    """What :func:`run_grid` did, cell by cell."""

    outcomes: list[CellOutcome]
    complete: bool
    seconds: float


def run_grid(cells: list[Cell], out: Path, config: GapConfig, data: GapData, device: torch.device,
             runtime: RuntimeOptions, backend: Similarity, *, progress: ProgressFactory = silent,
             deadline: float | None = None) -> GridResult:
    """Train and evaluate ``cells`` (already sharded) in order; stop cleanly at ``deadline``."""
    t0 = time.perf_counter()
    key = eval_key(config, backend)
    remaining = [c for c in cells if any(not point_done(out, c, key, p) for p in c.points)]
    train_steps = sum(max(0, c.final_steps - steps_done(out, c)) for c in remaining)
    points = sum(not point_done(out, c, key, p) for c in remaining for p in c.points)
    ctx = GridContext(out, config, data, device, runtime, backend, key, GridProgress(progress, train_steps, points),
                      deadline)
    outcomes = []
    for cell in cells:
        outcome = run_cell(cell, ctx)
        outcomes.append(outcome)
        if outcome.status == "stopped":
            break
    complete = len(outcomes) == len(cells) and all(o.status != "stopped" for o in outcomes)
    return GridResult(outcomes, complete, time.perf_counter() - t0)


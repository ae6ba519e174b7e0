"""Run the cells of ``mogsim cifar-optimal-gap`` as a job array through submitit (``pip install 'mogsim[slurm]'``).

Task ``i`` of ``M`` runs the same command with ``--shard i/M`` (its own cells; each cell holds its run folder's
lock), so a task that is killed or times out is resumed by running the command again. The caller waits for every
task, then combines the run folders as ``--merge`` does. ``--cluster`` picks the executor: ``slurm``, ``local``
(processes on this machine), ``debug`` (in this process, one task after the other; for tests and debugging) or
``auto`` (Slurm when available, else local). Task logs and submitit's pickles go to ``<out>/submitit/``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Callable

from ...errors import InputError
from .config import GapRunOptions


def shard_task(options: dict[str, Any], index: int, count: int) -> int:
    """One array task: the command for shard ``index/count`` of the cells, without combining."""
    from .command import run_command

    task = {**options, "shard": f"{index}/{count}", "launcher": "inline", "report": False, "quiet": True,
            "merge": False}
    return run_command(task, echo=lambda line: print(line, flush=True), progress_mode="plain",
                       combine_results=False)


def check_submitit(run: GapRunOptions) -> None:
    """Refuse, before any work, a submitit launch that cannot run: submitit missing, or ``--shard`` given."""
    if run.shard is not None:
        raise InputError("shard: the submitit launcher makes the shards itself; leave --shard out",
                         parameter=("shard", "launcher"))
    if importlib.util.find_spec("submitit") is None:
        raise InputError("launcher=submitit needs submitit; pip install 'mogsim[slurm]'", parameter="launcher")


def launch_shards(options: dict[str, Any], run: GapRunOptions, num_cells: int, out: Path,
                  echo: Callable[[str], None]) -> bool:
    """Submit one task per shard, wait for all, and return whether every one finished (exit code 0)."""
    import submitit

    count = min(run.jobs or num_cells, num_cells)
    try:
        executor = submitit.AutoExecutor(folder=out / "submitit", cluster=None if run.cluster == "auto"
                                         else run.cluster)
    except RuntimeError as exc:
        raise InputError(f"cluster={run.cluster}: submitit found no executor ({exc})", parameter="cluster") from None
    executor.update_parameters(name="mogsim-cifar-optimal-gap", timeout_min=run.slurm_minutes,
                               gpus_per_node=run.gpus_per_task, cpus_per_task=run.cpus_per_task,
                               slurm_partition=run.slurm_partition)
    jobs = executor.map_array(shard_task, [options] * count, list(range(count)), [count] * count)
    echo(f"submitted {count} tasks ({executor.cluster}): job {jobs[0].job_id.split('_')[0]}; logs in "
         f"{out / 'submitit'}")
    codes = []
    for i, job in enumerate(jobs):
        try:
            codes.append(job.result())
        except Exception as exc:  # noqa: BLE001 - a failed task: one line with where its log is
            first = str(exc).strip().splitlines()
            raise InputError(f"launcher: task {i}/{count} (job {job.job_id}) failed: "
                             f"{first[-1] if first else type(exc).__name__}; see {out / 'submitit'}") from None
    return all(code == 0 for code in codes)

"""Progress display for every command: rich bars on a terminal, plain lines otherwise, or nothing.

The library reports through a :data:`~mogsim.denoiser.ProgressFactory` and never prints by itself; a front end picks
the display with :func:`progress_display`. Plain mode writes a line when a task starts, at most every ``interval``
seconds while it runs, and when it ends, so a log file shows progress within seconds. Rich is imported only for rich
mode (it comes with the command line's typer, but scripts run where only torch and numpy are installed).
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import IO, Any, Iterator

from .denoiser import Advance, ProgressFactory
from .errors import InputError

MODES = ("auto", "rich", "plain", "none")


def ignore(steps: int, /, note: str | None = None) -> None:
    """An :class:`~mogsim.denoiser.Advance` that shows nothing."""
    return None


def silent(description: str, total: int) -> Advance:
    """A :data:`ProgressFactory` that shows nothing."""
    return ignore


class PlainProgress:
    """A :data:`ProgressFactory` printing ``description: done/total (elapsed) note`` lines to ``stream``."""

    def __init__(self, stream: IO[str] | None = None, interval: float = 5.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval

    def __call__(self, description: str, total: int) -> Advance:
        state: dict[str, Any] = {"done": 0, "note": "", "t0": time.monotonic()}

        def line(now: float) -> None:
            state["last"] = now
            tail = f"  {state['note']}" if state["note"] else ""
            print(f"{description}: {state['done']}/{total} ({now - state['t0']:.0f} s){tail}", file=self.stream,
                  flush=True)

        def advance(steps: int, /, note: str | None = None) -> None:
            state["done"] += steps
            if note is not None:
                state["note"] = note
            now = time.monotonic()
            if (state["done"] >= total and steps) or now - state["last"] >= self.interval:
                line(now)

        line(state["t0"])
        return advance


@contextlib.contextmanager
def progress_display(mode: str = "auto", stream: IO[str] | None = None) -> Iterator[ProgressFactory]:
    """Yield a :data:`ProgressFactory` for ``mode``: ``rich`` (bars), ``plain`` (lines), ``none``, or ``auto``
    (rich when ``stream``, default stderr, is a terminal, else plain)."""
    if mode not in MODES:
        raise InputError(f"progress={mode!r}: choose one of {', '.join(MODES)}", parameter="progress")
    out = stream if stream is not None else sys.stderr
    if mode == "auto":
        mode = "rich" if out.isatty() else "plain"
    if mode == "none":
        yield silent
    elif mode == "plain":
        yield PlainProgress(out)
    else:
        with _rich_bars(out) as factory:
            yield factory


@contextlib.contextmanager
def _rich_bars(stream: IO[str]) -> Iterator[ProgressFactory]:
    from rich.console import Console  # optional: only the rich display needs it
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn(), TextColumn("{task.fields[note]}"))
    with Progress(*columns, console=Console(file=stream)) as bars:
        def factory(description: str, total: int) -> Advance:
            task = bars.add_task(description, total=total, note="")

            def advance(steps: int, /, note: str | None = None) -> None:
                if note is None:
                    bars.advance(task, steps)
                else:
                    bars.update(task, advance=steps, note=note)

            return advance

        yield factory

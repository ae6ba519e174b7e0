"""Progress display for training: a rich progress bar on a terminal, one line per log row otherwise."""

from __future__ import annotations

import math
import sys
from types import TracebackType
from typing import Any


class TrainProgress:
    """Shows steps done, loss and images/s. ``mode``: ``rich``, ``plain``, ``none`` or ``auto`` (rich on a TTY)."""

    def __init__(self, total: int, start: int = 0, mode: str = "auto", *, enabled: bool = True) -> None:
        self.total, self.start = total, start
        if not enabled:
            mode = "none"
        elif mode == "auto":
            mode = "rich" if sys.stderr.isatty() else "plain"
        self._bar: Any = None
        self._task: Any = None
        if mode == "rich":
            try:
                from rich.console import Console
                from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                           TimeRemainingColumn)
            except ImportError:  # rich comes with typer, but the library must not depend on it
                mode = "plain"
            else:
                self._bar = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[ips]} img/s"),
                                     TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True))
        self.mode = mode

    def __enter__(self) -> "TrainProgress":
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task("train", total=self.total, completed=self.start, loss="-", ips="-")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()

    def advance(self, steps: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=steps)

    def report(self, step: int, loss: float, images_per_s: float) -> None:
        """A log row: update the bar's fields, or print one line in plain mode."""
        loss_s = f"{loss:.4g}" if math.isfinite(loss) else str(loss)
        ips_s = f"{images_per_s:,.0f}"
        if self._bar is not None:
            self._bar.update(self._task, loss=loss_s, ips=ips_s)
        elif self.mode == "plain":
            print(f"step {step}/{self.total}  loss {loss_s}  {ips_s} img/s", file=sys.stderr, flush=True)

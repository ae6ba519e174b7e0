"""Options every experiment command shares (where results go, a config file, a report, a time limit, progress), and
the one merge of command line > config file > defaults for a command's declared parameters.

``mogsim subspace-recovery`` and ``mogsim jacobian-rank`` generate their options from these and their experiment's
config dataclass (:mod:`mogsim.params`), so a config file may set any of them by name.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import InputError
from ..params import check_params, flags, param, read_config_file, resolve, unknown_keys

#: Exit code of a command stopped by its time limit (re-run it to resume).
EXIT_TIME_LIMIT = 3


@dataclass(frozen=True)
class CommandOptions:
    """How a command runs (not hashed into run folders)."""

    out: str | None = param(None, "Folder for run folders (one per configuration, reused when finished).",
                            shown="runs/<command>")
    config: str | None = param(None, "JSON or TOML file of option values (options on the command line win).")
    report: bool | None = param(None, "Also write report.pdf into the run folder.", shown="off")
    time_limit: float | None = param(None, "Minutes; stop cleanly after this, re-run to resume.", positive=True,
                                     max=1e7)
    quiet: bool | None = param(None, "No progress display.", shown="off")

    def __post_init__(self) -> None:
        check_params(self)

    def deadline(self) -> float | None:
        """The ``time.monotonic()`` value at which the time limit ends (None: no limit), counted from now."""
        return time.monotonic() + 60.0 * self.time_limit if self.time_limit is not None else None


@dataclass
class CommandResult:
    """What an experiment's run returns: the run folder, its metrics (empty until complete), whether it finished,
    whether it was reused, and how many of its ``total`` units (trials, levels, ...) are done."""

    path: Path
    metrics: dict[str, Any]
    complete: bool
    reused: bool
    done: int
    total: int
    unit: str
    timing: dict[str, float] = field(default_factory=dict)

    def lines(self, result_lines: Callable[[dict[str, Any]], list[str]]) -> list[str]:
        """What the command prints: ``result_lines(metrics)`` and the run folder, or where a stopped run stands."""
        if not self.complete:
            return [f"stopped at the time limit after {self.done}/{self.total} {self.unit}; results kept in "
                    f"{self.path}. Re-run the same command to resume."]
        return [*result_lines(self.metrics),
                f"run folder: {self.path}" + (" (reused finished results)" if self.reused else "")]


def resolve_command(options: Mapping[str, Any], *classes: type) -> list[Any]:
    """One instance of each of ``classes`` from the command line's ``options`` (None = not given), the ``config``
    file they name, and the defaults; a key of the file that no class declares is refused."""
    path = options.get("config")
    file = read_config_file(path) if path is not None else {}
    source = f"config={str(path)!r}"
    unknown = unknown_keys(file, *classes)
    if unknown:
        raise InputError(f"{source}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(flags(*classes)))}",
                         parameter="config")
    return [resolve(cls, options, file, source=source) for cls in classes]

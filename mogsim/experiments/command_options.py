"""Options every experiment command shares (where results go, a config file, a report, a time limit, progress), and
the one merge of command line > config file > defaults for a command's declared parameters.

``mogsim subspace-recovery`` and ``mogsim jacobian-rank`` generate their options from these and their experiment's
config dataclass (:mod:`mogsim.params`), so a config file may set any of them by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

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

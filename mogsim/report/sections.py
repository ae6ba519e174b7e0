"""The one interface between an experiment and the report: a :class:`Section` built from a run folder's files.

An experiment contributes a module with ``KINDS``, a tuple of :class:`Kind` (a name, ``detect(folder)`` reading
only file names or small files, and ``build(files)`` returning a :class:`Section`), and adds the module's name to
:data:`KIND_MODULES`. Section modules read files only (through :class:`~.files.RunFiles`), never the experiment's
code, so a report works from a copied folder and from a fresh clone.

All text fields are markup (``<b>``, ``<i>``, ``<sub>``, ``<super>``; write ``&lt;`` for ``<``) built with
f-strings whose numbers are stored values (:class:`~.printed.Num`); the typesetter refuses any other number.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError
from .files import RunFiles

#: Modules of mogsim.report that define ``KINDS``; a new experiment adds its module here (order = detection order).
KIND_MODULES: tuple[str, ...] = ("score_match", "train", "theory", "subspace_recovery", "jacobian_rank",
                                 "cifar_optimal_gap")

#: The values of :attr:`Claim.agrees`.
AGREES = ("yes", "partly", "no", "not tested", "not judged")


@dataclass
class Claim:
    """One row of "what the paper claims | what we measured | agrees?".

    ``agrees`` is one of :data:`AGREES`, decided from stored values only (stored verdict labels, stored judgments);
    ``basis`` says which. Where the files store no judgment, say "not judged" rather than inventing a threshold.
    """

    paper: str
    measured: str
    agrees: str
    basis: str = ""

    def __post_init__(self) -> None:
        if self.agrees not in AGREES:
            raise ValueError(f"agrees must be one of {AGREES}, not {self.agrees!r}")


@dataclass
class Table:
    """A captioned table; ``align`` holds one letter per column (``l`` text, ``r`` numbers)."""

    label: str
    caption: str
    header: list[str]
    rows: list[list[str]]
    align: str = ""
    #: Relative column widths (None: reportlab sizes them).
    widths: list[float] | None = None
    #: Place it in the appendix instead of the section (long tables).
    appendix: bool = False
    #: An optional header row above ``header``: (text, number of columns it spans).
    groups: list[tuple[str, int]] | None = None


@dataclass
class Figure:
    """A captioned figure drawn on demand; the caption says what to look at."""

    label: str
    caption: str
    draw: Callable[[], Any]  # () -> matplotlib.figure.Figure
    #: The section's key figure, shown on the title page when this section comes first.
    key: bool = False


@dataclass
class Equations:
    """Displayed mathematics under a heading, typeset from stored LaTeX (matplotlib's mathtext subset)."""

    heading: str
    latex: list[str]


@dataclass
class Section:
    """What one experiment contributes to a report."""

    kind: str
    title: str
    folder: Path
    question: str
    #: The answer in at most two sentences, from stored values.
    answer: str
    claims: list[Claim]
    #: Data, model, budget, metric definitions, thresholds: one paragraph each.
    methods: list[str]
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    #: Observations stated in the files (e.g. stored notes), one paragraph each.
    notes: list[str] = field(default_factory=list)
    #: (label, value) rows of the provenance appendix: command, config, seeds, versions, commit, device, time.
    provenance: list[tuple[str, str]] = field(default_factory=list)
    #: Displayed derivations, shown after the results.
    equations: list[Equations] = field(default_factory=list)


@dataclass(frozen=True)
class Kind:
    """A kind of run folder: how to recognise it and how to build its section."""

    name: str
    #: What identifies it, for error messages (e.g. "sweep_metrics.json").
    marker: str
    detect: Callable[[Path], bool]
    build: Callable[[RunFiles], Section]


def kinds() -> list[Kind]:
    """Every registered kind, in detection order."""
    out: list[Kind] = []
    for name in KIND_MODULES:
        out.extend(importlib.import_module(f"{__package__}.{name}").KINDS)
    return out


def detect(folder: Path) -> Kind | None:
    """The kind of run folder ``folder`` is, or None."""
    for kind in kinds():
        if kind.detect(folder):
            return kind
    return None


def expand(paths: list[Path]) -> list[tuple[Path, Kind]]:
    """Each path with its kind; a folder of unknown kind whose subfolders are run folders stands for them."""
    out: list[tuple[Path, Kind]] = []
    for path in paths:
        if not path.exists():
            raise InputError(f"{path}: no such folder; give a run folder or a sweep folder")
        if not path.is_dir():
            raise InputError(f"{path}: is a file; give the run folder that holds it ({path.parent})")
        kind = detect(path)
        if kind is not None:
            out.append((path, kind))
            continue
        children = [(c, detect(c)) for c in sorted(path.iterdir()) if c.is_dir()]
        found = [(c, k) for c, k in children if k is not None]
        if not found:
            markers = "; ".join(f"{k.marker} ({k.name})" for k in kinds())
            raise InputError(f"{path}: not a run folder mogsim report knows; expected one of: {markers}")
        out.extend(found)
    return out


def build_sections(paths: list[str | Path]) -> list[Section]:
    """The sections of the given run folders, in order."""
    return [kind.build(RunFiles(path)) for path, kind in expand([Path(p) for p in paths])]

"""Printed values that remember where they are stored, so a report can never print a number it did not read.

Section code writes ordinary f-strings; a value read from a run's files is a :class:`Num` (or a :class:`StoredText`)
whose ``format`` leaves a placeholder token in the string (an index into a process-wide registry, so a string made
at import time, e.g. a citation, resolves the same in every build). When the typesetter renders the string,
:func:`resolve` replaces each token by the printed text, escapes it for markup, and records it in the build's
:class:`Ledger`. Any number left in the literal text around the tokens is a bug and raises :class:`UnsourcedNumber`:
prose holds words, every number comes from a file (or is structural: a figure, table, section or page number, or a
citation year, made with :class:`Structural`).

The ledger is what the tests check against the run files: every number in the PDF's text is one the ledger
recorded, and every recorded value is a rounding of the value at its :class:`Source`.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence
from xml.sax.saxutils import escape

#: A number as it appears in text: optional minus (ASCII or U+2212), digits with optional thousands commas,
#: decimals and exponent; not part of a word (``d1``, ``x0``, ``r2_N16`` hold no numbers).
NUMBER = re.compile(r"(?<![\w.])[\u2212-]?\d+(?:,\d{3})*(?:\.\d+)?(?:e[\u2212+-]?\d+)?(?![\w])")

MINUS = "\u2212"
_OPEN, _CLOSE = "\ue000", "\ue001"
_TOKEN = re.compile(f"{_OPEN}(\\d+){_CLOSE}")


#: The last element of a :class:`Source` that points at a JSON object's key rather than its value.
KEY = "<key>"


class UnsourcedNumber(AssertionError):
    """Section text printed a number that no file holds (a programming error, not a user error)."""


@dataclass(frozen=True)
class Source:
    """Where a printed value is stored: a file and the JSON keys or ``("row", i, column)`` of a CSV cell."""

    file: Path
    where: tuple[Any, ...]

    def __str__(self) -> str:
        return f"{self.file.name}:{'.'.join(str(w) for w in self.where)}"


class Printed:
    """Something whose text enters a report with its origin; formatting it leaves a placeholder token."""

    kind = "printed"

    def text(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def __format__(self, spec: str) -> str:
        with _LOCK:
            _REGISTRY.append(self)
            return f"{_OPEN}{len(_REGISTRY) - 1}{_CLOSE}"

    def __str__(self) -> str:
        return format(self, "")


def format_number(value: float, style: str = "sig3") -> str:
    """The printed form of a number: ``sig<n>`` (n significant digits, trailing zeros dropped), ``dec<n>`` (n
    decimals), ``int`` (thousands commas from 10,000), ``id`` (an integer identifier such as a seed: plain digits). Tiny values use ``1.2e−5``; minus signs are U+2212."""
    if isinstance(value, bool):
        raise TypeError("booleans are words, not numbers")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"cannot print {v} as a number")
    if style == "id":
        return (MINUS if v < 0 else "") + str(abs(int(round(v))))
    if style == "int" or (isinstance(value, int) and style.startswith("sig")):
        n = int(round(v))
        text = f"{abs(n):,}" if abs(n) >= 10_000 else str(abs(n))
        return (MINUS if n < 0 else "") + text
    if style.startswith("dec"):
        text = f"{abs(v):.{int(style[3:])}f}"
        return (MINUS if v < 0 and float(text) != 0 else "") + text
    if not style.startswith("sig"):
        raise ValueError(f"unknown number style {style!r}")
    digits = int(style[3:])
    a = abs(v)
    if a == 0:
        return "0"
    exponent = math.floor(math.log10(a))
    if a < 1e-3:
        mantissa, exp = f"{a:.{digits - 1}e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".") if "." in mantissa else mantissa
        text = f"{mantissa}e{MINUS if int(exp) < 0 else ''}{abs(int(exp))}"
    elif exponent >= digits - 1:
        n = int(round(a))
        text = f"{n:,}" if n >= 10_000 else str(n)
    else:
        text = f"{a:.{digits - 1 - exponent}f}"
        text = text.rstrip("0").rstrip(".") if "." in text else text
    return (MINUS if v < 0 else "") + text


@dataclass(frozen=True, eq=False)
class Num(Printed):
    """A number read from a run file, printed in ``style`` (see :func:`format_number`)."""

    value: float
    source: Source
    style: str = "sig3"
    kind = "number"

    def text(self) -> str:
        return format_number(self.value, self.style)

    def styled(self, style: str) -> "Num":
        """The same stored value printed another way."""
        return Num(self.value, self.source, style)


@dataclass(frozen=True, eq=False)
class StoredText(Printed):
    """A string read from a run file (a command, a rule, a verdict label), printed verbatim."""

    value: str
    source: Source
    kind = "text"

    def text(self) -> str:
        return self.value


@dataclass(frozen=True, eq=False)
class Structural(Printed):
    """A number that is part of the document, not a result: ``role`` is figure, table, section, page, citation or
    path (a folder name the user gave)."""

    value: str
    role: str
    kind = "structural"

    def text(self) -> str:
        return self.value


@dataclass(frozen=True)
class Entry:
    """One printed value as the reader sees it, with where it came from."""

    text: str
    kind: str
    source: Source | None = None
    value: Any = None
    role: str = ""


#: Every value formatted into a string in this process, indexed by its placeholder (append-only: a few thousand
#: small objects per report).
_REGISTRY: list[Printed] = []
_LOCK = threading.Lock()


def _printed(match: re.Match[str]) -> Printed:
    return _REGISTRY[int(match.group(1))]


def raw_text(text: str) -> str:
    """``text`` with its placeholders replaced by their printed text, unescaped and unrecorded (for text that is
    drawn, not typeset, such as LaTeX turned into an equation drawing)."""
    return _TOKEN.sub(lambda m: _printed(m).text(), text)


def plain_text(markup: str) -> str:
    """``markup`` with its placeholders printed and its tags removed, as a reader sees it (nothing recorded)."""
    from html import unescape

    return unescape(re.sub(r"<[^>]+>", "", raw_text(markup)))


@dataclass
class Ledger:
    """The values a report build rendered, in order."""

    rendered: list[Entry] = field(default_factory=list)

    def record(self, item: Printed) -> str:
        text = item.text()
        self.rendered.append(Entry(text, item.kind, getattr(item, "source", None), getattr(item, "value", None),
                                   getattr(item, "role", "")))
        return text



_LEDGER: contextvars.ContextVar[Ledger] = contextvars.ContextVar("mogsim_report_ledger")
_DEFAULT = Ledger()


def _current() -> Ledger:
    return _LEDGER.get(_DEFAULT)


@contextlib.contextmanager
def new_ledger() -> Iterator[Ledger]:
    """A fresh ledger for one report build: what is resolved inside is recorded there."""
    ledger = Ledger()
    reset = _LEDGER.set(ledger)
    try:
        yield ledger
    finally:
        _LEDGER.reset(reset)


def resolve(text: str, *, markup: bool = True) -> str:
    """Replace the placeholders in ``text`` by their printed text (XML-escaped when ``markup``), recording each.

    ``text`` is section markup (``<b>``, ``<i>``, ``<sub>``, ``<super>`` and entities); a number in it outside a
    placeholder raises :class:`UnsourcedNumber`.
    """
    ledger = _current()
    out, pos = [], 0
    for m in _TOKEN.finditer(text):
        out.append(_literal(text[pos:m.start()]))
        printed = ledger.record(_printed(m))
        out.append(escape(printed) if markup else printed)
        pos = m.end()
    out.append(_literal(text[pos:]))
    return "".join(out)


def _literal(text: str) -> str:
    bare = re.sub(r"&#?\w+;", " ", re.sub(r"<[^>]*>", "", re.sub(r"<br\s*/?>", " ", text)))
    found = NUMBER.search(bare)
    if found:
        raise UnsourcedNumber(f"number {found.group()!r} in report text without a source: {text!r}")
    return text


def join(items: Sequence[Any], sep: str = ", ", last: str | None = None) -> str:
    """``a, b and c`` from printed values (or strings)."""
    parts = [f"{x}" for x in items]
    if last is not None and len(parts) > 1:
        return sep.join(parts[:-1]) + last + parts[-1]
    return sep.join(parts)


def structural(value: Any, role: str) -> Structural:
    """A structural number (figure, table, section, page, citation, path)."""
    return Structural(str(value), role)


def markup_escape(text: str) -> str:
    """Plain text made safe for section markup."""
    return escape(text)

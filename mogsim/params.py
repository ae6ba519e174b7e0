"""Declared parameters: config dataclass fields that carry their help text, bounds and command-line flag.

A config dataclass declares each field with :func:`param`. From that one declaration come

* validation (:func:`check_params`): type, finiteness (no NaN or Inf), bounds and choices, raising an
  :class:`~mogsim.errors.InputError` that names the parameter (``num_train=63: ...``);
* config files (:func:`read_config_file`): strict JSON (no ``NaN``/``Infinity``) or TOML, whose keys are parameter
  names or flag names without dashes; unknown keys are refused;
* the command line: ``mogsim.cli`` generates typer options and ``scripts/`` generate argparse options
  (:func:`add_arguments`) with the same help text and shown defaults, and :func:`resolve` merges the sources in one
  order: command line > config file > the dataclass default.

Front ends name parameters by their flags: :func:`flags` maps names to flags and :func:`to_flags` rewrites a library
message (``num_train=63: ...`` becomes ``--n 63: ...``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from .errors import InputError
from .parsing import Bounds, finite_number, number_error, whole_number

_SPEC = "mogsim.param"
KINDS = (int, float, bool, str)


@dataclass(frozen=True)
class Spec:
    """How a parameter is documented, checked and spelled on the command line.

    ``min``/``max`` are inclusive bounds; ``positive`` means > 0; ``below`` an exclusive upper bound; ``choices``
    the allowed strings; ``shown`` the default as the help should show it (when the field's default is a
    placeholder such as None); ``parse`` reads the value from command-line text (e.g. ``"16,32,...,4096"``);
    ``cli=False`` keeps the parameter off the command line (config files only); ``repeat=True`` makes a tuple of
    strings a repeatable option (``--x A --x B``) instead of one comma-separated value (for paths, which may hold
    commas).
    """

    help: str
    flag: str | None = None
    min: float | None = None
    max: float | None = None
    positive: bool = False
    below: float | None = None
    choices: tuple[str, ...] | None = None
    shown: str | None = None
    parse: Callable[[str], Any] | None = None
    cli: bool = True
    repeat: bool = False


def param(default: Any, help: str, **spec: Any) -> Any:
    """A dataclass field with a :class:`Spec` (keyword arguments as there)."""
    return dataclasses.field(default=default, metadata={_SPEC: Spec(help, **spec)})


@dataclass(frozen=True)
class Declared:
    """One declared field: its name, spec, default, value type and whether None is allowed."""

    name: str
    spec: Spec
    default: Any
    kind: type | tuple
    optional: bool

    @property
    def flag(self) -> str:
        return self.spec.flag or "--" + self.name.replace("_", "-")

    @property
    def shown_default(self) -> str:
        """The default as help text shows it."""
        if self.spec.shown is not None:
            return self.spec.shown
        value = self.default
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, tuple):
            return ",".join(map(str, value))
        if isinstance(value, float):
            return f"{value:g}"
        return "none" if value is None else str(value)


def declared(cls: type) -> list[Declared]:
    """The declared fields of a config dataclass (class or instance), in order."""
    cls = cls if isinstance(cls, type) else type(cls)
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        spec = f.metadata.get(_SPEC)
        if spec is None:
            continue
        kind, optional = _kind(hints[f.name])
        out.append(Declared(f.name, spec, f.default, kind, optional))
    return out


def _kind(hint: Any) -> tuple[type | tuple, bool]:
    """(int | float | bool | str | (tuple, element type), optional) of a type hint."""
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional:
        hint = next(a for a in args if a is not type(None))
    if typing.get_origin(hint) is tuple:
        return (tuple, typing.get_args(hint)[0]), optional
    if hint not in KINDS:
        raise TypeError(f"declared parameters must be int, float, bool, str or tuples of them, not {hint}")
    return hint, optional


# -- validation --------------------------------------------------------------------------------------------------------
def check_params(config: Any) -> None:
    """Check every declared field of a dataclass instance (type, finite, bounds, choices)."""
    for d in declared(config):
        check_value(d, getattr(config, d.name))


def check_value(d: Declared, value: Any) -> None:
    """Raise :class:`InputError` naming ``d.name`` unless ``value`` fits the declaration.

    Numbers are checked by :func:`~mogsim.parsing.whole_number` and :func:`~mogsim.parsing.finite_number` (one
    message for every range); the type check before them is stricter than theirs: a config holds plain ``int`` and
    ``float`` values (JSON-ready), never numpy scalars or tensors (:func:`coerce` converts those from files).
    """
    if value is None and d.optional:
        return
    items = value if isinstance(d.kind, tuple) else (value,)
    element = d.kind[1] if isinstance(d.kind, tuple) else d.kind
    if isinstance(d.kind, tuple) and not isinstance(value, tuple):
        raise InputError(f"{d.name}={value!r}: pass a list of {_noun(element)}s", parameter=d.name)
    for item in items:
        if element in (int, float):
            bounds = bounds_of(d.spec)
            if not _is_kind(item, element):
                raise number_error(d.name, value, f"pass {_noun(element)}", bounds)
            check = whole_number if element is int else finite_number
            check(item, d.name, **dataclasses.asdict(bounds), shown=value)
        elif not _is_kind(item, element):
            raise InputError(f"{d.name}={value!r}: pass {_noun(element)}", parameter=d.name)
        if d.spec.choices is not None and item not in d.spec.choices:
            raise InputError(f"{d.name}={value!r}: choose one of {', '.join(d.spec.choices)}", parameter=d.name)


def bounds_of(s: Spec) -> Bounds:
    """The range a spec allows: the tighter of ``min`` and ``positive`` below, of ``max`` and ``below`` above."""
    lo, lo_open = s.min, False
    if s.positive and (lo is None or lo <= 0):
        lo, lo_open = 0, True
    hi, hi_open = s.max, False
    if s.below is not None and (hi is None or s.below <= hi):
        hi, hi_open = s.below, True
    return Bounds(lo, hi, lo_open, hi_open)


def _is_kind(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _noun(kind: type) -> str:
    return {int: "a whole number", float: "a number", bool: "true or false", str: "a string"}[kind]


def coerce(d: Declared, value: Any) -> Any:
    """A value from a config file or a command line in the declared type: whole floats and numpy integers become
    ints, lists become tuples, ``"8,4"`` becomes ``(8, 4)``; anything else is left for :func:`check_value`."""
    element = d.kind[1] if isinstance(d.kind, tuple) else d.kind
    if isinstance(value, str) and d.spec.parse is not None:
        try:
            return d.spec.parse(value)
        except InputError as exc:
            raise InputError(str(exc), parameter=d.name) from None
    if isinstance(d.kind, tuple):
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
            try:
                return tuple(element(p) for p in parts)
            except ValueError:
                raise InputError(f"{d.name}={value!r}: write comma-separated values, e.g. 8,4",
                                 parameter=d.name) from None
        if isinstance(value, (list, tuple)):
            return tuple(_coerce_item(x, element) for x in value)
        return value
    return _coerce_item(value, element)


def _coerce_item(value: Any, kind: type) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # an integer beyond float64: left for check_value to refuse as not finite
            return value
    return value


# -- sources -----------------------------------------------------------------------------------------------------------
def resolve(cls: type, command_line: Mapping[str, Any], file: Mapping[str, Any] | None = None, *,
            source: str = "config", **fixed: Any) -> Any:
    """An instance of ``cls`` from, in order of precedence, ``command_line`` (None = not given), ``file`` (keys:
    parameter names or flag names without dashes; values checked here, errors name ``source``) and the defaults.
    ``fixed`` are further constructor arguments that are not declared parameters."""
    decl = {d.name: d for d in declared(cls)}
    values: dict[str, Any] = {}
    for key, value in (file or {}).items():
        d = decl.get(key_to_name(cls, key))
        if d is None:
            continue
        value = coerce(d, value)
        try:
            check_value(d, value)
        except InputError as exc:
            raise InputError(f"{source}: {exc}", parameter="config") from None
        values[d.name] = value
    for name, value in command_line.items():
        if value is not None and name in decl:
            values[name] = coerce(decl[name], value)
    return cls(**values, **fixed)


def key_to_name(cls: type, key: str) -> str:
    """The parameter a config-file key names: the parameter itself or its flag without dashes (``n``)."""
    for d in declared(cls):
        if key in (d.name, d.flag.lstrip("-"), d.flag.lstrip("-").replace("-", "_")):
            return d.name
    return key


def unknown_keys(data: Mapping[str, Any], *classes: type, extra: tuple[str, ...] = ()) -> list[str]:
    """Keys of a config file that name no declared parameter of ``classes`` and are not in ``extra``."""
    known = {d.name for cls in classes for d in declared(cls)}
    return sorted(k for k in data if k not in extra and not any(key_to_name(cls, k) in known for cls in classes))


def flags(*classes: type) -> dict[str, str]:
    """Parameter name -> command-line flag for the declared fields of ``classes``."""
    return {d.name: d.flag for cls in classes for d in declared(cls)}


def to_flags(message: str, names_to_flags: Mapping[str, str], about: str | tuple[str, ...] | None = None) -> str:
    """Rewrite a library message for the command line: ``name=value`` becomes ``--flag value`` for every name in
    ``names_to_flags``; the names the message is ``about`` (its error's ``parameter``) and names with an underscore
    (unambiguous identifiers) become their flags wherever they stand as words."""
    subjects = {about} if isinstance(about, str) else set(about or ())
    for name, flag in sorted(names_to_flags.items(), key=lambda kv: -len(kv[0])):
        message = re.sub(rf"(?<![\w-]){re.escape(name)}=", flag + " ", message)
        if "_" in name or name in subjects:
            message = re.sub(rf"(?<![\w-]){re.escape(name)}\b(?!-)", flag, message)
    return message


# -- config files ------------------------------------------------------------------------------------------------------
def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON; write numbers as finite values")


def loads_strict(text: str) -> Any:
    """Parse JSON, refusing the non-standard constants ``NaN``, ``Infinity`` and ``-Infinity``."""
    return json.loads(text, parse_constant=_refuse_constant)


def dumps_strict(data: Any) -> str:
    """Indented standard JSON; a NaN or infinite number is a bug and raises ``ValueError``."""
    return json.dumps(data, indent=2, allow_nan=False) + "\n"


def read_config_file(path: str | Path, *, option: str = "config") -> dict[str, Any]:
    """A JSON (strict) or TOML (``.toml``) file holding one object of option values."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{option}={str(p)!r}: no such file; pass a JSON or TOML file of option values",
                         parameter=option)
    try:
        if p.suffix.lower() == ".toml":
            import tomllib  # Python >= 3.11 only, and needed only for TOML files

            data = tomllib.loads(p.read_text())
        else:
            data = loads_strict(p.read_text())
    except Exception as exc:  # noqa: BLE001 - json/toml decoding errors of many types
        raise InputError(f"{option}={str(p)!r}: cannot parse it ({type(exc).__name__}: {exc})",
                         parameter=option) from None
    if not isinstance(data, dict):
        raise InputError(f"{option}={str(p)!r}: must hold one object of option values", parameter=option)
    return data


# -- argparse (scripts without typer) ------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = ()) -> None:
    """One argparse option per declared command-line field of ``cls`` (default None = not given)."""
    for d in declared(cls):
        if not d.spec.cli or d.name in skip:
            continue
        help_text = f"{d.spec.help} [default: {d.shown_default}]".replace("%", "%%")  # argparse formats help with %
        if d.kind is bool:
            parser.add_argument(d.flag, dest=d.name, action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
        else:
            kind = str if isinstance(d.kind, tuple) else d.kind
            parser.add_argument(d.flag, dest=d.name, type=kind, default=None, help=help_text,
                                **({"action": "append"} if d.spec.repeat else {}))

"""Command-line options generated from the library's config dataclasses, and library errors in terms of flags.

Every declared parameter (:func:`mogsim.params.param`) of a config dataclass becomes a typer option with the same
help text and its default shown; the option's value is None unless given, so :func:`mogsim.params.resolve` can
merge command line > config file > default in one place. Library errors name Python parameters; :func:`flag_errors`
rewrites them to the flags (``num_train=63`` becomes ``--n 63``).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from typing import Any, Callable, Iterator, Mapping, Optional, TypeVar

import typer

from mogsim.errors import InputError
from mogsim.params import declared, to_flags

F = TypeVar("F", bound=Callable[..., Any])


def _option(d: Any) -> inspect.Parameter:
    kind = list[str] if d.spec.repeat else str if isinstance(d.kind, tuple) else d.kind
    decl = f"{d.flag}/--no-{d.flag[2:]}" if kind is bool else d.flag
    default = typer.Option(None, decl, help=f"{d.spec.help}  [default: {d.shown_default}]", show_default=False,
                           **({"metavar": "TEXT"} if d.spec.repeat else {}))
    return inspect.Parameter(d.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Optional[kind])


def with_options(*classes: type, skip: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Add one option per declared command-line parameter of ``classes`` to a typer command, which receives them
    through ``**options`` (None = not given)."""

    def decorate(func: F) -> F:
        sig = inspect.signature(func)
        own = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        names = {p.name for p in own}
        added = [_option(d) for cls in classes for d in declared(cls)
                 if d.spec.cli and d.name not in skip and d.name not in names]

        @functools.wraps(func)
        def command(**kwargs: Any) -> Any:
            return func(**kwargs)

        command.__signature__ = sig.replace(parameters=own + added)  # type: ignore[attr-defined]
        command.__annotations__ = {**func.__annotations__, **{p.name: p.annotation for p in added}}
        return command  # type: ignore[return-value]

    return decorate


@contextlib.contextmanager
def flag_errors(names_to_flags: Mapping[str, str]) -> Iterator[None]:
    """Re-raise the block's :class:`InputError` with parameter names rewritten to their flags."""
    try:
        yield
    except InputError as exc:
        raise InputError(to_flags(str(exc), names_to_flags, exc.parameter), parameter=exc.parameter) from None

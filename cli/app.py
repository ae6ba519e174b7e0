"""The ``mogsim`` command: a typer app whose user mistakes end in one line on stderr and exit code 2."""

from __future__ import annotations

import importlib
import sys
from typing import Sequence

import typer

from mogsim.errors import InputError

#: Modules of mogsim.cli that each define ``register(app)``; a new command adds its module here.
COMMAND_MODULES: tuple[str, ...] = (
    "sample",
    "score_match",
    "subspace_recovery",
    "train",
    "theory",
)

app = typer.Typer(
    name="mogsim",
    help="Exact closed-form optimal denoisers, samplers and memorization/generalization experiments "
    "for diffusion models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root() -> None:
    """mogsim: test the theory of memorization, generalization and reproducibility in diffusion models."""


def build_app() -> typer.Typer:
    """Register every command module on the app (once) and return it."""
    if not getattr(app, "_mogsim_registered", False):
        for name in COMMAND_MODULES:
            importlib.import_module(f"mogsim.cli.{name}").register(app)
        app._mogsim_registered = True  # type: ignore[attr-defined]
    return app


def _fail(message: str, code: int = 2) -> None:
    first_line = " ".join(str(message).split())
    print(f"mogsim: error: {first_line}", file=sys.stderr)
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``mogsim`` console script."""
    command = typer.main.get_command(build_app())
    try:
        rc = command.main(args=list(argv) if argv is not None else None, prog_name="mogsim",
                          standalone_mode=False)
    except InputError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted; finished results were kept", 130)
    except Exception as exc:  # click's exceptions, whichever click typer ships (it may vendor its own)
        kinds = {cls.__name__ for cls in type(exc).__mro__}
        if "NoArgsIsHelpError" in kinds:
            print(exc.format_message())
            sys.exit(0)
        if "Abort" in kinds:
            _fail("interrupted; finished results were kept", 130)
        if "ClickException" in kinds:
            ctx = getattr(exc, "ctx", None)
            name = getattr(ctx, "info_name", None)
            hint = f" (see 'mogsim {name} --help')" if "UsageError" in kinds and name and name != "mogsim" else ""
            _fail(exc.format_message() + hint, getattr(exc, "exit_code", 2))
        raise
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()

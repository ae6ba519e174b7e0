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
    "jacobian_rank",
    "train",
    "theory",
    "report",
    "cifar_optimal_gap",
)

#: One example per command, shown at the end of its --help (a command module may set its own epilog instead).
EXAMPLES: dict[str, tuple[str, ...]] = {
    "sample": ("mogsim sample --rank 4 --seeds 0-63 --out runs/molrg",
               "mogsim sample --model empirical --data runs/molrg/samples.npz --seeds 0-99 --out runs/emp"),
    "score-match": ("mogsim score-match --rank 4 --n 512",),
    "train": ("mogsim train --data ../shared/data/cifar10-jpeg/train.zip --n 64 --arch unet-tiny --steps 200 "
              "--out runs/u-tiny",),
    "theory": ("mogsim theory --only molrg --latex /tmp/theory.tex",),
    "report": ("mogsim report reports/score-match-30k-v2 --out report.pdf",),
    "subspace-recovery": ("mogsim subspace-recovery --components 2 --ranks 2,4,6 --trials 20",),
    "jacobian-rank": ("mogsim jacobian-rank --rank 4 --components 2 --seeds 0-15",
                      "mogsim jacobian-rank --run runs/score-match/r4_N512_K2_d48_mlp256_s3000_seed0-a0a55f8d2673"),
    "cifar-optimal-gap": ("mogsim cifar-optimal-gap --data ../shared/data/cifar10-jpeg --device cpu",
                          "mogsim cifar-optimal-gap --data ../shared/data/cifar10-jpeg --ns 64,128,...,4096 "
                          "--archs unet-64,unet-128 --images 1e6 --report"),
}

QUICK_START = ("mogsim sample --seeds 0-511 --out runs/molrg",
               "mogsim sample --model empirical --data runs/molrg/samples.npz --seeds 0-63 --out runs/emp",
               "mogsim score-match --rank 4 --n 512")

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


def _examples(lines: Sequence[str], title: str | None = None) -> str:
    """An epilog block kept verbatim by click (``\\b`` stops it from rewrapping the lines)."""
    heading = title or ("Examples" if len(lines) > 1 else "Example")
    return f"\b\n{heading}:\n" + "\n".join(f"  {line}" for line in lines)


@app.callback(epilog=_examples(QUICK_START, "Quick start"))
def _root() -> None:
    """mogsim: test the theory of memorization, generalization and reproducibility in diffusion models."""


def _first_line(text: str | None) -> str | None:
    """The first paragraph of a docstring as one line: the command's description in ``mogsim --help``."""
    if not text:
        return None
    return " ".join(text.strip().split("\n\n")[0].split())


def build_app() -> typer.Typer:
    """Register every command module on the app (once) and return it.

    Each command's full first docstring line becomes its description in ``mogsim --help`` (click would cut it at
    45 characters), and its :data:`EXAMPLES` become its help's epilog.
    """
    if not getattr(app, "_mogsim_registered", False):
        for name in COMMAND_MODULES:
            importlib.import_module(f"mogsim.cli.{name}").register(app)
        for info in app.registered_commands:
            info.short_help = info.short_help or _first_line(info.help or getattr(info.callback, "__doc__", None))
            example = EXAMPLES.get(info.name or "")
            if example and not info.epilog:
                info.epilog = _examples(example)
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

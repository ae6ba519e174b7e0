"""The one exception type for user mistakes.

Library functions raise :class:`InputError` (a ``ValueError``) for bad arguments, with a one-line message that
names the argument and the fix. The command line turns it into one line on stderr and exit code 2, never a
traceback. Anything else that escapes is a bug and keeps its traceback.

Library messages name the Python parameter (``num_train=63: ...``); ``parameter`` says which one (or a tuple of
the ones the message is about), so a front end can name its own spelling instead (the command line writes
``--n 63: ...``).
"""

from __future__ import annotations


class InputError(ValueError):
    """A bad argument or input file; the message names the argument and the fix."""

    def __init__(self, message: str, *, parameter: str | tuple[str, ...] | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter


def require(condition: bool, message: str) -> None:
    """Raise :class:`InputError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise InputError(message)

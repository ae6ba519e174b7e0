"""The one exception type for user mistakes.

Library functions raise :class:`InputError` (a ``ValueError``) for bad arguments, with a one-line message that
names the argument and the fix. The command line turns it into one line on stderr and exit code 2, never a
traceback. Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """A bad argument or input file; the message names the argument and the fix."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`InputError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise InputError(message)

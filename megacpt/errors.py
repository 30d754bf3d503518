"""One error type for bad user input, and the wrapper every tool's ``main`` runs under.

A ``UserError`` is something the user can fix (a bad flag, a missing file, an impossible layout):
tools print it as a single ``error: ...`` line and exit with status 2, never a traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class UserError(ValueError):
    """Bad input a user can fix; reported as one line and a non-zero exit."""


def exits_on_user_error(main: Callable[..., T]) -> Callable[..., T]:
    """Wrap a tool's ``main`` so that a ``UserError`` prints ``error: ...`` and exits 2."""

    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapped

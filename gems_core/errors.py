"""Errors the kit names for its users: what is wrong, where, and what would be valid or what to do.

Every entry point (``python -m gems_core.pipeline``, ``.training``, ``.sweep``) prints a ``KitError``
as its message alone and exits with status 2, and Ctrl-C as one line saying how to continue, with
status 130; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a program stopped by Ctrl-C


class KitError(Exception):
    """A problem with the user's parameters, paths, data or disk, described in the message."""


class DataFileError(KitError, ValueError):
    """A data path holds nothing usable, or files that cannot be read; the message names them."""


class DiskFull(KitError):
    """A write failed for lack of space; the file it would have replaced is intact."""


def run_cli(main: Callable[[], int]) -> int:
    """Run an entry point: a KitError becomes one message on stderr and exit status 2, Ctrl-C one line
    and status 130."""
    try:
        return main()
    except KitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(
            "\ninterrupted: every run keeps its last checkpoint; run the same command again to resume", file=sys.stderr
        )
        return EXIT_INTERRUPTED

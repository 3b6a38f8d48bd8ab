"""The one exception type for errors a user can cause and fix (``RosettaError``, the inference package's, so
that package raises it without importing ``rosetta``), and the one place that turns it into a message:
``run_guarded`` runs a command (the ``rosetta`` CLI, a DVC stage script) and prints its ``RosettaError`` as one sentence on stderr, exit status 2, instead of a traceback; a write that found no
room (a full disk, a quota, a file-size limit) anywhere below a command is one sentence too.
"""
from __future__ import annotations

import errno
import sys
from typing import Callable

from rosetta_infer.errors import RosettaError

# The errors of a write that found no room: a full disk or quota, or a file-size limit (RLIMIT_FSIZE).
NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def no_room(exc: BaseException) -> bool:
    """Whether ``exc`` is a write that found no room: a full disk, a quota, or a file-size limit."""
    return isinstance(exc, OSError) and exc.errno in NO_ROOM


def run_guarded(fn: Callable[[], int | None]) -> int:
    """Run a command body; a ``RosettaError`` becomes ``error: <message>`` on stderr and exit status 2."""
    try:
        return int(fn() or 0)
    except RosettaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if not no_room(exc):
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}no room left to write it ({exc.strerror}); free some space and run the same command "
              "again", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

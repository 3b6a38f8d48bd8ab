"""The one exception type for errors a user can cause and fix, and the one place that turns it into
a message: ``run_guarded`` runs a command (the ``rosetta`` CLI, a DVC stage script) and prints its
``RosettaError`` as one sentence on stderr, exit status 2, instead of a traceback.
"""
from __future__ import annotations

import sys
from typing import Callable


class RosettaError(Exception):
    """A user-fixable problem: bad params, a missing dataset, a corrupt file."""


def run_guarded(fn: Callable[[], int | None]) -> int:
    """Run a command body; a ``RosettaError`` becomes ``error: <message>`` on stderr and exit status 2."""
    try:
        return int(fn() or 0)
    except RosettaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

"""The one exception type for errors a user can cause and fix; ``rosetta.errors`` re-exports it, so every
``except RosettaError`` of the pipeline catches the inference package's errors too."""
from __future__ import annotations


class RosettaError(Exception):
    """A user-fixable problem: bad params, a missing dataset, a corrupt file."""

"""The one exception type for errors a user can cause and fix.

Commands catch ``RosettaError`` at the edge and print its message, one sentence naming the thing
and what to do, instead of a traceback.
"""


class RosettaError(Exception):
    """A user-fixable problem: bad params, a missing dataset, a corrupt file."""

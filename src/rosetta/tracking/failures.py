"""What an MLflow store failing looks like, said in one sentence: a damaged database, a server that does not
answer or answers with an error, a server that refuses the signed-in user; and a missing thing told apart from
all of those."""
from __future__ import annotations

import contextlib
import os
import re
import sqlite3
from typing import Iterator

from rosetta.errors import RosettaError

_FAILURES = [(re.compile(r"refused|NewConnectionError", re.I), "connection refused"),
             (re.compile(r"timed? ?out", re.I), "no answer within the timeout"),
             (re.compile(r"(?:error code|too many) (\d{3})"), r"HTTP \1"),
             (re.compile(r"RemoteDisconnected|Connection aborted|reset by peer", re.I), "connection closed")]


def store_failure(exc: BaseException) -> str | None:
    """What failed, in a few words (``connection refused``, ``HTTP 503``), when ``exc`` is the store failing rather
    than a missing thing: a database error (SQLAlchemy's, or MLflow's wrapping of one) or a server that cannot be
    reached or answers with an error."""
    from requests.exceptions import ConnectionError as RequestsConnectionError
    from sqlalchemy.exc import SQLAlchemyError

    chain, seen = [], exc
    while seen is not None:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    failing = next((e for e in chain if isinstance(e, (SQLAlchemyError, sqlite3.DatabaseError,
                                                        RequestsConnectionError))), None)
    if failing is None and any(k in str(exc) for k in ("DatabaseError", "OperationalError", "API request to")):
        failing = exc
    if failing is None:
        return None
    text = " ".join(str(e) for e in chain)
    for pattern, words in _FAILURES:
        match = pattern.search(text)
        if match:
            return match.expand(words)
    return " ".join(str(failing).split("\n")[0].split())[:160]


@contextlib.contextmanager
def store_errors(uri: str) -> Iterator[None]:
    """Turn the store failing (a damaged database, a server that does not answer) into one sentence naming it;
    anything else goes on as raised."""
    try:
        yield
    except RosettaError:
        raise
    except Exception as exc:
        if permission_denied(exc):
            raise PermissionDenied(uri) from None
        failure = store_failure(exc)
        if failure is None:
            raise
        raise StoreUnavailable(uri, failure) from None


def permission_denied(exc: BaseException) -> bool:
    """Whether an MLflow error is a server refusing the signed-in user (HTTP 403), the REST calls' or the
    artifact uploads'."""
    seen: BaseException | None = exc
    while seen is not None:
        status = getattr(getattr(seen, "response", None), "status_code", None)
        if (getattr(seen, "error_code", None) == "PERMISSION_DENIED" or status == 403
                or re.search(r"error code 403\b", str(seen))):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class PermissionDenied(RosettaError):
    """The MLflow server at ``uri`` refused a change to the signed-in user."""

    def __init__(self, uri: str):
        user = os.environ.get("MLFLOW_TRACKING_USERNAME") or "anonymous"
        super().__init__(f"the MLflow server at {uri} refused this change to user {user!r} (permission denied); ask "
                         "its admin for MANAGE on the registered model and EDIT on the experiment of its runs "
                         "(docs/reference.md, The team servers), or run it as a user who has them")
        self.uri = uri


class StoreUnavailable(RosettaError):
    """The store at ``uri`` failed (``failure``, a few words): a damaged database, a server that does not answer."""

    def __init__(self, uri: str, failure: str):
        super().__init__(f"the MLflow store at {uri} failed ({failure}); check it (a damaged database is restored "
                         "from a backup, a server is started) or set mlflow.tracking_uri to another store")
        self.uri, self.failure = uri, failure


def missing(exc: BaseException) -> bool:
    """Whether an MLflow error says the thing asked for does not exist (not that the store failed)."""
    return getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST"

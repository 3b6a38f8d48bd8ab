"""One writer at a time in a registered model's registry, for every process that shares the MLflow store, on this
machine or another: registration (find the same file, else register it) and alias moves (read production,
decide, move) run under ``registry_lock``, so what each command reads is still true when it writes and prints.

The lock lives in the store itself, as a ticket lock: each command takes a ticket, a version of the registered
model ``<name>.lock``, and holds the lock once no lower ticket is left. MLflow numbers a model's versions in the
database (the next number inside the inserting transaction, the version's primary key refusing a duplicate; a
deleted version keeps its number), on a SQLite file and behind a tracking server alike, so tickets are unique
and later tickets are higher. Nothing else MLflow offers compares and sets: aliases and tags are overwritten
whatever they held, and a lock made of a tag that is written then read back lets two writers both read their
own. A file lock would hold only on one machine.

A ticket is released by deleting it, also when its command is ended by SIGTERM or SIGHUP while it waits or
holds. One whose holder died outright stays until it is known dead: on the same machine when its process is gone
(at once, ``kill -9`` included), else when it is older than the lease.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

from rosetta.errors import RosettaError
from rosetta.fsutil import command_line

LOCK_SUFFIX = ".lock"
# A holder on another machine that died without releasing its ticket blocks the registry this long at most. The
# longest work under the lock, logging a registration's model files, takes seconds.
LEASE_S = 600.0
_SOURCE = "rosetta-lock:/ticket"  # a version needs a source: a scheme of its own (no server resolves it), a path
# an MLflow server accepts (absolute)
_TAG_HOLDER, _TAG_MACHINE, _TAG_PID = "holder", "machine", "pid"
_DESCRIPTION = ("The registry lock of rosetta's commands for the model {model!r}: each version is a command "
                "registering, promoting or rolling back a version of it, or waiting to (docs/reliability.md). Not a "
                "model; delete a version only when its command is known dead.")
_held: dict[str, int] = {}  # lock name -> depth, in this process: a holder may take it again


def _machine() -> str:
    """This machine: its host name and boot (a pid names a process only within one boot of one machine)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = "unknown boot"
    return f"{socket.gethostname()} {boot}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


@contextlib.contextmanager
def _ended_by_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP end the block as an exit does, its ``finally`` run (a ticket deleted), where Python takes
    signals (the main thread); the handlers before are back after it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def end(signum, _frame):
        raise SystemExit(128 + signum)

    before = {sig: signal.signal(sig, end) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def registry_lock(client, model_name: str, *, lease_s: float = LEASE_S, poll_s: float = 0.2,
                  timeout_s: float | None = None) -> Iterator[None]:
    """Hold the registry lock of ``model_name`` while the block runs (module docstring). Waiting says once on
    stderr who holds it, and again every 30 s; with ``timeout_s`` a lock not had by then is one sentence."""
    from mlflow.exceptions import MlflowException

    lock = model_name + LOCK_SUFFIX
    if _held.get(lock):
        _held[lock] += 1
        try:
            yield
        finally:
            _held[lock] -= 1
        return
    try:
        client.create_registered_model(lock, description=_DESCRIPTION.format(model=model_name))
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    machine = _machine()
    with _ended_by_signals():  # a command told to end deletes its ticket on the way: nobody waits for its lease
        mine = client.create_model_version(lock, _SOURCE, tags={_TAG_HOLDER: command_line(), _TAG_MACHINE: machine,
                                                                _TAG_PID: str(os.getpid())})
        start = time.monotonic()
        try:
            told = None
            while ahead := _tickets_ahead(client, lock, mine, machine, lease_s, start):
                waited = time.monotonic() - start
                if timeout_s is not None and waited > timeout_s:
                    raise RosettaError(f"the registry of {model_name} stayed locked for {waited:.0f} s by "
                                       f"{_who(ahead[0])}; wait for it to end, then run this command again")
                if told is None or waited - told >= 30:
                    told = waited
                    print(f"waiting for the registry of {model_name}: {_who(ahead[0])} holds it", file=sys.stderr,
                          flush=True)
                time.sleep(poll_s)
            _held[lock] = 1
            yield
        finally:
            _held.pop(lock, None)
            with contextlib.suppress(MlflowException):
                client.delete_model_version(lock, mine.version)


def _who(ticket) -> str:
    tags = ticket.tags
    host = tags.get(_TAG_MACHINE, "?").split(" ")[0]
    return f"pid {tags.get(_TAG_PID, '?')} on {host} ({tags.get(_TAG_HOLDER, 'a rosetta command')})"


def _tickets_ahead(client, lock: str, mine, machine: str, lease_s: float, start: float) -> list:
    """The live tickets below ``mine``, lowest first; dead ones (module docstring) are deleted on the way. The
    store's clock dates tickets: its time now is ``mine``'s creation plus the time waited since."""
    from mlflow.exceptions import MlflowException

    now_ms = int(mine.creation_timestamp) + (time.monotonic() - start) * 1000
    live = []
    for ticket in client.search_model_versions(f"name='{lock}'"):
        if int(ticket.version) >= int(mine.version):
            continue
        tags = ticket.tags
        gone = tags.get(_TAG_MACHINE) == machine and tags.get(_TAG_PID, "").isdigit() and not _alive(int(tags[_TAG_PID]))
        if gone or now_ms - int(ticket.creation_timestamp) > lease_s * 1000:
            with contextlib.suppress(MlflowException):  # another waiter may have deleted it first
                client.delete_model_version(lock, ticket.version)
            continue
        live.append(ticket)
    return sorted(live, key=lambda t: int(t.version))

"""The registry lock: one writer at a time in a registered model's registry, for every process that shares the
MLflow store, on this machine or another. Registration (find the same file, else register it) and alias moves (read
production, decide, move) run under ``registry_lock``, so what each command reads is still true when it writes and
prints. The lock leaves nothing in the registry: it is held where each kind of store already offers one.

- A local store (``sqlite:`` or ``file:``): an ``flock`` on a file beside it (``.<store>.<model>.registry.lock``),
  which every process that reaches the store's file reaches too. The kernel drops it when its holder ends, however
  it ends (``kill -9`` included); the holder writes who it is into the file, for those waiting.
- A store behind a server (``http(s):``, the team's; or a database URI): machines share no file, so the lock is a
  global concurrency limit of one slot on the team's Prefect server (``rosetta team up`` starts it, and its
  ``env.sh`` sets ``PREFECT_API_URL`` and the credential), taken with a lease its holder renews while it holds it.
  A holder that dies holds it until its lease runs out (``LEASE_S``, the shortest Prefect grants, then the server's
  next sweep of expired leases). Who holds it is a Prefect variable the holder writes and clears. Without
  ``PREFECT_API_URL`` such a command stops in one sentence rather than take a lock only its own machine would see,
  under which two machines could both move production.

Not in the registry itself: MLflow offers no compare-and-set (aliases and tags are overwritten whatever they held),
and a lock kept as versions of a second registered model is seen by every user of the registry and needs a
permission of its own on a server with users. A command ended by SIGTERM or SIGHUP while it waits or holds the lock
ends as an exit does, its lock released on the way.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Iterator
from urllib.parse import quote, urlparse

from rosetta.config import Config
from rosetta.errors import RosettaError
from rosetta.fsutil import command_line
from rosetta.tracking.failures import store_errors
from rosetta.tracking.store import tracking_uri

LEASE_S = 60.0  # Prefect's shortest lease; its holder renews it every 45 s while the block runs
NOTICE_EVERY_S = 30.0  # a waiting command says who holds the lock, then again this often
_held: dict[tuple[str, str], int] = {}  # (store, model) -> depth, in this process: a holder may take it again


def locked(fn):
    """``fn(cfg, ...)`` run holding the registry lock of ``registry.model_name`` in the configured store, a failing
    store said in one sentence."""
    @functools.wraps(fn)
    def run(cfg: Config, *args, **kwargs):
        store = tracking_uri(cfg)
        with store_errors(store), registry_lock(store, cfg.registry.model_name):
            return fn(cfg, *args, **kwargs)
    return run


@contextlib.contextmanager
def registry_lock(store: str, model_name: str, *, timeout_s: float | None = None,
                  lease_s: float = LEASE_S) -> Iterator[None]:
    """Hold the registry lock of ``model_name`` in the MLflow store ``store`` while the block runs (module
    docstring). Waiting says on stderr who holds it, then again every 30 s; with ``timeout_s`` a lock not had by
    then is one sentence."""
    key = (store, model_name)
    if _held.get(key):
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    path = local_store_path(store)
    wait = _Waiting(model_name, timeout_s)
    with _ended_by_signals():
        lock = (_file_lock(lock_file(path, model_name), wait) if path is not None
                else _prefect_lock(store, model_name, wait, lease_s))
        with lock:
            _held[key] = 1
            try:
                yield
            finally:
                _held.pop(key, None)


def local_store_path(store: str) -> Path | None:
    """The file or folder a local store is (``sqlite:///...``, ``file:...`` or a plain path); None for a store
    behind a server."""
    if store.startswith("sqlite:///"):
        return Path(store[len("sqlite:///"):].split("?", 1)[0])
    parsed = urlparse(store)
    if parsed.scheme == "file":
        return Path(parsed.path)
    return Path(store) if parsed.scheme == "" else None


def lock_file(store_path: Path, model_name: str) -> Path:
    """The lock file of ``model_name`` beside the local store ``store_path``."""
    return store_path.parent / f".{store_path.name}.{quote(model_name, safe='')}.registry.lock"


def _holder() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()} ({command_line()})"


class _Waiting:
    """What a command waiting for the lock says, and its timeout."""

    def __init__(self, model_name: str, timeout_s: float | None):
        self.model_name, self.timeout_s = model_name, timeout_s
        self.start, self.told = time.monotonic(), None

    def __call__(self, holder: str) -> None:
        waited = time.monotonic() - self.start
        if self.timeout_s is not None and waited > self.timeout_s:
            raise RosettaError(f"the registry of {self.model_name} stayed locked for {waited:.0f} s by {holder}; "
                               "wait for it to end, then run this command again")
        if self.told is None or waited - self.told >= NOTICE_EVERY_S:
            self.told = waited
            print(f"waiting for the registry of {self.model_name}: {holder} holds it", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _file_lock(path: Path, wait: _Waiting, poll_s: float = 0.2) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    # The file is never removed: a waiter holding an open file that was unlinked would lock nothing anyone sees.
    with os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o644), "r+") as fh:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                fh.seek(0)
                wait(fh.read().strip() or "another process")
                time.sleep(poll_s)
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(_holder() + "\n")
            fh.flush()
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)


def prefect_names(model_name: str) -> tuple[str, str]:
    """The Prefect global concurrency limit that is the lock of ``model_name``, and the variable naming its holder
    (a variable's name: lowercase letters, digits and underscores)."""
    return (f"rosetta-registry-{re.sub(r'[/%&<>]', '_', model_name)}",
            "rosetta_registry_holder_" + re.sub(r"[^a-z0-9_]", "_", model_name.lower()))


@contextlib.contextmanager
def _prefect_lock(store: str, model_name: str, wait: _Waiting, lease_s: float, poll_s: float = 1.0
                  ) -> Iterator[None]:
    import httpx
    from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError
    from prefect.concurrency.context import ConcurrencyContext
    from prefect.concurrency.sync import concurrency
    from prefect.settings import get_current_settings
    from prefect.variables import Variable

    api = get_current_settings().api.url
    if not api:
        raise RosettaError(f"the registry at {store} is shared through a server, and its lock is a concurrency limit "
                           "on the team's Prefect server, but PREFECT_API_URL is not set; source the env.sh that "
                           "`rosetta team up` wrote (it sets PREFECT_API_URL and its credential), or set "
                           "PREFECT_API_URL to the team's Prefect API")
    limit, holder_variable = prefect_names(model_name)

    def unreachable(exc: BaseException) -> RosettaError:
        return RosettaError(f"the registry lock of {model_name} (concurrency limit {limit!r} on the Prefect server at "
                            f"{api}) cannot be taken ({exc.__cause__ or exc}); check that the server runs (`rosetta "
                            "team up`) and that PREFECT_API_URL and PREFECT_API_AUTH_STRING are those of its env.sh")

    try:
        _ensure_limit(limit)
    except httpx.HTTPError as exc:
        raise unreachable(exc) from None
    # Prefect's acquisition service logs every refused attempt (the lock held) as a failure: while this command
    # waits, it says who holds the lock instead; once it holds it, Prefect's log is back.
    service_log = logging.getLogger("prefect._internal.concurrency")
    logged = service_log.disabled
    with ConcurrencyContext():  # a lease granted as this command is interrupted is released on the way out
        try:
            while True:
                held = False
                service_log.disabled = True
                try:
                    with concurrency(limit, max_retries=0, lease_duration=lease_s, strict=True,
                                     raise_on_lease_renewal_failure=True):
                        held = True
                        service_log.disabled = logged
                        Variable.set(holder_variable, _holder(), overwrite=True)
                        try:
                            yield
                        finally:
                            Variable.unset(holder_variable)
                    return
                except ConcurrencySlotAcquisitionError as exc:
                    if held:
                        raise
                    cause = exc.__cause__
                    if not (isinstance(cause, httpx.HTTPStatusError) and cause.response.status_code == 423):
                        raise unreachable(exc) from None
                wait(Variable.get(holder_variable, default=None) or "another rosetta command")
                time.sleep(poll_s)
        finally:
            service_log.disabled = logged


def _ensure_limit(name: str) -> None:
    """The global concurrency limit ``name`` of one slot, created where missing (by whichever command comes first)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with contextlib.suppress(ObjectAlreadyExists):
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))


@contextlib.contextmanager
def _ended_by_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP end the block as an exit does, its ``finally`` run (the lock released), where Python takes
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

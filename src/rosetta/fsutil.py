"""Writing files and folders so that a reader never sees half of one: a folder is built beside its target
and renamed into place (``atomic_dir``), a JSON file is written to a temporary name and renamed
(``write_json``). Every module that writes outputs others read uses these two; ``exclusive_lock`` keeps
two processes from writing one folder at a time; ``write_private`` writes a file only its owner reads.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from rosetta.errors import RosettaError

COMPLETE_MARKER = ".rosetta-complete"


def check_replaceable(dest: Path) -> None:
    """Refuse a ``dest`` that ``atomic_dir`` must not replace: a file, or a non-empty folder it did not write.

    Only a folder holding the completion marker (every folder ``atomic_dir`` builds holds one) or an
    empty one may be replaced: an OUTPUT argument pointing at someone's work must never delete it.
    """
    dest = Path(dest)
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise RosettaError(f"{dest}: exists and is not a folder; give a folder path for the output (or move "
                           "that file away)")
    if dest.is_dir() and not (dest / COMPLETE_MARKER).is_file() and any(dest.iterdir()):
        raise RosettaError(f"{dest}: the folder is not empty and was not written by rosetta (no "
                           f"{COMPLETE_MARKER} in it); give a new or empty folder for the output, or empty it "
                           "yourself")


@contextlib.contextmanager
def atomic_dir(dest: Path) -> Iterator[Path]:
    """Yield an empty folder beside ``dest``; on success it becomes ``dest`` (replacing an earlier output).

    A completion marker is written last, so a tree without it is never taken as done, and it marks
    the folder as rosetta's: ``check_replaceable`` refuses, before any work, to replace anything else.
    On failure the temporary folder is removed and ``dest`` is left untouched.
    """
    dest = Path(dest)
    check_replaceable(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest.parent.glob(f".{dest.name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    tmp.mkdir()
    try:
        yield tmp
        (tmp / COMPLETE_MARKER).write_text("complete\n")
        check_replaceable(dest)  # something may have appeared there while the output was built
        if dest.exists():
            old = dest.parent / f".{dest.name}.old-{os.getpid()}"
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def exclusive_lock(path: Path, busy: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` while the block runs, or raise ``busy`` (a message with
    ``{holder}``) naming the process that holds it. The kernel drops the lock when its process ends,
    however it ends, so a killed holder never leaves a stale lock behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o644), "r+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = fh.read().strip() or "another process"
            raise RosettaError(busy.format(holder=holder)) from None
        try:
            fh.truncate(0)  # what a killed holder wrote
            started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
            fh.write(f"pid {os.getpid()} on {socket.gethostname()}, started {started}: "
                     f"{shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])}\n")
            fh.flush()
            yield
        finally:
            fh.truncate(0)
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_json(path: str | Path, data: Any, *, sort_keys: bool = False,
               default: Callable[[Any], Any] | None = None) -> Path:
    """``data`` as indented JSON at ``path`` (parents created), through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=sort_keys, default=default) + "\n")
    os.replace(tmp, path)
    return path


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (a password, a config naming one), never readable by
    others even for a moment."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)  # a file that existed keeps its mode through os.open

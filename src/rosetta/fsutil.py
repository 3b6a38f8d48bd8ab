"""Writing files and folders so that a reader never sees half of one: a folder is built beside its target
and renamed into place (``atomic_dir``), a JSON file is written to a temporary name and renamed
(``write_json``). Every module that writes outputs others read uses these two; ``exclusive_lock`` keeps
two processes from writing one folder at a time, ``disk_full`` turns a full disk into one sentence, and
``write_private`` writes a file only its owner reads; ``sha256_file`` is the one file digest. ``environ`` sets
environment variables for a block, for the libraries (and children) that read them.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from rosetta.errors import RosettaError

COMPLETE_MARKER = ".rosetta-complete"

# Folders this process is building (``atomic_dir``): nobody else can write inside them, so nothing there is locked.
_BUILDING: set[Path] = set()


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
    recorded = (completed(dest) or {}).get(CONTENTS)
    if isinstance(recorded, dict):
        now = _contents(dest)
        added = sorted(now.keys() - recorded.keys()) or sorted(k for k in now if now[k] != recorded.get(k))
        if added:
            raise RosettaError(f"{dest / added[0]}: rosetta did not write this into the finished output {dest}, and "
                               "building the output again replaces the whole folder; move it out of the folder, or "
                               "give another folder for the output")


CONTENTS = "contents"  # what a finished output's marker records it holds: entry -> number of paths below it


def _contents(folder: Path) -> dict[str, int]:
    """Each entry of ``folder`` (but the marker) and how many paths it holds, itself included: a file added
    anywhere below changes the count of the entry it is in."""
    counts = {}
    for entry in os.scandir(folder):
        if entry.name != COMPLETE_MARKER:
            counts[entry.name] = 1 + (sum(len(dirs) + len(files) for _, dirs, files in os.walk(entry.path))
                                      if entry.is_dir(follow_symlinks=False) else 0)
    return counts


def claim_folder(folder: Path, marker: str, fix: str, earlier: tuple[str, ...] = ()) -> None:
    """Make ``folder`` one that rosetta writes into piece by piece (a run folder), marked by the file ``marker``:
    created when missing, taken when empty or already marked (or holding one of the ``earlier`` markers older
    versions left), else refused in one sentence ending in ``fix``, before anything in it is touched. The
    OUTPUT rule of ``check_replaceable`` for folders that are written in place rather than renamed into place."""
    folder = Path(folder)
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise RosettaError(f"{folder}: exists and is not a folder; {fix}")
    if folder.is_dir() and not any((folder / m).exists() for m in (marker, *earlier)) and any(folder.iterdir()):
        raise RosettaError(f"{folder}: the folder holds files and was not made by rosetta (no {marker} in it); {fix}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / marker).touch()


def completed(dest: Path) -> dict | None:
    """What the finished output at ``dest`` records about itself (the ``record`` it was built with; ``{}`` for
    one built without, or before outputs recorded anything), or None when ``dest`` is no finished output."""
    marker = Path(dest) / COMPLETE_MARKER
    try:
        text = marker.read_text()
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return record if isinstance(record, dict) else {}


@contextlib.contextmanager
def atomic_dir(dest: Path, record: dict | None = None) -> Iterator[Path]:
    """Yield an empty folder beside ``dest``; on success it becomes ``dest`` (replacing an earlier output).

    A completion marker is written last, holding ``record`` (what the output is of, read back by
    ``completed``) and what the folder holds, so a tree without it is never taken as done, and it marks the
    folder as rosetta's: ``check_replaceable`` refuses, before any work, to replace anything else, or a
    finished output someone has since added a file to. One builder per ``dest``: the
    build holds a lock beside it (``.<name>.lock``), and a second builder is refused in one sentence naming
    the first, so a partial folder is only ever removed by the next build after its builder died. On failure
    the temporary folder is removed and ``dest`` is left untouched.
    """
    dest = Path(dest)
    check_replaceable(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    inside = any(p in _BUILDING for p in dest.absolute().parents)
    busy = f"{dest}: another process is writing this output ({{holder}}); wait for it to end, or give another folder"
    with contextlib.nullcontext() if inside else exclusive_lock(
            dest.parent / f".{dest.name}.lock", busy, remove=True):
        for stale in dest.parent.glob(f".{dest.name}.partial-*"):  # under the lock: left by a builder that died
            shutil.rmtree(stale, ignore_errors=True)
        tmp = dest.parent / f".{dest.name}.partial-{os.getpid()}"
        tmp.mkdir()
        _BUILDING.add(tmp.absolute())
        try:
            yield tmp
            (tmp / COMPLETE_MARKER).write_text(json.dumps({**(record or {}), CONTENTS: _contents(tmp)},
                                                          sort_keys=True) + "\n")
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
        finally:
            _BUILDING.discard(tmp.absolute())


@contextlib.contextmanager
def exclusive_lock(path: Path, busy: str, *, remove: bool = False) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` while the block runs, or raise ``busy`` (a message with
    ``{holder}``) naming the process that holds it. The kernel drops the lock when its process ends,
    however it ends, so a killed holder never leaves a stale lock behind. With ``remove`` the file is deleted
    on release; a process that opened it just before is then holding a deleted file, which it notices (the
    path no longer names what it locked) and opens the path again.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fh = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o644), "r+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = fh.read().strip() or "another process"
            fh.close()
            raise RosettaError(busy.format(holder=holder)) from None
        try:
            same = os.path.samestat(os.fstat(fh.fileno()), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        fh.close()  # locked a file its holder had just deleted: lock the one the path names now
    with fh:
        try:
            fh.truncate(0)  # what a killed holder wrote
            started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
            fh.write(f"pid {os.getpid()} on {socket.gethostname()}, started {started}: {command_line()}\n")
            fh.flush()
            yield
        finally:
            if remove:
                path.unlink(missing_ok=True)
            else:
                fh.truncate(0)
            fcntl.flock(fh, fcntl.LOCK_UN)


def command_line() -> str:
    """This process's command line as its user typed it (``python -m rosetta`` shows as ``rosetta``)."""
    program = Path(sys.argv[0])
    name = program.parent.name if program.name == "__main__.py" else program.name
    return shlex.join([name, *sys.argv[1:]])


def _mb(n: float) -> str:
    return f"{n / 2**20:.1f} MB"


def disk_full(folder: Path, needed: int | None = None, what: str = "the output") -> RosettaError:
    """The one sentence for a write into ``folder`` that found no room: how much ``what`` needs (when known)
    and how much is free there."""
    folder = Path(folder)
    probe = next((p for p in (folder, *folder.parents) if p.exists()), Path("/"))
    free = f"{_mb(shutil.disk_usage(probe).free)} is free there"
    room = f"it needs about {_mb(needed)}, {free}" if needed else free
    return RosettaError(f"{folder}: no room left to write {what} (the disk is full, or a file-size limit was "
                        f"reached; {room}); free some space and run the same command again: nothing half-written "
                        "was kept")


def shown_path(path: str | Path) -> str:
    """``path`` as a report written into a DVC output names it: relative to the working directory (the project,
    where DVC runs a stage) where it lies below it, so the report hashes the same in every clone and folder;
    else as given."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes, read in blocks (a model or an archive need not fit in memory)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


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


@contextlib.contextmanager
def environ(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in this process's environment while the block runs (processes it starts inherit them); each
    variable's earlier value, or its absence, comes back after."""
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

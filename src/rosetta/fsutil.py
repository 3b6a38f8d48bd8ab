"""Writing files and folders so that a reader never sees half of one: a folder is built beside its target
and renamed into place (``atomic_dir``), a JSON file is written to a temporary name and renamed
(``write_json``). Every module that writes outputs others read uses these two.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

COMPLETE_MARKER = ".rosetta-complete"


@contextlib.contextmanager
def atomic_dir(dest: Path, marker: bool = True) -> Iterator[Path]:
    """Yield an empty folder beside ``dest``; on success it becomes ``dest`` (replacing an old one).

    With ``marker`` a completion file is written last, so a tree without it is never taken as done.
    On failure the temporary folder is removed and ``dest`` is left untouched.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest.parent.glob(f".{dest.name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    tmp.mkdir()
    try:
        yield tmp
        if marker:
            (tmp / COMPLETE_MARKER).write_text("complete\n")
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


def write_json(path: str | Path, data: Any, *, sort_keys: bool = False,
               default: Callable[[Any], Any] | None = None) -> Path:
    """``data`` as indented JSON at ``path`` (parents created), through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=sort_keys, default=default) + "\n")
    os.replace(tmp, path)
    return path

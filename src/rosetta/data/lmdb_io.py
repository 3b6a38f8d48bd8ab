"""The LMDB format shared by DTRB, PaddleOCR and parseq, and reading it: keys ``num-samples``, ``image-%09d``
(encoded image bytes, stored as read) and ``label-%09d`` (utf-8, case and punctuation kept), counted from 1.
``rosetta.prep.lmdb_writer`` fills it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

import lmdb

from rosetta.errors import RosettaError

NUM_SAMPLES_KEY = b"num-samples"
REPORT_NAME = "report.json"
NAMES_FILE = "names.txt"  # beside an LMDB converted from files: line i names the file of sample i


def image_key(index: int) -> bytes:
    return b"image-%09d" % index


def label_key(index: int) -> bytes:
    return b"label-%09d" % index


# One read handle per LMDB file and process: py-lmdb refuses to open the same file twice in a process,
# and a forked child (a DataLoader worker) inherits its parent's handles and must replace them.
_READERS: dict[str, tuple[int, tuple[int, int], lmdb.Environment]] = {}


def open_lmdb(path: str | Path) -> lmdb.Environment:
    """A shared read-only handle on the LMDB at ``path``; callers must not close it.

    Opened with ``lock=False`` (a lock.mdb written into a DVC output marks it modified), no readahead
    and no meminit. A handle inherited across fork, or on a file since replaced, is reopened.
    """
    real = os.path.realpath(path)
    try:
        st = os.stat(os.path.join(real, "data.mdb"))
    except OSError:
        raise RosettaError(f"{path}: no LMDB there (no data.mdb); run `dvc repro` (or `rosetta data convert`) "
                           "first") from None
    ident = (st.st_dev, st.st_ino)
    cached = _READERS.get(real)
    if cached is not None:
        pid, cached_ident, env = cached
        if pid == os.getpid() and cached_ident == ident:
            return env
        env.close()
    try:
        env = lmdb.open(real, readonly=True, lock=False, readahead=False, meminit=False, max_readers=126)
    except lmdb.Error as exc:
        reason = str(exc).replace(f"{real}: ", "")
        raise RosettaError(f"{path}: data.mdb is not a readable LMDB ({reason}); convert the "
                           "dataset again (`rosetta data convert` or `dvc repro`)") from None
    _READERS[real] = (os.getpid(), ident, env)
    return env


def num_samples(txn: lmdb.Transaction, path: Path) -> int:
    raw = txn.get(NUM_SAMPLES_KEY)
    if raw is None or not raw.strip().isdigit():
        raise RosettaError(f"{path}: not a text-recognition LMDB (no num-samples key); convert the dataset "
                           "with `rosetta data convert`")
    return int(raw)


def read_label(txn: lmdb.Transaction, index: int) -> str:
    """Sample ``index``'s label as stored (case and punctuation kept); a missing one reads as ''."""
    raw = txn.get(label_key(index))
    return raw.decode("utf-8", errors="replace") if raw is not None else ""


def iter_labels(path: str | Path) -> Iterator[tuple[int, str]]:
    """``(index, label)`` for every sample of the LMDB at ``path``, without decoding an image. An index
    ``num-samples`` claims but with no label record is no sample: it is skipped."""
    with open_lmdb(path).begin() as txn:
        for index in range(1, num_samples(txn, Path(path)) + 1):
            raw = txn.get(label_key(index))
            if raw is not None:
                yield index, raw.decode("utf-8", errors="replace")


def folders_holding(root: str | Path, file_name: str) -> list[Path]:
    """Every folder at or below ``root`` holding a file ``file_name``, sorted. Symlinked folders are followed (a
    set linked into a benchmark folder is a set of it), each real folder once, so a link loop ends; hidden folders
    (``atomic_dir``'s unfinished writes among them) are never read."""
    root = Path(root)
    found, seen = [], set()
    for folder, subfolders, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            subfolders.clear()
            continue
        seen.add(real)
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        if file_name in files:
            found.append(Path(folder))
    return sorted(found)


def find_lmdbs(root: str | Path) -> list[Path]:
    """Every LMDB at or below ``root`` (each folder holding a data.mdb), in a stable order."""
    found = folders_holding(root, "data.mdb")
    if not found:
        raise RosettaError(f"no LMDB found under {root}; run `dvc repro` (or `rosetta data convert`) first")
    return found


def lmdb_name(path: Path, root: Path) -> str:
    """A set's name: its folder relative to ``root``, or the root's own name when root is the LMDB."""
    rel = Path(path).relative_to(root).as_posix()
    return Path(root).name if rel == "." else rel


def read_names(lmdb_dir: str | Path) -> list[str] | None:
    """The file name of each sample (``names.txt``), where the converter kept them."""
    path = Path(lmdb_dir) / NAMES_FILE
    return path.read_text(encoding="utf-8").splitlines() if path.is_file() else None


def read_report(lmdb_dir: str | Path) -> dict | None:
    """The writer's report beside an LMDB, or None for LMDBs made by other tools."""
    path = Path(lmdb_dir) / REPORT_NAME
    return json.loads(path.read_text()) if path.is_file() else None

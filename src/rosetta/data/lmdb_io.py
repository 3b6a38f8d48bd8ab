"""The LMDB format shared by DTRB, PaddleOCR and parseq, and the writer that fills it.

Keys: ``num-samples``, ``image-%09d`` (encoded image bytes, stored as read) and ``label-%09d``
(utf-8, case and punctuation kept), counted from 1. The writer checks in parallel that every image
decodes and skips, counting by reason, whatever does not; the same input gives the same bytes.
"""
from __future__ import annotations

import itertools
import json
import multiprocessing
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple, Protocol, TypeVar

import lmdb
from tqdm import tqdm

from rosetta.data.preprocess import ImageDecodeError, decode_image
from rosetta.errors import RosettaError
from rosetta.fsutil import atomic_dir

NUM_SAMPLES_KEY = b"num-samples"
REPORT_NAME = "report.json"
NAMES_FILE = "names.txt"  # beside an LMDB converted from files: line i names the file of sample i
_EXAMPLES_PER_REASON = 10

T = TypeVar("T")
R = TypeVar("R")


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
    """``(index, label)`` for every sample of the LMDB at ``path``, without decoding an image."""
    with open_lmdb(path).begin() as txn:
        for index in range(1, num_samples(txn, Path(path)) + 1):
            yield index, read_label(txn, index)


def find_lmdbs(root: str | Path) -> list[Path]:
    """Every LMDB at or below ``root`` (each folder holding a data.mdb), in a stable order."""
    root = Path(root)
    found = []
    if root.is_dir():
        for mdb in root.glob("**/data.mdb"):
            # Hidden folders hold unfinished writes (atomic_dir's temporaries): never read them.
            if not any(part.startswith(".") for part in mdb.relative_to(root).parts):
                found.append(mdb.parent)
    found.sort()
    if not found:
        raise RosettaError(f"no LMDB found under {root}; run `dvc repro` (or `rosetta data convert`) first")
    return found


def lmdb_name(path: Path, root: Path) -> str:
    """A set's name: its folder relative to ``root``, or the root's own name when root is the LMDB."""
    rel = Path(path).relative_to(root).as_posix()
    return Path(root).name if rel == "." else rel


def resolve_workers(workers: int) -> int:
    return workers if workers > 0 else len(os.sched_getaffinity(0))


def parallel_map(fn: Callable[[T], R], items: Iterable[T], workers: int = 0, *, total: int | None = None,
                 desc: str | None = None, unit: str = " samples", chunksize: int = 32,
                 window: int = 8192) -> Iterator[R]:
    """``map(fn, items)`` in input order over ``workers`` processes (0 = all cores), with a progress bar.

    Items are handed out ``window`` at a time: Pool.imap would otherwise pull the whole input into
    its queue at once, which for millions of samples costs gigabytes.
    """
    workers = resolve_workers(workers)
    with tqdm(total=total, desc=desc, unit=unit, mininterval=1.0, smoothing=0.1) as bar:
        if workers == 1:
            for item in items:
                yield fn(item)
                bar.update(1)
            return
        # forkserver: forking a process that runs threads (an HTTP server, a Prefect task) can deadlock.
        with multiprocessing.get_context("forkserver").Pool(workers) as pool:
            it = iter(items)
            while batch := list(itertools.islice(it, window)):
                for result in pool.imap(fn, batch, chunksize=chunksize):
                    yield result
                    bar.update(1)


class Record(NamedTuple):
    """One labelled image on its way into an LMDB; ``reason`` says why it is rejected, if it is."""

    name: str
    label: str
    data: bytes | None
    reason: str | None = None


class Sample(Protocol):
    """Anything the writer can store: ``read`` returns its records (several for a scene image)."""

    def read(self) -> list[Record]: ...


@dataclass(frozen=True)
class FileSample:
    path: str
    label: str
    name: str = ""  # how the report names it; defaults to the path

    def read(self) -> list[Record]:
        name = self.name or self.path
        try:
            data = Path(self.path).read_bytes()
        except FileNotFoundError:
            return [Record(name, self.label, None, "missing")]
        except OSError:
            return [Record(name, self.label, None, "unreadable")]
        return [Record(name, self.label, data)]


def check_record(rec: Record) -> Record:
    """The record with ``reason`` set when it must be skipped: empty label, empty or undecodable image."""
    if rec.reason:
        return rec
    if not rec.label:
        return rec._replace(reason="empty_label")
    if not rec.data:
        return rec._replace(reason="empty_image")
    try:
        decode_image(rec.data, rec.name)
    except ImageDecodeError:
        return rec._replace(reason="undecodable")
    return rec


def _read_and_check(sample: Sample) -> list[Record]:
    return [check_record(r) for r in sample.read()]


def _put_all(env: lmdb.Environment, items: list[tuple[bytes, bytes]]) -> None:
    while True:
        try:
            with env.begin(write=True) as txn:
                for key, value in items:
                    txn.put(key, value)
            return
        except lmdb.MapFullError:
            # The aborted transaction left nothing behind; grow the map and write the batch again.
            env.set_mapsize(env.info()["map_size"] * 2)


def write_lmdb(out_dir: str | Path, samples: Iterable[Sample], *, total: int | None = None, workers: int = 0,
               desc: str | None = None, map_size: int = 64 << 20, batch: int = 1000, keep_names: bool = False) -> dict:
    """Write ``samples`` as an LMDB at ``out_dir`` and return the report (also saved as report.json).

    Records are numbered in input order from 1; the ones that fail (missing or empty file, undecodable
    image, empty label) are skipped and counted by reason. The LMDB is built in a temporary folder
    and renamed into place when complete; ``map_size`` doubles whenever it is exhausted. With ``keep_names``
    each written record's name goes to ``names.txt`` beside it (small sets of files: benchmark and real sets).
    """
    out_dir = Path(out_dir)
    rejected: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    names: list[str] = []
    written = 0
    with atomic_dir(out_dir) as tmp:
        env = lmdb.open(str(tmp), map_size=map_size, lock=False, sync=False, metasync=False)
        try:
            pending: list[tuple[bytes, bytes]] = []
            for records in parallel_map(_read_and_check, samples, workers, total=total, desc=desc):
                for rec in records:
                    if rec.reason:
                        rejected[rec.reason] += 1
                        names = examples.setdefault(rec.reason, [])
                        if len(names) < _EXAMPLES_PER_REASON:
                            names.append(rec.name)
                        continue
                    written += 1
                    if keep_names:
                        names.append(" ".join(rec.name.split()))
                    pending += [(image_key(written), rec.data), (label_key(written), rec.label.encode("utf-8"))]
                    if len(pending) >= 2 * batch:
                        _put_all(env, pending)
                        pending = []
            pending.append((NUM_SAMPLES_KEY, str(written).encode()))
            _put_all(env, pending)
            env.sync(True)
        finally:
            env.close()
        report = {"written": written, "rejected": dict(sorted(rejected.items())),
                  "rejected_total": sum(rejected.values()), "examples": dict(sorted(examples.items()))}
        (tmp / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n")
        if keep_names:
            (tmp / NAMES_FILE).write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    return report


def read_names(lmdb_dir: str | Path) -> list[str] | None:
    """The file name of each sample (``names.txt``), where the converter kept them."""
    path = Path(lmdb_dir) / NAMES_FILE
    return path.read_text(encoding="utf-8").splitlines() if path.is_file() else None


def read_report(lmdb_dir: str | Path) -> dict | None:
    """The writer's report beside an LMDB, or None for LMDBs made by other tools."""
    path = Path(lmdb_dir) / REPORT_NAME
    return json.loads(path.read_text()) if path.is_file() else None


def copy_lmdb(src: str | Path, dest: str | Path) -> Path:
    """Copy a ready-made LMDB compactly (free pages dropped, no lock.mdb) into ``dest``."""
    env = open_lmdb(src)
    with env.begin() as txn:
        num_samples(txn, Path(src))
    with atomic_dir(Path(dest)) as tmp:
        env.copy(str(tmp), compact=True)
    return Path(dest)

"""The writer that fills the LMDB format of ``rosetta.data.lmdb_io`` from labelled images.

The writer checks in parallel that every image decodes and skips, counting by reason, whatever does not; the same
input gives the same bytes.
"""
from __future__ import annotations

import errno
import functools
import json
import os
import resource
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, NamedTuple, Protocol

import lmdb

from rosetta.data.lmdb_io import NAMES_FILE, NUM_SAMPLES_KEY, REPORT_NAME, image_key, label_key, num_samples, open_lmdb
from rosetta_infer.preprocess import ImageDecodeError, ImageLimits, decode_image, read_image_file
from rosetta.errors import NO_ROOM, no_room
from rosetta.fsutil import atomic_dir, disk_full
from rosetta.prep.parallel import parallel_map

_EXAMPLES_PER_REASON = 10


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
    limits: ImageLimits | None = None  # a file over them is refused unread (``too_large``)

    def read(self) -> list[Record]:
        name = self.name or self.path
        try:
            data = read_image_file(self.path, name, self.limits)
        except ImageDecodeError as exc:
            return [Record(name, self.label, None, exc.reason)]
        return [Record(name, self.label, data)]


# Why a sample's image cannot be stored: with ``keep_unreadable`` (evaluation sets) such a sample is kept, its label
# without an image, so evaluation scores it as wrong instead of leaving it out.
IMAGE_REASONS = frozenset({"missing", "not_a_file", "unreadable", "too_large", "empty_image", "undecodable",
                           "outside_folder"})


def check_record(rec: Record, limits: ImageLimits | None = None) -> Record:
    """The record with ``reason`` set when it must be skipped: empty label, empty or undecodable image, or one
    over ``limits``."""
    if rec.reason:
        return rec
    if not rec.label:
        return rec._replace(reason="empty_label")
    if not rec.data:
        return rec._replace(reason="empty_image")
    try:
        decode_image(rec.data, rec.name, limits)
    except ImageDecodeError as exc:
        return rec._replace(reason=exc.reason)
    return rec


def _read_and_check(sample: Sample, limits: ImageLimits | None = None) -> list[Record]:
    return [check_record(r, limits) for r in sample.read()]


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


@dataclass
class _Tally:
    """What ``write_lmdb`` kept and left out, by reason, and the names of what it stored."""

    keep_unreadable: bool
    rejected: Counter = field(default_factory=Counter)
    unreadable: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    read: int = 0  # samples read
    written: int = 0  # records stored
    stored_bytes: int = 0  # of images stored

    def keep(self, rec: Record) -> bool:
        if self.keep_unreadable and rec.reason == "empty_label":
            return True  # stored as it is listed: evaluation counts it among the samples it leaves out, aloud
        kept = rec.reason is None or (self.keep_unreadable and rec.reason in IMAGE_REASONS)
        if rec.reason:
            (self.unreadable if kept else self.rejected)[rec.reason] += 1
            shown = self.examples.setdefault(rec.reason, [])
            if len(shown) < _EXAMPLES_PER_REASON:
                shown.append(rec.name)
        return kept

    def report(self) -> dict:
        report = {"written": self.written, "rejected": dict(sorted(self.rejected.items())),
                  "rejected_total": sum(self.rejected.values()), "examples": dict(sorted(self.examples.items()))}
        if self.keep_unreadable:
            report.update(unreadable=dict(sorted(self.unreadable.items())),
                          unreadable_total=sum(self.unreadable.values()))
        return report


def write_lmdb(out_dir: str | Path, samples: Iterable[Sample], *, total: int | None = None, workers: int = 0,
               desc: str | None = None, map_size: int = 64 << 20, batch: int = 1000, keep_names: bool = False,
               keep_unreadable: bool = False, limits: ImageLimits | None = None) -> dict:
    """Write ``samples`` as an LMDB at ``out_dir`` and return the report (also saved as report.json).

    Records are numbered in input order from 1; the ones that fail (missing or empty file, undecodable
    image, one over ``limits``, empty label) are skipped and counted by reason. With ``keep_unreadable`` (a set to
    evaluate) a sample whose label is good but whose image is not (``IMAGE_REASONS``) is stored without its
    image and counted under ``unreadable``: evaluation then scores it as wrong, as it does an LMDB's record that
    does not decode. The LMDB is built in a temporary folder and renamed into place when complete; ``map_size``
    doubles whenever it is exhausted. With ``keep_names`` each stored record's name goes to ``names.txt``
    beside it (small sets of files: benchmark and real sets). A disk that fills up ends in one sentence
    naming the folder and about how much the LMDB needs.
    """
    out_dir = Path(out_dir)
    tally = _Tally(keep_unreadable)
    with atomic_dir(out_dir) as tmp:
        try:
            env = lmdb.open(str(tmp), map_size=map_size, lock=False, sync=False, metasync=False)
            try:
                pending: list[tuple[bytes, bytes]] = []
                check = functools.partial(_read_and_check, limits=limits)
                for records in parallel_map(check, samples, workers, total=total, desc=desc):
                    tally.read += 1
                    for rec in filter(tally.keep, records):
                        tally.written += 1
                        tally.names += [" ".join(rec.name.split())] if keep_names else []
                        pending.append((label_key(tally.written), rec.label.encode("utf-8")))
                        if rec.reason is None:
                            pending.append((image_key(tally.written), rec.data))
                            tally.stored_bytes += len(rec.data)
                    if len(pending) >= 2 * batch:
                        _put_all(env, pending)
                        pending = []
                pending.append((NUM_SAMPLES_KEY, str(tally.written).encode()))
                _put_all(env, pending)
                env.sync(True)
            finally:
                env.close()
            report = tally.report()
            (tmp / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n")
            if keep_names:
                (tmp / NAMES_FILE).write_text("".join(f"{n}\n" for n in tally.names), encoding="utf-8")
        except (lmdb.Error, OSError) as exc:
            if not _no_room(exc, tmp):
                raise
            # What the LMDB would hold: the bytes stored so far, scaled to the samples still to come.
            needed = int(tally.stored_bytes * total / tally.read) if total and tally.read else None
            raise disk_full(out_dir, needed, "the LMDB") from None
    return report


# LMDB reports a write cut short (a full disk, a file-size limit) as an I/O error, not as ENOSPC: with this little
# room left, that error means no room.
_NEARLY_FULL = 8 << 20


def _no_room(exc: BaseException, folder: Path) -> bool:
    """Whether a write into ``folder`` failed for want of room: an OSError saying so, or py-lmdb's ``lmdb.Error``
    (the C library's message, no errno) naming a full disk or a file-size limit, or an I/O error with the disk
    nearly full or data.mdb at the process's file-size limit."""
    if not isinstance(exc, lmdb.Error):
        return no_room(exc)
    message = str(exc)
    if any(os.strerror(e) in message for e in NO_ROOM):
        return True
    if os.strerror(errno.EIO) not in message:
        return False
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    data = folder / "data.mdb"
    at_limit = limit != resource.RLIM_INFINITY and data.is_file() and data.stat().st_size > limit - _NEARLY_FULL
    return at_limit or shutil.disk_usage(folder).free < _NEARLY_FULL


def copy_lmdb(src: str | Path, dest: str | Path) -> Path:
    """Copy a ready-made LMDB compactly (free pages dropped, no lock.mdb) into ``dest``."""
    env = open_lmdb(src)
    with env.begin() as txn:
        num_samples(txn, Path(src))
    with atomic_dir(Path(dest)) as tmp:
        env.copy(str(tmp), compact=True)
    return Path(dest)

"""``LmdbDataset``: reads text-recognition LMDBs (ours, DTRB's, PaddleOCR's, parseq's) for training and
evaluation; a folder reads as every LMDB below it, concatenated.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from rosetta.data.lmdb_io import find_lmdbs, image_key, iter_labels, lmdb_name, open_lmdb
from rosetta.errors import RosettaError
from rosetta_infer.charset import Charset, MissingCharacters
from rosetta_infer.preprocess import ImageDecodeError, ImageLimits, decode_image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LmdbSet:
    """One LMDB below the dataset root: ``name`` relative to the root, and its sample counts."""

    name: str
    path: Path
    num_samples: int  # as stored
    num_kept: int  # after the charset's label rules
    offset: int  # index of its first kept sample in the concatenated dataset
    left_out: dict[str, int] = field(default_factory=dict)  # samples the rules leave out, by why: LEFT_OUT's keys


# Why the charset's label rules leave a sample out (``Charset.normalize``), in the words a report counts them by.
LEFT_OUT = {"empty": "an empty label", "too_long": "a label over charset.max_text_length",
            "no_charset_character": "no character of the charset"}


class LmdbDataset:
    """Samples ``(PIL RGB image, label)`` from the LMDB(s) at or below ``root``.

    Labels go through ``charset.normalize`` as PaddleOCR's do: a label empty or longer than
    ``max_text_length`` before filtering is rejected, out-of-charset characters are dropped, and a label
    left empty is rejected. Rejected samples are filtered out here, once, and counted in
    ``num_rejected``; the labels returned are the normalized ones. The characters dropped from them are counted
    in ``missing`` (``MissingCharacters``), so that no character vanishes without a line.

    The LMDBs are opened on first access in each process (read-only, no lock file), so DataLoader
    workers each get their own handles. An image that does not decode (or is missing, or over ``limits``)
    never stops a run: the next
    index that decodes is returned instead (training), or with ``substitute_bad_images=False`` the image
    comes back as None (evaluation, which must score the sample itself, never a neighbour); either way
    ``num_bad_images`` counts them in this process.
    """

    def __init__(self, root: str | Path, charset: Charset, transform: Callable | None = None,
                 substitute_bad_images: bool = True, limits: ImageLimits | None = None, keep_raw: bool = False):
        self.root = Path(root)
        self.limits = limits  # an image over them does not decode (evaluation reads outside sets under them)
        self.charset = charset
        self.transform = transform
        self.substitute_bad_images = substitute_bad_images
        self.sets: list[LmdbSet] = []
        self.num_rejected = 0
        self.num_bad_images = 0
        self.missing = MissingCharacters()  # what normalize dropped from the labels, for the log
        db_ids, keys, self._labels = [], [], []
        # The labels as stored, for the exact protocol (evaluation); kept only when asked: training sets are large.
        self.raw_labels: list[str] | None = [] if keep_raw else None
        for db_id, path in enumerate(find_lmdbs(self.root)):
            n, kept_before, left_out = 0, len(self._labels), {}
            for key, raw in iter_labels(path):
                n += 1
                label = self.charset.normalize(raw)
                if len(raw) <= self.charset.max_text_length:
                    self.missing.add(raw, self.charset.missing(raw))
                if label is None:
                    why = ("empty" if not raw else "too_long" if len(raw) > charset.max_text_length
                           else "no_charset_character")
                    left_out[why] = left_out.get(why, 0) + 1
                    continue
                db_ids.append(db_id)
                keys.append(key)
                self._labels.append(label)
                if self.raw_labels is not None:
                    self.raw_labels.append(raw)
            kept = len(self._labels) - kept_before
            self.num_rejected += n - kept
            self.sets.append(LmdbSet(lmdb_name(path, self.root), path, n, kept, kept_before, left_out))
        # Arrays, not lists of tuples: millions of samples must stay cheap to copy into workers.
        self._db_ids = np.asarray(db_ids, dtype=np.int32)
        self._keys = np.asarray(keys, dtype=np.int64)
        self._envs: list | None = None  # opened on first access, per process
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self._labels)

    @property
    def labels(self) -> list[str]:
        """The normalized labels, in dataset order."""
        return self._labels

    def set_of(self, index: int) -> str:
        """The name of the LMDB that sample ``index`` comes from."""
        return self.sets[int(self._db_ids[index])].name

    def _txn_get(self, db_id: int, key: bytes) -> bytes | None:
        if self._envs is None or self._pid != os.getpid():
            self._envs = [open_lmdb(s.path) for s in self.sets]
            self._pid = os.getpid()
        with self._envs[db_id].begin() as txn:
            return txn.get(key)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_envs"], state["_pid"] = None, None  # handles do not survive pickling (spawned workers)
        return state

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(index)
        for step in range(len(self)):
            i = (index + step) % len(self)
            db_id, key = int(self._db_ids[i]), int(self._keys[i])
            data = self._txn_get(db_id, image_key(key))
            name = f"{self.sets[db_id].path} image-{key:09d}"
            try:
                if data is None:
                    raise ImageDecodeError(f"{name}: no such record (the sample's label is stored, its image is "
                                           "not: deleted, or left out by the converter)", "missing")
                img = decode_image(data, name, self.limits)
            except ImageDecodeError as exc:
                self.num_bad_images += 1
                if not self.substitute_bad_images:
                    log.warning("%s; counted as unreadable", exc)
                    return None, self._labels[i]
                log.warning("%s; using the next sample instead", exc)
                continue
            label = self._labels[i]
            return (self.transform(img) if self.transform else img), label
        raise RosettaError(f"{self.root}: no image in the dataset decodes; convert it again with "
                           "`rosetta data convert`")

"""The real training sets of ``data.real_train`` (the ``real`` source): gt-file sets or LMDBs outside the
repository, fingerprinted on every ``dvc repro`` like the real benchmarks, and converted once per change into
``train/<SET>`` LMDBs and a seeded, held-out ``val/<SET>`` that best.pt is chosen on.

On the way, a label the charset cannot learn from (IC15's ``###``, punctuation only, letters of another
alphabet, too long) is dropped and counted; a training image that is a benchmark image (same file, or the
same picture re-encoded) is refused in one sentence naming both; an edited copy (cropped, padded, greyed, its
contrast changed) or a near-duplicate of one is dropped and listed in the report with both names, so the
benchmarks stay unseen.
"""
from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rosetta_infer.charset import Charset, MissingCharacters
from rosetta.data.lmdb_io import image_key, iter_labels, open_lmdb
from rosetta.data.sources import MANIFEST, REAL_TRAIN_KEY
from rosetta.errors import RosettaError
from rosetta.fsutil import atomic_dir, write_json
from rosetta.prep.benchmarks import checked_manifest, sets_folder, write_real_manifest
from rosetta.prep.convert import GT_FILE, Rejected, find_benchmark_sets, gt_samples
from rosetta.prep.lmdb_writer import FileSample, Record, write_lmdb
from rosetta.prep.overlap import Prints, copy_sentence, find_overlaps, is_copy, lmdb_prints, prints_of

REPORT = "realtrain_report.json"


def write_real_train_manifest(setting: str, path: Path, project_dir: Path | None = None) -> dict:
    """The ``real_train`` stage: the fingerprint of the sets at ``data.real_train``."""
    return write_real_manifest(setting, path, project_dir, REAL_TRAIN_KEY)


@dataclass(frozen=True)
class LmdbSample:
    """One sample of a ready-made LMDB, read when the writer asks for it."""

    path: str
    index: int
    label: str
    name: str

    def read(self) -> list[Record]:
        with open_lmdb(self.path).begin() as txn:
            data = txn.get(image_key(self.index))
        return [Record(self.name, self.label, bytes(data) if data else None, None if data else "missing")]


def label_problem(label: str, charset: Charset) -> str | None:
    """Why the model cannot learn from ``label``, or None: too long (PaddleOCR's rule), nothing the charset
    holds (``###``, ``!!``), or a letter or digit outside it (a wrong label once dropped)."""
    if len(label) > charset.max_text_length:
        return "too_long"
    if charset.normalize(label) is None:
        return "unlearnable"
    if not charset.conforms(label):
        return "out_of_charset"
    return None


def _listed(kind: str, folder: Path) -> list[FileSample | LmdbSample | Rejected]:
    if kind == "gt-file":
        return list(gt_samples(folder / GT_FILE))
    return [LmdbSample(str(folder), i, label, f"image-{i:09d}") for i, label in iter_labels(folder)]


def _sample_bytes(sample: FileSample | LmdbSample) -> bytes:
    records = sample.read()
    return records[0].data or b""


def benchmark_prints(folders: list[Path], workers: int = 0) -> Prints:
    """Prints of every image of the benchmark sets below ``folders`` (gt-file sets or LMDBs), named by file."""
    bench = Prints()
    for root in folders:
        for name, (kind, folder) in find_benchmark_sets(root).items():
            if kind == "lmdb":
                bench.extend(lmdb_prints(folder, workers, desc=f"print {name}", windows=True))
                continue
            # Named by set and the file as its gt file lists it: the report (a DVC output) reads the same in
            # every clone and folder, where an absolute path would change its hash.
            files = [s for s in gt_samples(folder / GT_FILE) if isinstance(s, FileSample)]
            bench.extend(prints_of(((f"{name}/{s.name}", _sample_bytes(s)) for s in files), workers,
                                   total=len(files), desc=f"print {name}", windows=True))
    return bench


def holdout(names: list[str], set_name: str, fraction: float, seed: int) -> set[int]:
    """The indices of ``names`` held out for validation: a fixed, seeded share of the set (at least one
    sample where the set has two or more)."""
    n = len(names)
    k = min(n - 1, max(1, round(fraction * n))) if n >= 2 else 0
    rng = np.random.default_rng([seed, zlib.crc32(set_name.encode())])
    return set(rng.permutation(n)[:k].tolist())


def convert_real_train(manifest_path: Path, output: Path, charset: Charset, val_fraction: float, seed: int,
                       benchmark_folders: list[Path], workers: int = 0, project_dir: Path | None = None) -> dict:
    """The ``convert_real_train`` stage: each set in the manifest into ``output/train/<set>`` and
    ``output/val/<set>`` (``val_fraction`` of it, seeded), checked against the benchmark sets below
    ``benchmark_folders``; the report (per set: listed, dropped by reason, near-duplicates, written) goes to
    ``output/realtrain_report.json`` beside a copy of the manifest. Returns the report."""
    manifest = checked_manifest(manifest_path, REAL_TRAIN_KEY, project_dir)
    setting = manifest[REAL_TRAIN_KEY]
    report: dict = {REAL_TRAIN_KEY: setting, "val_fraction": val_fraction, "sets": {}}
    with atomic_dir(output) as tmp:
        if manifest["sets"]:
            bench = benchmark_prints([f for f in benchmark_folders if f.is_dir()], workers)
            root = sets_folder(setting, REAL_TRAIN_KEY, project_dir)
            for name, entry in manifest["sets"].items():
                report["sets"][name] = _convert_set(name, entry["kind"], root / entry["folder"], f"{setting}/{name}",
                                                    tmp, charset, val_fraction, seed, bench, workers)
        write_json(tmp / MANIFEST, manifest)
        write_json(tmp / REPORT, report)
    return report


def _convert_set(name: str, kind: str, folder: Path, shown: str, out: Path, charset: Charset, val_fraction: float,
                 seed: int, bench: Prints, workers: int) -> dict:
    dropped: Counter[str] = Counter()
    missing = MissingCharacters()
    keep: list[FileSample | LmdbSample] = []
    for sample in _listed(kind, folder):
        if not isinstance(sample, Rejected):
            missing.add(sample.label, charset.missing(sample.label))
        problem = sample.reason if isinstance(sample, Rejected) else label_problem(sample.label, charset)
        if problem:
            dropped[problem] += 1
        else:
            keep.append(sample)
    shown_name = (lambda s: f"{shown}/{s.name}") if kind == "gt-file" else (lambda s: f"{shown} {s.name}")
    prints = prints_of(((shown_name(s), _sample_bytes(s)) for s in keep), workers, total=len(keep),
                       desc=f"check {name} against the benchmarks")
    overlaps = find_overlaps(prints, bench)
    copies = [o for o in overlaps if is_copy(o)]
    if copies:
        more = f" ({len(copies) - 1} more like it)" if len(copies) > 1 else ""
        raise RosettaError(copy_sentence(copies[0], shown) + more)
    near = {o.index for o in overlaps}
    dropped["near_duplicate"] += len(near)
    keep = [s for i, s in enumerate(keep) if i not in near]
    val = holdout([s.name for s in keep], name, val_fraction, seed)
    written = {}
    for split, samples in (("train", [s for i, s in enumerate(keep) if i not in val]),
                           ("val", [s for i, s in enumerate(keep) if i in val])):
        if samples:
            written[split] = write_lmdb(out / split / name, samples, total=len(samples), workers=workers,
                                        desc=f"convert {name} {split}", keep_names=True)["written"]
    return {"kind": kind, "listed": sum(dropped.values()) + len(keep), "dropped": dict(sorted(dropped.items())),
            "near_duplicates": [{"train": o.train, "benchmark": o.benchmark, "similarity": o.similarity}
                                for o in overlaps],
            "written": written, "missing_characters": dict(missing.counts.most_common()),
            "missing_example": missing.example, "labels_missing_characters": missing.labels}


def missing_note(entry: dict, name: str, charset: Charset, dict_path: str | None) -> str | None:
    """The line naming the characters one converted set's labels hold that the charset lacks (its report's
    ``missing_characters``), or None."""
    missing = MissingCharacters(Counter(entry.get("missing_characters", {})), entry.get("labels_missing_characters", 0),
                                entry.get("missing_example"))
    return missing.note(f"{name}", entry["listed"], charset, dict_path)

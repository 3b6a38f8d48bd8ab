"""Converters from the released dataset layouts (MJSynth, SynthText, DTRB's gt file) to LMDB, and the
import of ready-made LMDBs (DTRB's data_lmdb_release, benchmark archives).

Each converter only lists what to store; ``write_lmdb`` reads, checks and writes it.
"""
from __future__ import annotations

import io
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from rosetta.config import DataConfig
from rosetta.data.lmdb_io import find_lmdbs, folders_holding
from rosetta_infer.preprocess import ImageDecodeError, ImageLimits, decode_image
from rosetta.errors import RosettaError
from rosetta.fsutil import atomic_dir
from rosetta.layout import DataLayout
from rosetta.prep.lmdb_writer import FileSample, Record, copy_lmdb, write_lmdb

FORMATS = ("mjsynth", "synthtext", "gt-file")
GT_FILE = "gt.txt"  # a benchmark set in DTRB's layout: <SET>/gt.txt listing images/x.png<TAB>label
MJSYNTH_SPLITS = {"train": "annotation_train.txt", "val": "annotation_val.txt", "test": "annotation_test.txt"}
# DTRB's data_lmdb_release folder names -> our split names.
_SPLIT_FOLDERS = {"training": "train", "train": "train", "validation": "val", "valid": "val", "val": "val",
                  "evaluation": "test", "test": "test"}


@dataclass(frozen=True)
class Rejected:
    """A listed sample that is unusable before any file is read (a malformed line or file name, a path out of
    its set's folder)."""

    name: str
    reason: str
    label: str = ""

    def read(self) -> list[Record]:
        return [Record(self.name, self.label, None, self.reason)]


def _find_up_to(root: Path, file_name: str, max_depth: int = 6) -> Path:
    """The shallowest folder at or below ``root`` holding ``file_name`` (breadth first: MJSynth has
    millions of files, so the search must stop at the first level that has it)."""
    queue = deque([(Path(root), 0)])
    while queue:
        folder, depth = queue.popleft()
        if (folder / file_name).is_file():
            return folder
        if depth < max_depth:
            queue.extend((d, depth + 1) for d in sorted(p for p in folder.iterdir() if p.is_dir()))
    raise RosettaError(f"{root}: no {file_name} found in it or below it; point at the extracted dataset folder")


def mjsynth_label(file_name: str) -> str:
    """The word in an MJSynth file name: ``334_EFFLORESCENT_24742.jpg`` -> ``EFFLORESCENT``."""
    parts = Path(file_name).stem.split("_")
    return "_".join(parts[1:-1]) if len(parts) >= 3 else ""


def _mjsynth_samples(folder: Path, annotation: Path) -> Iterator[FileSample | Rejected]:
    with open(annotation, encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.split()
            if not fields:
                continue
            label = mjsynth_label(fields[0])
            if not label:
                yield Rejected(fields[0], "bad_name")
            else:
                yield FileSample(str(folder / fields[0]), label, name=fields[0])


def _count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def convert_mjsynth(input_dir: str | Path, output: str | Path, workers: int = 0) -> dict[str, dict]:
    """MJSynth (the folder holding annotation_*.txt, or a parent of it) -> ``output/{train,val,test}``."""
    folder = _find_up_to(Path(input_dir), MJSYNTH_SPLITS["train"])
    reports = {}
    with atomic_dir(Path(output)) as tmp:
        for split, name in MJSYNTH_SPLITS.items():
            annotation = folder / name
            if annotation.is_file():
                reports[split] = write_lmdb(tmp / split, _mjsynth_samples(folder, annotation),
                                            total=_count_lines(annotation), workers=workers, desc=f"convert {split}")
    return reports


def quad_crop(img: Image.Image, corners: np.ndarray) -> Image.Image | None:
    """Cut out the quadrilateral ``corners`` (4x2: top-left, top-right, bottom-right, bottom-left, as
    SynthText orders them) and straighten it; None when it is too small to hold a word."""
    tl, tr, br, bl = (np.asarray(c, dtype=np.float64) for c in corners)
    width = round(max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl)))
    height = round(max(np.linalg.norm(bl - tl), np.linalg.norm(br - tr)))
    if width < 2 or height < 2:
        return None
    # PIL's QUAD takes the source corners as upper-left, lower-left, lower-right, upper-right.
    quad = (*tl, *bl, *br, *tr)
    return img.transform((width, height), Image.Transform.QUAD, quad, resample=Image.Resampling.BILINEAR)


@dataclass(frozen=True)
class SynthTextImage:
    """One SynthText scene: its file and the words in it, cut out when read."""

    path: str
    name: str
    boxes: np.ndarray  # (N, 4, 2) corner coordinates
    words: tuple[str, ...]

    def read(self) -> list[Record]:
        names = [f"{self.name}#{i}" for i in range(len(self.words))]
        if len(self.boxes) != len(self.words):
            return [Record(self.name, "", None, "box_count_mismatch")]
        try:
            data = Path(self.path).read_bytes()
        except OSError:
            return [Record(n, w, None, "missing") for n, w in zip(names, self.words)]
        try:
            img = decode_image(data, self.name)
        except ImageDecodeError:
            return [Record(n, w, None, "undecodable") for n, w in zip(names, self.words)]
        records = []
        for name, word, box in zip(names, self.words, self.boxes):
            crop = quad_crop(img, box)
            if crop is None:
                records.append(Record(name, word, None, "bad_box"))
                continue
            buf = io.BytesIO()
            crop.save(buf, "JPEG", quality=95)
            records.append(Record(name, word, buf.getvalue()))
        return records


def _strings(cell) -> Iterator[str]:
    """The text in a loaded MATLAB cell: a char matrix (rows padded with spaces) or nested cells."""
    if isinstance(cell, str):
        yield cell
    else:
        for item in np.ravel(cell):
            yield from _strings(item)


def _synthtext_samples(folder: Path, gt: dict) -> Iterator[SynthTextImage]:
    imnames, word_bbs, texts = gt["imnames"], gt["wordBB"], gt["txt"]
    for i in range(imnames.shape[1]):
        name = str(imnames[0, i][0])
        bb = np.asarray(word_bbs[0, i], dtype=np.float32)
        if bb.ndim == 2:  # MATLAB drops the last axis of an image with a single word
            bb = bb[:, :, None]
        boxes = bb.transpose(2, 1, 0)  # (2, 4, N) x/y rows -> (N, 4, 2) corners
        # Each txt entry may hold several words separated by spaces and newlines, in wordBB order.
        words = tuple(" ".join(_strings(texts[0, i])).split())
        yield SynthTextImage(str(folder / name), name, boxes, words)


def convert_synthtext(input_dir: str | Path, output: str | Path, workers: int = 0) -> dict[str, dict]:
    """SynthText (the folder holding gt.mat, or a parent of it) -> ``output/train``, one sample per word box."""
    import scipy.io

    folder = _find_up_to(Path(input_dir), "gt.mat", max_depth=3)
    try:
        gt = scipy.io.loadmat(str(folder / "gt.mat"), variable_names=["imnames", "wordBB", "txt"])
    except (ValueError, OSError, NotImplementedError) as exc:
        raise RosettaError(f"{folder / 'gt.mat'}: not a readable MATLAB file ({exc}); download SynthText again") from None
    missing = [k for k in ("imnames", "wordBB", "txt") if k not in gt]
    if missing:
        raise RosettaError(f"{folder / 'gt.mat'}: lacks {', '.join(missing)}; this is not SynthText's gt.mat")
    with atomic_dir(Path(output)) as tmp:
        report = write_lmdb(tmp / "train", _synthtext_samples(folder, gt), total=gt["imnames"].shape[1],
                            workers=workers, desc="convert synthtext")
    return {"train": report}


def gt_samples(gt_file: Path, limits: ImageLimits | None = None) -> Iterator[FileSample | Rejected]:
    """The samples a gt file lists. A path that leaves the set's folder (absolute, through ``..`` or a symlink
    pointing out of it) is never read: it is rejected as ``outside_folder``, as archive extraction refuses such
    members, so a gt file cannot make a conversion copy other files into an LMDB."""
    folder = os.path.realpath(gt_file.parent)
    with open(gt_file, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r\n")  # a BOM is no path
            except UnicodeDecodeError:
                raise RosettaError(f"{gt_file}: line {number} is not UTF-8 text; save the gt file as UTF-8 and "
                                   "convert again") from None
            if not line.strip():
                continue
            if "\t" not in line:
                yield Rejected(f"{gt_file.name}:{number}", "bad_line")
                continue
            rel, label = line.split("\t", 1)
            path = os.path.realpath(os.path.join(folder, rel))
            if os.path.isabs(rel) or os.path.commonpath([folder, path]) != folder:
                yield Rejected(rel, "outside_folder", label)
                continue
            yield FileSample(path, label, name=rel, limits=limits)


def convert_gt_file(gt_file: str | Path, output: str | Path, workers: int = 0, *, keep_unreadable: bool = False,
                    limits: ImageLimits | None = None) -> dict[str, dict]:
    """DTRB's create_lmdb_dataset.py input (``relative/path<TAB>label`` per line) -> one LMDB at ``output``.
    ``keep_unreadable`` and ``limits``: ``write_lmdb``'s (a set to evaluate keeps its unreadable samples)."""
    gt_file = Path(gt_file)
    if not gt_file.is_file():
        raise RosettaError(f"{gt_file}: gt file not found; give the text file listing path<TAB>label lines")
    report = write_lmdb(Path(output), gt_samples(gt_file, limits), total=_count_lines(gt_file), workers=workers,
                        desc=f"convert {gt_file.parent.name}/{gt_file.name}", keep_names=True,
                        keep_unreadable=keep_unreadable, limits=limits)
    return {Path(output).name: report}


def convert(fmt: str, input_path: str | Path, output: str | Path, workers: int = 0) -> dict[str, dict]:
    """Dispatch on ``fmt`` (one of FORMATS); returns the writer's report for each LMDB written."""
    converters = {"mjsynth": convert_mjsynth, "synthtext": convert_synthtext, "gt-file": convert_gt_file}
    if fmt not in converters:
        raise RosettaError(f"unknown dataset format {fmt!r}; use one of {', '.join(FORMATS)}")
    return converters[fmt](input_path, output, workers)


def import_lmdbs(src: str | Path, output: str | Path) -> list[Path]:
    """Copy ready-made LMDBs into ``output/{train,val,test}/<name>`` by DTRB's folder names
    (training/, validation/, evaluation/); LMDBs outside those go to train."""
    src = Path(src)
    copied = []
    for path in find_lmdbs(src):
        rel = path.relative_to(src)
        parts = rel.parts
        split = _SPLIT_FOLDERS.get(parts[0].lower()) if len(parts) > 1 else None
        rest = Path(*parts[1:]) if split else rel
        copied.append(copy_lmdb(path, Path(output) / (split or "train") / rest))
    return copied


def find_benchmark_sets(root: str | Path) -> dict[str, tuple[str, Path]]:
    """Every benchmark set at or below ``root`` by name: ``(kind, folder)`` with kind ``lmdb`` (a folder
    holding data.mdb) or ``gt-file`` (a folder holding DTRB's gt.txt); a symlinked set folder counts. Names are
    the folders' own names (IIIT5k_3000, SVT, ...), or their paths joined by ``_`` where two leaves clash."""
    root = Path(root)
    found: dict[Path, str] = {}
    if root.is_dir():
        for marker, kind in ((GT_FILE, "gt-file"), ("data.mdb", "lmdb")):  # an LMDB wins over a gt file beside it
            for folder in folders_holding(root, marker):
                found[folder] = kind
    leaves = [p.name for p in found]
    sets = {}
    for folder in sorted(found):
        rel = folder.relative_to(root).parts
        name = folder.name if not rel or leaves.count(folder.name) == 1 else "_".join(rel)
        sets[name] = (found[folder], folder)
    return sets


def import_benchmarks(src: str | Path, output: str | Path, workers: int = 0,
                      limits: ImageLimits | None = None) -> dict[str, dict]:
    """Every benchmark set below ``src`` (``find_benchmark_sets``) into ``output/<name>``: LMDBs copied as
    they are, gt-file sets converted with their unreadable samples kept (scored as wrong, never left out) and
    images over ``limits`` among them. Returns the writer's report of each converted set."""
    sets = find_benchmark_sets(src)
    if not sets:
        raise RosettaError(f"{src}: no benchmark set there (a folder holding data.mdb, or a gt-file set holding "
                           f"{GT_FILE}); point at the folder of the evaluation sets")
    reports = {}
    for name, (kind, folder) in sets.items():
        if kind == "lmdb":
            copy_lmdb(folder, Path(output) / name)
        else:
            reports.update(convert_gt_file(folder / GT_FILE, Path(output) / name, workers, keep_unreadable=True,
                                           limits=limits))
    return reports


def convert_sources(data: DataConfig, layout: DataLayout) -> dict[str, dict]:
    """The ``convert`` stage: every source's raw data into ``layout.lmdb(source)/{train,val,test}``, and
    the evaluation sets into ``layout.benchmarks``. Returns the writer's reports by ``source/split``.

    Without ``data.benchmarks.url`` each source's test split stands in as the benchmark
    ``<source>_test`` (on the default params: ``synth_test``, the held-out-font split).
    """
    reports = {}
    for source in (s for s in data.sources if s != "real"):  # the real sets have a stage of their own
        raw, out = layout.raw(source), layout.lmdb(source)
        if source in ("synth", "mjsynth"):  # our renderer writes MJSynth's layout
            done = convert_mjsynth(raw, out, data.workers)
        elif source == "synthtext":
            done = convert_synthtext(raw, out, data.workers)
        else:
            import_lmdbs(raw, out)
            done = {}
        reports.update({f"{source}/{split}": report for split, report in done.items()})
    with atomic_dir(layout.benchmarks) as tmp:
        if data.benchmarks.url:
            reports.update({f"benchmarks/{name}": report for name, report in
                            import_benchmarks(layout.raw("benchmarks"), tmp, data.workers).items()})
        else:
            tests = [s for s in data.sources if s != "real" and (layout.lmdb(s) / "test" / "data.mdb").is_file()]
            if not tests:
                raise RosettaError("data.benchmarks.url is empty and no source has a test split to evaluate on; "
                                   "set data.benchmarks.url to the evaluation LMDBs (or add synth to data.sources)")
            for source in tests:
                copy_lmdb(layout.lmdb(source) / "test", tmp / f"{source}_test")
    return reports

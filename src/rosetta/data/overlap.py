"""Training images that are benchmark images: a copy (the same bytes, or the same picture re-encoded or
rescaled) is refused, a near-duplicate (another photo of the same thing, as IIIT5k's image-search crops
often are) is reported, and dropped where the real training sets are converted.

Each image gets a print: the sha256 of its bytes and a small normalised thumbnail (grey levels, blurred,
32x12, zero mean and unit norm) with its aspect ratio, mean colour and contrast. Two prints match when the
thumbnails' correlation is high and the shape, colour and contrast agree, which a re-encoded or rescaled
copy keeps and a different photo of the same word rarely does.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from PIL import Image, ImageFilter

from rosetta.data.lmdb_io import (find_lmdbs, image_key, num_samples, open_lmdb, parallel_map, read_names)
from rosetta.data.preprocess import ImageDecodeError, decode_image

THUMB_W, THUMB_H = 32, 12
COPY_SIMILARITY = 0.985  # a re-encoded (JPEG 40+) or rescaled copy keeps at least this correlation
NEAR_SIMILARITY = 0.95  # another photo of the same sign or page reaches this; different words do not
_MAX_LOG_ASPECT = 0.08  # width/height within 8 %
_MAX_MEAN_DIFF = 24.0  # mean colour within 24 levels in every channel
_MAX_LOG_CONTRAST = 0.25  # contrast (grey-level spread) within 25 %


@dataclass
class Prints:
    """The prints of a list of images; ``thumbs`` etc. hold only the images that decode (``decoded``)."""

    names: list[str] = field(default_factory=list)
    sha256: list[str] = field(default_factory=list)
    decoded: list[int] = field(default_factory=list)  # indices into names of the rows below
    thumbs: np.ndarray = field(default_factory=lambda: np.zeros((0, THUMB_W * THUMB_H), np.float32))
    log_aspect: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    mean: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))
    log_contrast: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def __len__(self) -> int:
        return len(self.names)

    def extend(self, other: "Prints") -> None:
        offset = len(self.names)
        self.names += other.names
        self.sha256 += other.sha256
        self.decoded += [offset + i for i in other.decoded]
        self.thumbs = np.concatenate([self.thumbs, other.thumbs])
        self.log_aspect = np.concatenate([self.log_aspect, other.log_aspect])
        self.mean = np.concatenate([self.mean, other.mean])
        self.log_contrast = np.concatenate([self.log_contrast, other.log_contrast])


@dataclass(frozen=True)
class Overlap:
    """A training image matching a benchmark image: ``same_file`` (same bytes), ``copy`` (the same picture,
    re-encoded or rescaled) or ``near`` (a near-duplicate)."""

    train: str
    benchmark: str
    kind: str
    similarity: float
    index: int  # the training image's place in its Prints


def image_print(data: bytes) -> tuple[str, tuple | None]:
    """(sha256, (thumb, log aspect, mean colour, log contrast)); the second is None for bytes that do not decode."""
    digest = hashlib.sha256(data).hexdigest()
    try:
        img = decode_image(data)
    except ImageDecodeError:
        return digest, None
    w, h = img.size
    rgb = np.asarray(img, np.float32).reshape(-1, 3)
    # Blurred before the box reduction, so that the exact resampling grid (a rescaled copy) hardly matters.
    grey = img.convert("L").resize((THUMB_W * 4, THUMB_H * 4), Image.Resampling.BILINEAR)
    grey = grey.filter(ImageFilter.GaussianBlur(2)).resize((THUMB_W, THUMB_H), Image.Resampling.BOX)
    thumb = np.asarray(grey, np.float32).ravel()
    thumb -= thumb.mean()
    thumb /= max(float(np.linalg.norm(thumb)), 1e-6)
    return digest, (thumb, float(np.log(w / h)), rgb.mean(0), float(np.log1p(rgb.std())))


def _print_named(item: tuple[str, bytes]) -> tuple[str, str, tuple | None]:
    name, data = item
    return (name, *image_print(data))


def prints_of(items: Iterable[tuple[str, bytes]], workers: int = 0, total: int | None = None,
              desc: str | None = None) -> Prints:
    """Prints of ``(name, encoded bytes)`` pairs, computed over ``workers`` processes."""
    out = Prints()
    thumbs, aspect, mean, contrast = [], [], [], []
    for name, digest, feats in parallel_map(_print_named, items, workers, total=total, desc=desc, unit=" images"):
        if feats is not None:
            out.decoded.append(len(out.names))
            thumbs.append(feats[0])
            aspect.append(feats[1])
            mean.append(feats[2])
            contrast.append(feats[3])
        out.names.append(name)
        out.sha256.append(digest)
    if thumbs:
        out.thumbs = np.stack(thumbs).astype(np.float32)
        out.log_aspect = np.asarray(aspect, np.float32)
        out.mean = np.stack(mean).astype(np.float32)
        out.log_contrast = np.asarray(contrast, np.float32)
    return out


def lmdb_images(path: Path) -> Iterator[tuple[str, bytes]]:
    """``(name, bytes)`` for every sample of one LMDB, named ``<lmdb>: <its file>`` where the converter kept
    the file names (``names.txt``), else ``<lmdb> image-<index>``."""
    names = read_names(path)
    with open_lmdb(path).begin() as txn:
        n = num_samples(txn, path)
        for index in range(1, n + 1):
            name = f"{path}: {names[index - 1]}" if names and len(names) == n else f"{path} image-{index:09d}"
            yield name, bytes(txn.get(image_key(index)) or b"")


def lmdb_prints(root: Path, workers: int = 0, desc: str | None = None) -> Prints:
    """Prints of every image of every LMDB at or below ``root``."""
    out = Prints()
    for path in find_lmdbs(root):
        with open_lmdb(path).begin() as txn:
            n = num_samples(txn, path)
        out.extend(prints_of(lmdb_images(path), workers, total=n, desc=desc or f"print {path.name}"))
    return out


def is_copy(overlap: Overlap) -> bool:
    return overlap.kind in ("same_file", "copy")


def find_overlaps(train: Prints, bench: Prints, near: bool = True, chunk: int = 2048) -> list[Overlap]:
    """Every training image that is a copy of a benchmark image (same sha256, or a thumbnail match at
    ``COPY_SIMILARITY``) and, with ``near``, every near-duplicate (``NEAR_SIMILARITY``); one entry per
    training image, its closest benchmark image."""
    found: dict[int, Overlap] = {}
    by_sha = {}
    for i, digest in enumerate(bench.sha256):
        by_sha.setdefault(digest, i)
    for i, digest in enumerate(train.sha256):
        if digest in by_sha:
            found[i] = Overlap(train.names[i], bench.names[by_sha[digest]], "same_file", 1.0, i)
    if not len(train.decoded) or not len(bench.decoded):
        return [found[i] for i in sorted(found)]
    threshold = NEAR_SIMILARITY if near else COPY_SIMILARITY
    for start in range(0, len(train.decoded), chunk):
        rows = slice(start, start + chunk)
        sim = train.thumbs[rows] @ bench.thumbs.T
        same = ((np.abs(train.log_aspect[rows, None] - bench.log_aspect[None]) < _MAX_LOG_ASPECT)
                & (np.abs(train.mean[rows, None, :] - bench.mean[None]).max(-1) < _MAX_MEAN_DIFF)
                & (np.abs(train.log_contrast[rows, None] - bench.log_contrast[None]) < _MAX_LOG_CONTRAST))
        sim = np.where(same, sim, -1.0)
        best = sim.argmax(1)
        for r in np.flatnonzero(sim[np.arange(len(best)), best] >= threshold):
            i, j = train.decoded[start + r], bench.decoded[best[r]]
            score = float(sim[r, best[r]])
            if i not in found:
                kind = "copy" if score >= COPY_SIMILARITY else "near"
                found[i] = Overlap(train.names[i], bench.names[j], kind, round(score, 4), i)
    return [found[i] for i in sorted(found)]


def copy_sentence(overlap: Overlap, where: str) -> str:
    """The one-sentence refusal for a training image that is a benchmark image."""
    how = ("the same file" if overlap.kind == "same_file"
           else f"the same picture re-encoded (thumbnail similarity {overlap.similarity:.3f})")
    return (f"training image {overlap.train} is {how} as benchmark image {overlap.benchmark}; remove it from "
            f"{where}: a model must never train on a test image")


# Sources rendered by a program: no photograph of a benchmark word can be in them, so only their bytes are
# compared (a copied file), which costs a hash instead of decoding millions of images.
RENDERED_SOURCES = ("synth", "mjsynth", "synthtext")


def training_overlap(train_roots: dict[str, list[Path]], benchmark_roots: list[Path], workers: int = 0) -> dict:
    """Every LMDB below ``train_roots`` (by source: its training and validation splits) against every benchmark
    LMDB below ``benchmark_roots``: per source, how many images were compared and which are near-duplicates, and
    the copies (``copies``, each with both names), which the caller refuses."""
    bench = Prints()
    for root in benchmark_roots:
        if root.is_dir() and any(root.glob("**/data.mdb")):
            bench.extend(lmdb_prints(root, workers, desc=f"print {root.name}"))
    report: dict = {"benchmark_images": len(bench), "sources": {}, "copies": []}
    for source, roots in train_roots.items():
        near = source not in RENDERED_SOURCES
        prints = Prints()
        for root in roots:
            if near:
                prints.extend(lmdb_prints(root, workers, desc=f"print {source}"))
                continue
            for path in find_lmdbs(root):  # bytes only: no decoding
                for name, data in lmdb_images(path):
                    prints.names.append(name)
                    prints.sha256.append(hashlib.sha256(data).hexdigest())
        found = find_overlaps(prints, bench, near=near)
        report["copies"] += [vars(o) for o in found if is_copy(o)]
        near_found = [o for o in found if not is_copy(o)]
        report["sources"][source] = {"images": len(prints), "compared": "bytes and thumbnails" if near else "bytes",
                                     "near_duplicates": len(near_found),
                                     "near_duplicate_pairs": [vars(o) for o in near_found]}
    return report

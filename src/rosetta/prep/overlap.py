"""Training images that are benchmark images: a copy (the same bytes, or the same picture re-encoded or
rescaled) is refused, an edited copy (cropped, padded, its contrast or colour changed) and a near-duplicate
(another photo of the same thing, as IIIT5k's image-search crops often are) are reported, and dropped where the
real training sets are converted.

Each image gets a print: the sha256 of its bytes and a small normalised thumbnail (grey levels, blurred,
32x12, zero mean and unit norm) with its aspect ratio, mean colour and contrast. Two prints match when the
thumbnails' correlation is high and the shape, colour and contrast agree, which a re-encoded or rescaled
copy keeps and a different photo of the same word rarely does. For edits, each image also gets thumbnails of
its views (``views``): with a flat border cut away (a pad undone), and windows cut a few pixels or a few per cent
off its sides (what a crop leaves); a training image's whole and unpadded views are matched against every view
of every benchmark image, gray levels only (colour and contrast are what such edits change), the candidates
found by an index on the aspect ratio.
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from PIL import Image, ImageFilter

from rosetta.fsutil import shown_path
from rosetta.data.lmdb_io import find_lmdbs, image_key, num_samples, open_lmdb, read_names
from rosetta_infer.preprocess import ImageDecodeError, decode_image
from rosetta.prep.parallel import parallel_map

THUMB_W, THUMB_H = 32, 12
COPY_SIMILARITY = 0.985  # a re-encoded (JPEG 40+) or rescaled copy keeps at least this correlation
NEAR_SIMILARITY = 0.95  # another photo of the same sign or page reaches this; different words do not
_MAX_LOG_ASPECT = 0.08  # width/height within 8 %
_MAX_MEAN_DIFF = 24.0  # mean colour within 24 levels in every channel
_MAX_LOG_CONTRAST = 0.25  # contrast (grey-level spread) within 25 %


EDIT_SIMILARITY = 0.985  # an edited copy against the benchmark view it was cut from, after the cut
_EDIT_MAX_LOG_ASPECT = 0.12  # a 1-pixel resize of a 10-pixel-high word changes its shape by 10 %
_EDIT_MAX_GREY_DIFF = 24.0
# Benchmark windows: (left, top, right, bottom) cut, in pixels (small crops of small words) and in per cent.
_PIXEL_CUTS = ((1, 0, 0, 0), (2, 0, 0, 0), (3, 0, 0, 0), (4, 0, 0, 0), (0, 0, 2, 0), (2, 2, 2, 2))
_SHARE_CUTS = ((.05, 0, 0, 0), (.1, 0, 0, 0), (0, 0, .05, 0), (.025, .025, .025, .025), (.05, .05, .05, .05))
TRAIN_VIEWS = 2  # a training image is matched by its views of rank below: as it is, and with its flat border cut


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
    # Every view of every decoded image (``image_views``), its image's row in ``decoded`` and its shape and grey.
    views: np.ndarray = field(default_factory=lambda: np.zeros((0, THUMB_W * THUMB_H), np.float32))
    view_of: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    view_rank: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # 0 whole, 1 unpadded, 2 a window
    view_aspect: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    view_grey: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def __len__(self) -> int:
        return len(self.names)

    def extend(self, other: "Prints") -> None:
        offset, decoded = len(self.names), len(self.decoded)
        self.names += other.names
        self.sha256 += other.sha256
        self.decoded += [offset + i for i in other.decoded]
        self.view_of = np.concatenate([self.view_of, other.view_of + decoded])
        for key in ("thumbs", "log_aspect", "mean", "log_contrast", "views", "view_rank", "view_aspect", "view_grey"):
            setattr(self, key, np.concatenate([getattr(self, key), getattr(other, key)]))


@dataclass(frozen=True)
class Overlap:
    """A training image matching a benchmark image: ``same_file`` (same bytes), ``copy`` (the same picture,
    re-encoded or rescaled), ``edited`` (the same picture cropped, padded, greyed or with another contrast; or
    the same picture cut twice from one photo, which the data sets themselves hold) or ``near`` (a
    near-duplicate)."""

    train: str
    benchmark: str
    kind: str
    similarity: float
    index: int  # the training image's place in its Prints


def _thumb(grey: Image.Image, scale: int = 4, blur: float = 2) -> np.ndarray:
    # Blurred before the box reduction, so that the exact resampling grid (a rescaled copy) hardly matters.
    small = grey.resize((THUMB_W * scale, THUMB_H * scale), Image.Resampling.BILINEAR)
    small = small.filter(ImageFilter.GaussianBlur(blur)).resize((THUMB_W, THUMB_H), Image.Resampling.BOX)
    thumb = np.asarray(small, np.float32).ravel().copy()
    thumb -= thumb.mean()
    thumb /= max(float(np.linalg.norm(thumb)), 1e-6)
    return thumb


def _unpadded(grey: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of ``grey`` without its border lines of one exact grey level, a pad's."""
    t, b, l, r = 0, grey.shape[0], 0, grey.shape[1]
    while True:
        if b - t > 4 and np.ptp(grey[t, l:r]) == 0:
            t += 1
        elif b - t > 4 and np.ptp(grey[b - 1, l:r]) == 0:
            b -= 1
        elif r - l > 4 and np.ptp(grey[t:b, l]) == 0:
            l += 1
        elif r - l > 4 and np.ptp(grey[t:b, r - 1]) == 0:
            r -= 1
        else:
            return l, t, r, b


def image_views(grey: Image.Image, windows: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(thumbnails, log aspects, mean grey levels, ranks) of ``grey``'s views: as it is (rank 0), without its flat
    border when it has one (rank 1), and with ``windows`` (a benchmark image's) the windows an edit may leave, a
    few pixels or per cent cut off its sides (rank 2; none under 4 pixels a side). Each is cut before it is
    resized, so no pixel outside it (a pad's) blends in at its edges."""
    w, h = grey.size
    g = np.asarray(grey)
    unpadded = _unpadded(g)
    boxes = [(0, 0, w, h, 0)] + ([(*unpadded, 1)] if unpadded != (0, 0, w, h) else [])
    cuts = [(cl, ct, w - cr, h - cb) for cl, ct, cr, cb in _PIXEL_CUTS]
    cuts += [(round(cl * w), round(ct * h), w - round(cr * w), h - round(cb * h)) for cl, ct, cr, cb in _SHARE_CUTS]
    boxes += [(l, t, r, b, 2) for l, t, r, b in cuts if windows and r - l >= 4 and b - t >= 4]
    return (np.stack([_thumb(grey.crop(b[:4]), 2, 1) for b in boxes]),
            np.array([np.log((r - l) / (bt - t)) for l, t, r, bt, _ in boxes], np.float32),
            np.array([g[t:bt, l:r].mean() for l, t, r, bt, _ in boxes], np.float32),
            np.array([b[4] for b in boxes], np.int64))


def image_print(data: bytes, windows: bool = False) -> tuple[str, tuple | None]:
    """(sha256, (thumb, log aspect, mean colour, log contrast, views)); the second is None for bytes that do not
    decode. ``views`` is what ``image_views`` returns."""
    digest = hashlib.sha256(data).hexdigest()
    try:
        img = decode_image(data)
    except ImageDecodeError:
        return digest, None
    w, h = img.size
    rgb = np.asarray(img, np.float32).reshape(-1, 3)
    grey = img.convert("L")
    return digest, (_thumb(grey), float(np.log(w / h)), rgb.mean(0), float(np.log1p(rgb.std())),
                    image_views(grey, windows))


def _print_named(item: tuple[str, bytes], windows: bool = False) -> tuple[str, str, tuple | None]:
    name, data = item
    return (name, *image_print(data, windows))


def prints_of(items: Iterable[tuple[str, bytes]], workers: int = 0, total: int | None = None,
              desc: str | None = None, windows: bool = False) -> Prints:
    """Prints of ``(name, encoded bytes)`` pairs, computed over ``workers`` processes; with ``windows`` (benchmark
    images) each with the windows an edited copy may show."""
    out = Prints()
    thumbs, aspect, mean, contrast, views = [], [], [], [], []
    for name, digest, feats in parallel_map(functools.partial(_print_named, windows=windows), items, workers,
                                            total=total, desc=desc, unit=" images"):
        if feats is not None:
            out.decoded.append(len(out.names))
            thumbs.append(feats[0])
            aspect.append(feats[1])
            mean.append(feats[2])
            contrast.append(feats[3])
            views.append(feats[4])
        out.names.append(name)
        out.sha256.append(digest)
    if thumbs:
        out.thumbs = np.stack(thumbs).astype(np.float32)
        out.log_aspect = np.asarray(aspect, np.float32)
        out.mean = np.stack(mean).astype(np.float32)
        out.log_contrast = np.asarray(contrast, np.float32)
        out.views = np.concatenate([v[0] for v in views])
        out.view_of = np.concatenate([np.full(len(v[0]), i) for i, v in enumerate(views)])
        out.view_rank = np.concatenate([v[3] for v in views])
        out.view_aspect = np.concatenate([v[1] for v in views])
        out.view_grey = np.concatenate([v[2] for v in views])
    return out


def lmdb_images(path: Path) -> Iterator[tuple[str, bytes]]:
    """``(name, bytes)`` for every sample of one LMDB, named ``<lmdb>: <its file>`` where the converter kept
    the file names (``names.txt``), else ``<lmdb> image-<index>``; ``<lmdb>`` relative to the working directory
    (the project) where it lies below it, so that reports read the same in every clone."""
    names = read_names(path)
    shown = shown_path(path)
    with open_lmdb(path).begin() as txn:
        n = num_samples(txn, path)
        for index in range(1, n + 1):
            name = f"{shown}: {names[index - 1]}" if names and len(names) == n else f"{shown} image-{index:09d}"
            yield name, bytes(txn.get(image_key(index)) or b"")


def lmdb_prints(root: Path, workers: int = 0, desc: str | None = None, windows: bool = False) -> Prints:
    """Prints of every image of every LMDB at or below ``root`` (``windows``: ``prints_of``'s)."""
    out = Prints()
    for path in find_lmdbs(root):
        with open_lmdb(path).begin() as txn:
            n = num_samples(txn, path)
        out.extend(prints_of(lmdb_images(path), workers, total=n, desc=desc or f"print {path.name}", windows=windows))
    return out


def is_copy(overlap: Overlap) -> bool:
    return overlap.kind in ("same_file", "copy")


def _edited_matches(train: Prints, bench: Prints, chunk: int = 512) -> dict[int, tuple[int, float]]:
    """Per decoded training image (its row in ``decoded``) matching a view of a benchmark image at
    ``EDIT_SIMILARITY`` by its whole or unpadded view: (that benchmark image's row in ``decoded``, similarity),
    the best one. Views are compared only within the aspect tolerance (an index sorted by aspect) and grey level."""
    rows = np.flatnonzero(train.view_rank < TRAIN_VIEWS)
    rows = rows[np.argsort(train.view_aspect[rows], kind="stable")]
    order = np.argsort(bench.view_aspect, kind="stable")
    aspects = bench.view_aspect[order]
    best: dict[int, tuple[int, float]] = {}
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        lo, hi = np.searchsorted(aspects, [train.view_aspect[part[0]] - _EDIT_MAX_LOG_ASPECT,
                                           train.view_aspect[part[-1]] + _EDIT_MAX_LOG_ASPECT])
        cols = order[lo:hi]
        if not len(cols):
            continue
        sim = train.views[part] @ bench.views[cols].T
        far = ((np.abs(train.view_aspect[part, None] - bench.view_aspect[None, cols]) >= _EDIT_MAX_LOG_ASPECT)
               | (np.abs(train.view_grey[part, None] - bench.view_grey[None, cols]) >= _EDIT_MAX_GREY_DIFF))
        sim[far] = -1.0
        top = sim.argmax(1)
        for r in np.flatnonzero(sim[np.arange(len(part)), top] >= EDIT_SIMILARITY):
            i, score = int(train.view_of[part[r]]), float(sim[r, top[r]])
            if score > best.get(i, (0, -1.0))[1]:
                best[i] = (int(bench.view_of[cols[top[r]]]), score)
    return best


def find_overlaps(train: Prints, bench: Prints, near: bool = True, chunk: int = 2048) -> list[Overlap]:
    """Every training image that is a copy of a benchmark image (same sha256, or a thumbnail match at
    ``COPY_SIMILARITY``) and, with ``near``, every edited copy (a view match at ``EDIT_SIMILARITY``) and
    near-duplicate (``NEAR_SIMILARITY``); one entry per training image, its closest benchmark image."""
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
    if near:  # an edited copy is closer to its original than a near-duplicate is: it takes the near one's place
        for row, (j, score) in _edited_matches(train, bench).items():
            i = train.decoded[row]
            if i not in found or found[i].kind == "near":
                found[i] = Overlap(train.names[i], bench.names[bench.decoded[j]], "edited", round(score, 4), i)
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
            bench.extend(lmdb_prints(root, workers, desc=f"print {root.name}", windows=True))
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

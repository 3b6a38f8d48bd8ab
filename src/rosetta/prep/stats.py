"""Dataset statistics from the labels alone (no image is decoded): counts, label-length histogram and
character frequencies, as a dict for ``rosetta data stats --json`` and as DVC plot files.
"""
from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Iterable

from rosetta.data.lmdb_io import find_lmdbs, iter_labels, lmdb_name
from rosetta_infer.charset import Charset


def label_stats(labels: Iterable[str], charset: Charset) -> dict:
    """Counts over raw labels: how many, how many the charset keeps and how many lie fully inside it,
    the length histogram and every character's frequency (case kept)."""
    lengths: Counter[int] = Counter()
    chars: Counter[str] = Counter()
    samples = trainable = in_charset = 0
    for label in labels:
        samples += 1
        lengths[len(label)] += 1
        chars.update(label)
        trainable += charset.normalize(label) is not None
        in_charset += charset.conforms(label)
    return _finish(samples, trainable, in_charset, lengths, chars)


def _finish(samples: int, trainable: int, in_charset: int, lengths: Counter, chars: Counter) -> dict:
    total_len = sum(k * v for k, v in lengths.items())
    return {
        "samples": samples,
        "trainable": trainable,
        "in_charset": in_charset,
        "mean_label_length": round(total_len / samples, 3) if samples else 0.0,
        "max_label_length": max(lengths) if lengths else 0,
        "label_length": {str(k): lengths[k] for k in sorted(lengths)},
        "characters": dict(sorted(chars.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


def merge_stats(parts: Iterable[dict]) -> dict:
    """The statistics of several label sets taken together."""
    samples = trainable = in_charset = 0
    lengths: Counter[int] = Counter()
    chars: Counter[str] = Counter()
    for part in parts:
        samples += part["samples"]
        trainable += part["trainable"]
        in_charset += part["in_charset"]
        lengths.update({int(k): v for k, v in part["label_length"].items()})
        chars.update(part["characters"])
    return _finish(samples, trainable, in_charset, lengths, chars)


def lmdb_stats(root: str | Path, charset: Charset) -> dict:
    """Statistics of every LMDB at or below ``root`` (``sets``, by name) and of all of them (``total``)."""
    root = Path(root)
    sets = {lmdb_name(p, root): label_stats((label for _, label in iter_labels(p)), charset) for p in find_lmdbs(root)}
    return {"root": str(root), "sets": sets, "total": merge_stats(sets.values())}


def summary(stats: dict) -> dict:
    """The scalar part of ``label_stats``, for a DVC metrics file."""
    return {k: v for k, v in stats.items() if not isinstance(v, dict)}


def write_plots(stats: dict, plots_dir: str | Path, name: str) -> list[Path]:
    """``plots_dir/label_length/<name>.csv`` (length,count) and ``plots_dir/characters/<name>.csv``
    (character,count) for ``dvc plots``."""
    plots_dir = Path(plots_dir)
    written = []
    for sub, header, items in (("label_length", ("length", "count"), stats["label_length"].items()),
                               ("characters", ("character", "count"), stats["characters"].items())):
        path = plots_dir / sub / f"{name}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(items)
        written.append(path)
    return written

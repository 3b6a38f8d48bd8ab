"""Which training sources hold data: every source of ``data.sources``, but the ``real`` one only where its
converted folder (``DataLayout.real_train``, written by ``rosetta.prep.real_train``) holds a training split; a
source left out is said in one line, and training goes on with the others.
"""
from __future__ import annotations

import json
from pathlib import Path

from rosetta.config import Config
from rosetta.errors import RosettaError
from rosetta.layout import DataLayout

REAL_TRAIN_KEY = "real_train"  # the setting (data.real_train) a real training manifest names its sets by
MANIFEST = "manifest.json"  # beside the converted real training sets: the fingerprint they were converted from


def describe_real_train(manifest: dict) -> str:
    """One line: the real training sets found, or that none was and training uses the other sources."""
    setting, sets = manifest[REAL_TRAIN_KEY], manifest["sets"]
    if not setting:
        return "no real training set: data.real_train is empty; training on the other sources alone"
    if not sets:
        return (f"no real training set found at {setting} (data.real_train); training on the other sources "
                "alone")
    return f"real training sets at {setting}: {', '.join(sets)}"


def real_train_note(folder: Path) -> str | None:
    """Why the ``real`` source adds nothing, in one line, or None when it holds a training split."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise RosettaError(f"{folder}: the real training sets are not converted; run `dvc repro convert_real_train` "
                           "(or leave real out of data.sources)")

    manifest = json.loads(manifest_path.read_text())
    if not (folder / "train").is_dir():
        return describe_real_train(manifest) if not manifest["sets"] else (
            f"no sample of the real training sets at {manifest[REAL_TRAIN_KEY]} survived conversion; training on the "
            "other sources alone")
    return None


def available_sources(cfg: Config) -> tuple[list[str], list[str]]:
    """The sources of ``data.sources`` that hold training data, and one line for each that holds none (the
    ``real`` source where ``data.real_train`` is missing or empty: training goes on with the others)."""
    layout = DataLayout.from_config(cfg)
    sources, notes = [], []
    for source in cfg.data.sources:
        note = real_train_note(layout.real_train) if source == "real" else None
        if note:
            notes.append(note)
        else:
            sources.append(source)
    if not sources:
        raise RosettaError(f"no training data in data.sources {cfg.data.sources}: {'; '.join(notes)}; add a "
                           "source (e.g. synth)")
    return sources, notes

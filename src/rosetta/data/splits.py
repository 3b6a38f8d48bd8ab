"""Which LMDBs a training run reads: every source's training split, concatenated, with the share of each
batch each source fills and the step it joins at, and the validation splits scored during training.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Subset

from rosetta.config import Config
from rosetta.data.dataset import LmdbDataset
from rosetta.data.loader import BatchPlan, Stream, split_batch
from rosetta.data.sources import available_sources
from rosetta.errors import RosettaError
from rosetta.layout import DataLayout
from rosetta_infer.charset import Charset


@dataclass
class TrainingData:
    """The concatenated training splits, how each batch draws from them, and what the log should say."""

    dataset: ConcatDataset
    streams: list[Stream]
    augmented: list[range]  # index ranges of the dataset whose samples get RecAug
    notes: list[str]


def training_sets(cfg: Config, charset: Charset, world_size: int = 1) -> TrainingData:
    """The training split of every available source, concatenated, and how each batch draws from it.

    With ``train.batch_ratio`` each source is a stream filling its share of every batch (DTRB's
    ``--batch_ratio``) from its ``train.source_start_step`` on; with ``{}`` one stream samples the union.
    """
    layout = DataLayout.from_config(cfg)
    t = cfg.train
    sources, notes = available_sources(cfg)
    parts = {source: LmdbDataset(layout.lmdb(source) / "train", charset) for source in sources}
    for source, ds in parts.items():
        if len(ds) == 0:
            raise RosettaError(f"{layout.lmdb(source) / 'train'}: no sample survives the charset's label rules; "
                               "check charset and the data")
        missing = ds.missing.note(f"training set {source}", len(ds) + ds.num_rejected, charset, cfg.charset.dict_path)
        notes += [missing] if missing else []
    batch = t.batch_size * world_size
    if t.batch_ratio:
        groups = {s: ([s], t.batch_ratio.get(s, 1.0), t.source_start_step.get(s, 0)) for s in sources}
    else:
        groups = {"+".join(parts): (list(parts), 1.0, 0)}
    shares = split_batch(batch, [weight for _, weight, _ in groups.values()])
    augment = t.augment if isinstance(t.augment, list) else (cfg.data.sources if t.augment else [])
    datasets, streams, augmented, offset = [], [], [], 0
    for (name, (members, _, start)), per_batch in zip(groups.items(), shares):
        for source in members:
            if source in augment:
                augmented.append(range(offset, offset + len(parts[source])))
            datasets.append(parts[source])
            offset += len(parts[source])
        size = sum(len(parts[s]) for s in members)
        streams.append(Stream(name, offset - size, size, per_batch, start))
    return TrainingData(ConcatDataset(datasets), streams, augmented, notes)


@dataclass
class TrainingPlan:
    """What a run trains on and in what order: the data, the batch plan, and how many steps it takes."""

    data: TrainingData
    plan: BatchPlan
    steps_per_epoch: int
    total_steps: int


def training_plan(cfg: Config, charset: Charset, world_size: int = 1) -> TrainingPlan:
    """The training sets and their batch plan, checked before any process trains: a source too small for its
    share of a batch, or one that would join after the last step (``train.source_start_step``), ends in one
    sentence here, not under a traceback of every rank."""
    data = training_sets(cfg, charset, world_size)
    plan = BatchPlan(data.streams, cfg.seed, cfg.train.shuffle, cfg.train.curriculum_steps)
    steps_per_epoch = max(1, sum(s.size for s in data.streams) // plan.global_batch)
    total = cfg.train.max_steps if cfg.train.max_steps > 0 else cfg.train.epochs * steps_per_epoch
    late = [s for s in data.streams if s.per_batch and s.start_step >= total]
    if late:
        s = late[0]
        raise RosettaError(f"train.source_start_step: {s.name} joins the batches at step {s.start_step}, but the run "
                           f"ends at step {total}, so none of its {s.size} samples would be trained on; set "
                           f"train.source_start_step.{s.name} below {total} (e.g. 0), or train more steps")
    return TrainingPlan(data, plan, steps_per_epoch, total)


@dataclass
class ValidationSplit:
    """One source's validation split (at most ``train.val_samples``, evenly spaced) and its labels."""

    source: str
    dataset: torch.utils.data.Dataset
    labels: list[str]


def validation_sets(cfg: Config, charset: Charset) -> tuple[list[ValidationSplit], str]:
    """Each available source's validation split, and the name of the one ``best.pt`` is chosen on: the real
    training sets' held-out split where there is one (model selection on real text), else all together
    (``all``, the concatenation of the splits)."""
    layout = DataLayout.from_config(cfg)
    sources, _ = available_sources(cfg)
    splits = []
    for source in sources:
        root = layout.lmdb(source) / "val"
        if not root.is_dir():
            continue
        ds = LmdbDataset(root, charset)
        dataset, labels = ds, ds.labels
        if 0 < cfg.train.val_samples < len(labels):
            keep = np.linspace(0, len(labels) - 1, cfg.train.val_samples).round().astype(int).tolist()
            dataset, labels = Subset(ds, keep), [labels[i] for i in keep]
        splits.append(ValidationSplit(source, dataset, labels))
    if not splits:
        raise RosettaError(f"no validation split under {layout.root} for data.sources {cfg.data.sources}; run the "
                           "convert stage, or add a source with a val split")
    names = [s.source for s in splits]
    return splits, "real" if "real" in names else "all"


def selected_split(cfg: Config, charset: Charset) -> ValidationSplit:
    """The validation split best.pt is chosen on (``validation_sets``' choice), as one split: what the evaluate stage
    calibrates confidence on, no benchmark set, so a threshold read from it is not fitted to the test."""
    splits, select_on = validation_sets(cfg, charset)
    return concat_splits(splits) if select_on == "all" else next(s for s in splits if s.source == select_on)


def concat_splits(splits: list[ValidationSplit]) -> ValidationSplit:
    """The splits scored as one (``all``)."""
    return ValidationSplit("all", ConcatDataset([s.dataset for s in splits]), [x for s in splits for x in s.labels])

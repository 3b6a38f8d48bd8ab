"""Which LMDBs a training run reads: every source's training split, concatenated, with the share of each
batch it fills, and the validation splits scored during training.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Subset

from rosetta.charset import Charset
from rosetta.config import Config, DataLayout
from rosetta.data.dataset import LmdbDataset
from rosetta.data.loader import Stream, split_batch
from rosetta.errors import RosettaError


def training_sets(cfg: Config, charset: Charset, world_size: int = 1) -> tuple[ConcatDataset, list[Stream]]:
    """The training split of every source, concatenated, and how each batch draws from it.

    With both mjsynth and synthtext in ``data.sources`` a batch takes ``train.mj_st_ratio`` shares from
    MJSynth and from the rest (SynthText and any other source); otherwise it samples the union.
    """
    layout = DataLayout.from_config(cfg)
    parts = {source: LmdbDataset(layout.lmdb(source) / "train", charset) for source in cfg.data.sources}
    for source, ds in parts.items():
        if len(ds) == 0:
            raise RosettaError(f"{layout.lmdb(source) / 'train'}: no sample survives the charset's label rules; "
                               "check charset and the data")
    mixed = {"mjsynth", "synthtext"} <= parts.keys()
    groups = ({"mjsynth": ["mjsynth"], "synthtext": [s for s in parts if s != "mjsynth"]} if mixed
              else {"+".join(parts): list(parts)})
    batch = cfg.train.batch_size * world_size
    shares = split_batch(batch, cfg.train.mj_st_ratio if mixed else [1.0])
    datasets, streams, offset = [], [], 0
    for (name, sources), per_batch in zip(groups.items(), shares):
        size = sum(len(parts[s]) for s in sources)
        datasets += [parts[s] for s in sources]
        streams.append(Stream(name, offset, size, per_batch))
        offset += size
    return ConcatDataset(datasets), streams


def validation_set(cfg: Config, charset: Charset) -> tuple[torch.utils.data.Dataset, list[str]]:
    """Every source's validation split (at most ``train.val_samples``, evenly spaced) and its labels."""
    layout = DataLayout.from_config(cfg)
    roots = layout.validation_splits(cfg.data.sources)
    if not roots:
        raise RosettaError(f"no validation split under {layout.root / 'lmdb'} for data.sources "
                           f"{cfg.data.sources}; run the convert stage, or add a source with a val split")
    sets = [LmdbDataset(r, charset) for r in roots]
    labels = [label for ds in sets for label in ds.labels]
    dataset: torch.utils.data.Dataset = ConcatDataset(sets)
    if 0 < cfg.train.val_samples < len(labels):
        keep = np.linspace(0, len(labels) - 1, cfg.train.val_samples).round().astype(int).tolist()
        dataset, labels = Subset(dataset, keep), [labels[i] for i in keep]
    return dataset, labels

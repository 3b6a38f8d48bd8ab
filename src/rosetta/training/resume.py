"""What makes a training run resumable: the RNG states (torch, numpy, python, CUDA) as ``weights_only``
checkpoint data, and the fingerprint a checkpoint must share with the current params to be resumed.
"""
from __future__ import annotations

import hashlib
import random

import numpy as np
import torch

from rosetta.config import Config, result_fields
from rosetta.data.lmdb_io import find_lmdbs
from rosetta.data.loader import Stream
from rosetta.data.sources import available_sources
from rosetta.layout import DataLayout


def rng_state() -> dict:
    """Torch, numpy and python RNG states as tensors and primitives (``weights_only`` loadable)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "python": {"version": version, "state": list(py_state), "gauss_next": gauss_next}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def training_data_digest(cfg: Config) -> str:
    """sha256 over every training LMDB's data.mdb: new words or pixels under the same sizes (a re-rendered
    data set) are another run, not this one's continuation. Reads the files once per start (seconds a GB)."""
    h = hashlib.sha256()
    layout = DataLayout.from_config(cfg)
    for source in available_sources(cfg)[0]:
        for folder in find_lmdbs(layout.lmdb(source) / "train"):
            with open(folder / "data.mdb", "rb") as f:
                h.update(hashlib.file_digest(f, "sha256").digest())
    return h.hexdigest()


def fingerprint(cfg: Config, streams: list[Stream], world_size: int, init_sha256: str | None = None) -> dict:
    """What a checkpoint must share with the current params and data to be resumed (with ``train.init_from``,
    the starting weights' sha256 too): a checkpoint written under other values of operational settings
    (``rosetta.config.OPERATIONAL``) still resumes."""
    out = {"seed": cfg.seed, "charset": result_fields(cfg.charset), "model": result_fields(cfg.model),
           "train": result_fields(cfg.train),
           "world_size": world_size, "data": [[s.name, s.size] for s in streams],
           "data_sha256": training_data_digest(cfg)}
    if init_sha256:
        out["init_sha256"] = init_sha256
    return out

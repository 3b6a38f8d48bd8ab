"""Checkpoint files: written atomically, loadable with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors and primitives: ``model`` (state dict), ``config`` (the
params as a dict), ``charset`` (``Charset.to_dict()``) and, for training checkpoints, optimizer,
scheduler, scaler, step, RNG states and the data position. Inference needs only the first three.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from rosetta.charset import Charset
from rosetta.config import Config, config_from_dict
from rosetta.errors import RosettaError

FORMAT = "rosetta-checkpoint-v1"


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write to a temporary file in the same folder, fsync, then rename: never a half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise RosettaError(f"{path}: checkpoint not found; train a model first (`rosetta train` or `dvc repro`)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise RosettaError(f"{path}: not a readable checkpoint ({type(exc).__name__}); "
                           "it may be truncated: delete it and resume from an earlier one") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise RosettaError(f"{path}: not a rosetta checkpoint (no '{FORMAT}' marker)")
    return ckpt


def load_for_inference(path: str | Path, map_location: str | torch.device = "cpu"):
    """(model in eval mode, charset, config) from a checkpoint file."""
    from rosetta.modeling import build_model

    ckpt = load_checkpoint(path, map_location)
    cfg: Config = config_from_dict(ckpt["config"])
    charset = Charset.from_dict(ckpt["charset"])
    model = build_model(cfg.model, charset.num_classes)
    model.load_state_dict(ckpt["model"])
    model.to(map_location).eval()
    return model, charset, cfg

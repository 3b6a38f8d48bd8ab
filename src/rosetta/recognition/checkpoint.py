"""PyTorch model files: written atomically, read with ``torch.load(weights_only=True)``, and loaded for inference
without the training schema.

A checkpoint is a plain dict of tensors and primitives. What inference reads, and all it reads: ``model`` (the
state dict), ``architecture`` (the model section: backbone mapping, neck, head, image height and width),
``charset`` (``Charset.to_dict()``) and ``preprocess`` (the inference contract, ``preprocess_spec``): the
entries ``inference_entries`` writes. Training adds its own beside them: the params it ran under (``config``),
step, validation accuracy, the MLflow run and, in ``last.pt``, optimizer, scheduler, scaler, RNG states and the
data position. A checkpoint written before ``architecture`` existed keeps its model section inside ``config``
and loads from there; either way no other setting is read, so renaming one never orphans a model.
"""
from __future__ import annotations

import dataclasses
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rosetta.config import ModelConfig
from rosetta.errors import RosettaError, no_room
from rosetta.fsutil import disk_full
from rosetta.layout import run_marker
from rosetta.params import ConfigError, build
from rosetta_infer.charset import Charset
from rosetta_infer.preprocess import contract_size, preprocess_spec

FORMAT = "rosetta-checkpoint-v1"
# The model section's keys that define the network and its input; the rest (head_l2_decay) is training's.
ARCHITECTURE_KEYS = ("backbone", "neck", "head", "image_height", "image_width")


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write to a temporary file in the same folder, fsync, then rename: never a half file. The checkpoint is
    serialized in memory first, so a disk that fills up is an OSError with its errno (torch's writer would say
    only that a write failed) and ends in one sentence saying how much room it needs; the file it would have
    replaced stays, so a training resumes from it once there is room."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **payload}, buffer)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buffer.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if no_room(exc):
            raise disk_full(path.parent, buffer.getbuffer().nbytes, f"the checkpoint {path.name}") from None
        raise
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
        # Deleting is advice for a training's own checkpoint only, never for a file a user pointed at.
        ours = any(run_marker(run).is_file() for run in (path.parent, path.parent.parent))
        fix = ("it may be truncated: delete it and resume from an earlier one" if ours
               else "give a checkpoint (.pt) a rosetta training wrote, or an exported .onnx file")
        raise RosettaError(f"{path}: not a readable checkpoint ({type(exc).__name__}); {fix}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise RosettaError(f"{path}: not a rosetta checkpoint (no '{FORMAT}' marker)")
    return ckpt


def inference_entries(model: torch.nn.Module, architecture: ModelConfig, charset: Charset) -> dict[str, Any]:
    """The checkpoint entries inference needs: weights, architecture, charset and the preprocessing."""
    arch = dataclasses.asdict(architecture)
    return {"model": model.state_dict(), "architecture": {k: arch[k] for k in ARCHITECTURE_KEYS},
            "charset": charset.to_dict(),
            "preprocess": preprocess_spec(architecture.image_height, architecture.image_width)}


def checkpoint_architecture(ckpt: dict[str, Any], source: str) -> ModelConfig:
    """The model section ``ckpt`` was built from: its ``architecture``, or for a checkpoint written before that
    entry, the architecture keys of the model section in the params it recorded."""
    arch = ckpt.get("architecture")
    if arch is None:
        arch = {k: v for k, v in ckpt.get("config", {}).get("model", {}).items() if k in ARCHITECTURE_KEYS}
    try:
        return build(ModelConfig, dict(arch), "architecture")
    except ConfigError as exc:
        raise RosettaError(f"{source}: the model's architecture cannot be read ({exc}); it was written by another "
                           "version of rosetta: train or export it again") from None


@dataclass(frozen=True)
class InferenceModel:
    model: torch.nn.Module  # in eval mode
    charset: Charset
    architecture: ModelConfig
    run_id: str | None  # the MLflow training run the file names, if any


def load_for_inference(path: str | Path, map_location: str | torch.device = "cpu") -> InferenceModel:
    """The model of a checkpoint file, ready to read images under the inference contract it was trained with."""
    from rosetta.modeling import build_model

    ckpt = load_checkpoint(path, map_location)
    architecture = checkpoint_architecture(ckpt, str(path))
    if "preprocess" in ckpt:
        size = contract_size(ckpt["preprocess"], str(path))
        if size != (architecture.image_height, architecture.image_width):
            raise RosettaError(f"{path}: its preprocessing ({size[0]}x{size[1]}) and architecture "
                               f"({architecture.image_height}x{architecture.image_width}) disagree; train it again")
    charset = Charset.from_dict(ckpt["charset"])
    model = build_model(architecture, charset.num_classes)
    model.load_state_dict(ckpt["model"])
    model.to(map_location).eval()
    return InferenceModel(model, charset, architecture, ckpt.get("run_id"))

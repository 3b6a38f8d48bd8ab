"""A model file of either kind, a PyTorch checkpoint (``.pt``) or an exported ``.onnx``: the ``Recognizer`` that
reads with it (the one backend switch: evaluation, prediction and the benchmarks all load through here) and the
MLflow training run it names; and where a model given as a registered version (``models:/...``) is read from.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from rosetta.config import Config

from rosetta_infer.recognizer import Recognizer, torch_recognizer


def is_onnx(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".onnx"


def load_recognizer(path: str | Path, device: str = "cpu", batch_size: int = 64, threads: int = 0,
                    confidence: str = "mean") -> Recognizer:
    """A ``Recognizer`` for a PyTorch checkpoint (``.pt``/``.pth``) or an exported ``.onnx`` file (ONNX Runtime),
    running on ``threads`` CPU threads (0 = all cores; for PyTorch the process's setting), its confidences by the
    rule ``confidence``."""
    if is_onnx(path):
        from rosetta_infer.onnx_runtime import load_onnx_recognizer  # ONNX Runtime only: no torch needed

        return load_onnx_recognizer(path, batch_size=batch_size, threads=threads, confidence=confidence)
    import torch

    from rosetta.recognition.checkpoint import load_for_inference

    torch.set_num_threads(threads or len(os.sched_getaffinity(0)))
    loaded = load_for_inference(path, device)
    return torch_recognizer(loaded.model, loaded.charset, loaded.architecture.image_height,
                            loaded.architecture.image_width, batch_size, device, confidence)


def training_run_of(model: str | Path) -> str | None:
    """The MLflow training run recorded in a checkpoint (``run_id``) or an exported ONNX file (its
    ``rosetta.model`` metadata); None when the file names none."""
    if is_onnx(model):
        from rosetta_infer.onnx_runtime import onnx_model_info

        return onnx_model_info(Path(model)).get("run_id")
    from rosetta.recognition.checkpoint import load_checkpoint

    return load_checkpoint(model).get("run_id")


@contextmanager
def model_file(cfg: Config, model: str | Path) -> Iterator[Path]:
    """The file to read ``model`` from: the path itself, or for a ``models:/`` URI of the configured registry the
    version's ONNX file, downloaded into a temporary folder (removed on exit) and checked against the digests the
    registry recorded (``rosetta.registry.refs.fetch_verified``)."""
    from rosetta.registry.refs import fetch_verified, is_model_uri

    if not is_model_uri(str(model)):
        yield Path(model)
        return
    with tempfile.TemporaryDirectory(prefix="rosetta-model-") as tmp:
        yield fetch_verified(cfg, str(model), Path(tmp), "--model").onnx

"""Validation during training: the model reads each source's validation split (``rosetta.data.splits``) under
the inference contract, every ``train.eval_every`` steps; best.pt is chosen on one of them or on all together.
"""
from __future__ import annotations

import torch

from rosetta.evaluation.metrics import recognition_metrics
from rosetta.recognition.dataset import predict_dataset
from rosetta_infer.charset import Charset
from rosetta_infer.recognizer import torch_recognizer


def score_split(model: torch.nn.Module, dataset, labels: list[str], charset: Charset, device, batch_size: int,
                image_height: int, image_width: int) -> dict:
    """Accuracy and norm_edit_dis of ``model`` on one split; the model is back in training mode afterwards."""
    preds = predict_dataset(torch_recognizer(model, charset, image_height, image_width, batch_size, device), dataset)
    model.train()
    m = recognition_metrics([p for p, _ in preds], labels)
    return {"accuracy": m.accuracy, "norm_edit_dis": m.norm_edit_dis}


def score_splits(model: torch.nn.Module, splits, select_on: str, charset: Charset, device, batch_size: int,
                 image_height: int, image_width: int) -> dict[str, dict]:
    """Metrics of each validation split by source, and of ``all`` (the splits together) where best.pt is
    chosen on them all; each split is read once."""
    out, counts = {}, {}
    for split in splits:
        out[split.source] = score_split(model, split.dataset, split.labels, charset, device, batch_size,
                                        image_height, image_width)
        counts[split.source] = len(split.labels)
    if select_on == "all":
        n = sum(counts.values())
        out["all"] = {k: sum(out[s][k] * counts[s] for s in counts) / n for k in ("accuracy", "norm_edit_dis")}
    return out

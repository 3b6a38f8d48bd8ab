"""What a training run leaves besides its checkpoints: the DVC metrics and plots (``train_metrics.json``,
``plots/*.csv``), the curve, and its MLflow run (params, tags and description at the start; the best model and
these files at the end). Only rank 0 writes them.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import yaml

from rosetta.config import Config, result_params
from rosetta.evaluation.plots import training_curve
from rosetta.fsutil import write_json
from rosetta.layout import RunLayout
from rosetta.recognition.checkpoint import load_for_inference
from rosetta.tracking.journal import JournaledTracker
from rosetta.tracking.provenance import provenance_tags
from rosetta.tracking.runs import TAG_BACKBONE, TAG_CHANGED, backbone_label, changed_params, run_description
from rosetta.tracking.store import TAG_NOTE, Tracker


def write_reports(runs: RunLayout, state, sources: list[str], select_on: str, device: torch.device) -> None:
    """``state``'s loss and validation rows as CSV plots, its summary as ``train_metrics.json``, and the curve."""
    _write_csv(runs.loss_csv, ["step", "loss", "lr", "images_per_s"], state.loss_rows)
    _write_csv(runs.val_csv, ["step", "accuracy", "norm_edit_dis", *(f"{s}_accuracy" for s in sources)],
               state.val_rows)
    last_loss = next((r[1] for r in reversed(state.loss_rows) if math.isfinite(r[1])), None)
    ips = [r[3] for r in state.loss_rows]
    metrics = {"steps": state.step, "best_val_accuracy": max(state.best_val_accuracy, 0.0),
               "selected_on": select_on, "best_step": state.best_step,
               **{f"best_val_{s}_accuracy": v for s, v in state.best_val_by_source.items()},
               "final_val_accuracy": state.val_rows[-1][1] if state.val_rows else 0.0,
               "final_loss": last_loss, "skipped_steps": state.skipped_steps,
               "images_per_s": float(np.median(ips)) if ips else 0.0, "train_time_s": round(state.elapsed_s, 1)}
    if device.type == "cuda":  # since this process started: a resumed run reports its last segment
        metrics["peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    write_json(runs.train_metrics, metrics)
    training_curve(state.loss_rows, state.val_rows, runs.curve_png)


def _write_csv(path: Path, header: list[str], rows: list[list[float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(header)] + [",".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")


def log_checkpoint_model(tracker: Tracker, checkpoint: Path) -> None:
    """The model of an inference checkpoint in MLflow's pytorch flavour, with a batch of two blank images (the
    journal's ``ModelLogger``: tracking loads no model itself)."""
    best = load_for_inference(checkpoint)
    example = np.zeros((2, 3, best.architecture.image_height, best.architecture.image_width), np.float32)
    tracker.log_pytorch_model(best.model, example)


def start_run(cfg: Config, runs: RunLayout) -> JournaledTracker:
    """A new MLflow training run: named by what it is, tagged with its provenance and changed params, its
    result params logged and every param in ``config/params.yaml``."""
    tags = provenance_tags()
    changed = changed_params(cfg)
    tags.update({TAG_BACKBONE: backbone_label(cfg), TAG_NOTE: run_description(cfg, tags),
                 TAG_CHANGED: ", ".join(f"{k}={v}" for k, v in changed.items()) or "none"})
    tracker = JournaledTracker.start(cfg, runs.train, tags, log_checkpoint_model)
    tracker.log_params(result_params(cfg))
    tracker.log_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), "config/params.yaml")
    return tracker


def log_final(tracker: JournaledTracker, cfg: Config, runs: RunLayout, state) -> None:
    """The run's last metrics, best.pt, the metrics and plots files and (``train.log_model``) the best model in
    MLflow's pytorch flavour."""
    tracker.log_metrics({"best_val_accuracy": max(state.best_val_accuracy, 0.0),
                         **{f"best_val/{s}_accuracy": v for s, v in state.best_val_by_source.items()},
                         "skipped_steps": state.skipped_steps}, state.step)
    tracker.log_artifact(runs.best_checkpoint, "checkpoints")
    for path in (runs.train_metrics, runs.curve_png):
        tracker.log_artifact(path)
    for path in (runs.loss_csv, runs.val_csv):
        tracker.log_artifact(path, "plots")
    if cfg.train.log_model:
        tracker.log_model(runs.best_checkpoint)

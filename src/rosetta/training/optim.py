"""The optimizer (PaddleOCR's Adam with L2 on the head, or AdamW), the learning-rate schedule and one
optimization step; ``build_trainable`` assembles them with the model, for training and for the benchmarks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from rosetta.config import Config
from rosetta.modeling import RecModel, build_model, param_groups
from rosetta.modeling.losses.rec_ctc_loss import CTCLoss
from rosetta.training.runtime import autocast_context


def build_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    t = cfg.train
    # foreach: one multi-tensor operation per update term instead of one per parameter tensor. PyTorch does not
    # choose it by itself on the CPU; it is faster there with bit-identical results (tests/test_optim.py), where
    # ``fused``, faster still, rounds differently (docs/performance.md).
    if t.optimizer == "adam":  # coupled L2 on the head only, as PaddleOCR
        return torch.optim.Adam(param_groups(model, cfg.model.head_l2_decay), lr=t.lr, betas=tuple(t.betas),
                                foreach=True)
    return torch.optim.AdamW(model.parameters(), lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay,
                             foreach=True)


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of ``train.lr`` at ``step``: linear warmup, then constant or cosine to 0."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def build_scheduler(cfg: Config, optimizer: torch.optim.Optimizer, total_steps: int):
    t = cfg.train
    if t.scheduler == "onecycle":
        pct = t.warmup_steps / total_steps if t.warmup_steps else 0.3
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=t.lr, total_steps=total_steps,
                                                   pct_start=min(max(pct, 1e-3), 0.99))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total_steps, t.warmup_steps, t.scheduler))


class StepRunner:
    """One optimization step: forward under autocast, CTC loss, a step only when the loss is finite on
    every rank (so DDP's ranks always agree), optional clipping, GradScaler for fp16."""

    def __init__(self, model, optimizer, scaler, device, precision: str, grad_clip: float, world_size: int = 1,
                 channels_last: bool = False):
        self.model, self.optimizer, self.scaler = model, optimizer, scaler
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.device, self.precision, self.grad_clip, self.world_size = device, precision, grad_clip, world_size
        self.criterion = CTCLoss(blank=0)

    def __call__(self, images, targets, lengths) -> float | None:
        """The loss, or None when it was not finite and the step was skipped."""
        images = images.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        targets, lengths = targets.to(self.device), lengths.to(self.device)
        with autocast_context(self.precision, self.device):
            logits = self.model(images)
        loss = self.criterion(logits, targets, lengths)
        finite = torch.isfinite(loss.detach()).float()
        if self.world_size > 1:
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        if not finite.item():
            self.optimizer.zero_grad(set_to_none=True)
            return None
        self.scaler.scale(loss).backward()
        if self.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())


@dataclass
class Trainable:
    model: RecModel  # on the device, in its memory format; what checkpoints save
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    step: StepRunner  # runs the model wrapped for DDP (world_size > 1) and compiled (train.compile)


def build_trainable(cfg: Config, num_classes: int, device: torch.device, world_size: int = 1,
                    init: Callable[[torch.nn.Module], None] | None = None) -> Trainable:
    """The model, its optimizer, the fp16 GradScaler and the step that trains them, as ``cfg`` asks; ``init``
    loads starting weights into the model before the optimizer and DDP see it."""
    t = cfg.train
    model = build_model(cfg.model, num_classes).to(device)
    if init is not None:
        init(model)
    if t.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg, model)
    scaler = torch.amp.GradScaler(device.type, enabled=t.precision == "fp16")
    runner_model = model
    if world_size > 1:
        ids = [device.index] if device.type == "cuda" else None
        runner_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if t.compile:
        runner_model = torch.compile(runner_model)
    step = StepRunner(runner_model, optimizer, scaler, device, t.precision, t.grad_clip, world_size, t.channels_last)
    return Trainable(model, optimizer, scaler, step)

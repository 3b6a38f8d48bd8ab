"""Training: any recipe the params describe (optimizer, schedule, clipping, precision, devices; PaddleOCR's
is ``TrainConfig``'s default and the profiles'), resumable to the batch after any crash, on one device or
several through torchrun (DDP).

Files below ``train.out_dir``: ``best.pt`` (inference checkpoint with the best validation accuracy),
``checkpoints/last.pt`` (the full training state, every ``checkpoint_every`` steps), ``run.json`` (the
MLflow run the evaluate stage continues), ``train_metrics.json`` and ``plots/*.csv`` (DVC metrics and
plots) and ``curve.png``. Only rank 0 writes files and talks to MLflow.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import hashlib
import json
import math
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.data import ConcatDataset, Subset

from rosetta.charset import Charset
from rosetta.checkpoint import load_checkpoint, save_checkpoint
from rosetta.cliutil import add_config_args, config_from_args, run_guarded
from rosetta.config import Config, DataLayout, project_path
from rosetta.data.dataset import LmdbDataset
from rosetta.data.loader import BatchPlan, PlanSampler, RecTrainSet, Stream, split_batch, train_loader
from rosetta.errors import RosettaError
from rosetta.metrics import recognition_metrics
from rosetta.modeling import build_model, param_groups
from rosetta.modeling.losses import CTCLoss

BEST = "best.pt"
LAST = "checkpoints/last.pt"
RUN_JSON = "run.json"
METRICS_JSON = "train_metrics.json"
LOSS_CSV = "plots/train_loss.csv"
VAL_CSV = "plots/val_accuracy.csv"
CURVE_PNG = "curve.png"

# Settings that change how a run is executed or reported, not what it computes: a checkpoint written
# under other values of these still resumes.
_OPERATIONAL = {"num_workers", "threads", "log_every", "eval_every", "checkpoint_every", "max_bad_steps",
                "device", "compile", "out_dir", "log_model", "nproc", "val_samples"}


@dataclass
class TrainResult:
    best_checkpoint: Path
    last_checkpoint: Path
    run_id: str | None
    steps: int
    best_val_accuracy: float


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass
class TrainState:
    """Everything besides model/optimizer/scheduler/scaler weights that a resumed run needs."""

    step: int = 0
    position: dict = field(default_factory=dict)
    best_val_accuracy: float = -1.0
    best_step: int = 0
    skipped_steps: int = 0
    bad_streak: int = 0
    elapsed_s: float = 0.0
    finished: bool = False
    run_id: str | None = None
    loss_rows: list = field(default_factory=list)  # [step, loss, lr, images/s]
    val_rows: list = field(default_factory=list)  # [step, accuracy, norm_edit_dis]


# --------------------------------------------------------------------------- building blocks


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RosettaError(f"train.device is {name!r} but no CUDA device is available; use auto or cpu")
        return torch.device(name if ":" in name else f"cuda:{local_rank}")
    return torch.device(name)


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
    roots = [layout.lmdb(s) / "val" for s in cfg.data.sources if (layout.lmdb(s) / "val").is_dir()]
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


def build_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    t = cfg.train
    if t.optimizer == "adam":  # coupled L2 on the head only, as PaddleOCR
        return torch.optim.Adam(param_groups(model, cfg.model.head_l2_decay), lr=t.lr, betas=tuple(t.betas))
    return torch.optim.AdamW(model.parameters(), lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay)


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


def use_cpu_fast_paths(threads: int = 0) -> None:
    """Settings that make CPU training steps about twice as fast, without changing what they compute:

    - ``threads`` intra-op threads (0 = torch's default);
    - denormals flushed to zero: MobileNetV3's small activations and gradients otherwise fall into
      denormal floats, which cost x86 a third of a step;
    - glibc keeps freed memory: by default it returns every large freed block to the OS and faults the
      pages in again at the next step, a third of the step spent in the kernel.
    """
    if threads > 0:
        torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 1 << 30)
    libc.mallopt(m_trim_threshold, 2**31 - 1)


def autocast_context(precision: str, device: torch.device):
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise RosettaError("train.precision fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    return torch.autocast(device.type, dtype=torch.float16 if precision == "fp16" else torch.bfloat16)


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


def fingerprint(cfg: Config, streams: list[Stream], world_size: int) -> dict:
    """What a checkpoint must share with the current params to be resumed."""
    train = {k: v for k, v in cfg.to_dict()["train"].items() if k not in _OPERATIONAL}
    return {"seed": cfg.seed, "charset": cfg.to_dict()["charset"], "model": cfg.to_dict()["model"], "train": train,
            "world_size": world_size, "data": [[s.name, s.size] for s in streams]}


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(old) | set(new))
    out = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


def weights_digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def validate(model: torch.nn.Module, dataset, labels: list[str], charset: Charset, device, batch_size: int,
             image_height: int, image_width: int) -> dict:
    from rosetta.evaluate import predict_dataset
    from rosetta.inference import torch_probs_fn

    preds = predict_dataset(torch_probs_fn(model, device), dataset, charset, batch_size, image_height, image_width)
    model.train()
    m = recognition_metrics([p for p, _ in preds], labels)
    return {"accuracy": m.accuracy, "norm_edit_dis": m.norm_edit_dis}


def _format_eta(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    return f"{h}h{rem // 60:02d}m" if h else f"{rem // 60}m{rem % 60:02d}s"


def _say(dist: Dist, text: str) -> None:
    if dist.is_main:
        print(text, flush=True)


# --------------------------------------------------------------------------- the run


def run_training(cfg: Config, *, resume: bool = True) -> TrainResult:
    """Train per ``cfg``; with ``resume`` continue from ``<out_dir>/checkpoints/last.pt`` when it was
    written under the same params. ``train.nproc > 1`` relaunches under torchrun and waits for it."""
    if cfg.train.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _launch_torchrun(cfg, resume)
    dist = Dist(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                int(os.environ.get("LOCAL_RANK", "0")))
    device = resolve_device(cfg.train.device, dist.local_rank)
    if dist.world_size > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        return _Trainer(cfg, dist, device).fit(resume)
    finally:
        if dist.world_size > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _launch_torchrun(cfg: Config, resume: bool) -> TrainResult:
    out = project_path(cfg.train.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    params = out / "launch_params.yaml"  # the exact params, overrides included, for every rank
    params.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(cfg.train.nproc),
           "-m", "rosetta", "train", "-c", str(params)] + ([] if resume else ["--no-resume"])
    print(f"launching {cfg.train.nproc} processes: {' '.join(cmd)}", flush=True)
    code = subprocess.run(cmd).returncode
    if code != 0:
        raise RosettaError(f"distributed training with {cfg.train.nproc} processes failed (exit status {code}); "
                           "see the log above")
    return result_from_run_json(out / RUN_JSON)


def result_from_run_json(path: Path) -> TrainResult:
    info = json.loads(Path(path).read_text())
    return TrainResult(Path(info["best_checkpoint"]), Path(info["last_checkpoint"]), info["run_id"],
                       int(info["steps"]), float(info["best_val_accuracy"]))


class _Trainer:
    def __init__(self, cfg: Config, dist: Dist, device: torch.device):
        self.cfg, self.dist, self.device = cfg, dist, device
        self.out = project_path(cfg.train.out_dir)
        self.tracker = None

    # ---- setup

    def fit(self, resume: bool) -> TrainResult:
        cfg, t = self.cfg, self.cfg.train
        autocast_context(t.precision, self.device)  # refuses fp16 off CUDA before anything starts
        if self.device.type == "cpu":
            use_cpu_fast_paths(t.threads)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.charset = Charset.from_config(cfg.charset)
        train_set, streams = training_sets(cfg, self.charset, self.dist.world_size)
        self.val_set, self.val_labels = validation_set(cfg, self.charset) if self.dist.is_main else (None, [])
        self.plan = BatchPlan(streams, cfg.seed, t.shuffle)
        self.steps_per_epoch = max(1, sum(s.size for s in streams) // self.plan.global_batch)
        self.total_steps = t.max_steps if t.max_steps > 0 else t.epochs * self.steps_per_epoch
        self.fingerprint = fingerprint(cfg, streams, self.dist.world_size)

        self.model = build_model(cfg.model, self.charset.num_classes).to(self.device)
        if t.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(cfg, self.model)
        self.scheduler = build_scheduler(cfg, self.optimizer, self.total_steps)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=t.precision == "fp16")
        self.state = self._restore() if resume else TrainState()
        if not self.state.position:
            self.state.position = self.plan.start()
            if self.dist.is_main:
                self._clear_outputs()

        runner_model = self.model
        if self.dist.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            runner_model = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if t.compile:
            runner_model = torch.compile(runner_model)
        self.step_fn = StepRunner(runner_model, self.optimizer, self.scaler, self.device, t.precision, t.grad_clip,
                                  self.dist.world_size, t.channels_last)
        dataset = RecTrainSet(train_set, self.charset, cfg.model.image_height, cfg.model.image_width, t.augment)
        sampler = PlanSampler(self.plan, self.state.position, self.dist.rank, self.dist.world_size)
        self.loader = train_loader(dataset, sampler, t.num_workers, pin_memory=self.device.type == "cuda")

        if self.dist.is_main:
            self._start_tracking()
        try:
            self._loop()
            if self.dist.is_main:
                return self._finish()
            return self._result()
        except BaseException as exc:
            if self.tracker is not None:
                self.tracker.end("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
            raise

    def _restore(self) -> TrainState:
        path = self.out / LAST
        if not path.is_file():
            return TrainState()
        ckpt = load_checkpoint(path, "cpu")  # RNG states must stay on the CPU; load_state_dict moves the rest
        diff = _differences(ckpt.get("fingerprint", {}), self.fingerprint)
        if diff:
            _say(self.dist, f"{path} was written under other params ({'; '.join(diff[:5])}); starting a new run")
            return TrainState()
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        state = TrainState(**ckpt["state"])
        _say(self.dist, f"resuming from {path} at step {state.step}/{self.total_steps}")
        return state

    def _clear_outputs(self) -> None:
        """A new run must not leave an earlier run's best checkpoint or curves behind."""
        for name in (BEST, LAST, RUN_JSON, METRICS_JSON, LOSS_CSV, VAL_CSV, CURVE_PNG):
            (self.out / name).unlink(missing_ok=True)

    def _start_tracking(self) -> None:
        from rosetta.tracking import Tracker, provenance_tags

        if self.state.finished:
            return
        if self.state.run_id:
            try:
                self.tracker = Tracker(self.cfg, self.state.run_id)
                return
            except RosettaError as exc:
                _say(self.dist, f"{exc}; logging to a new MLflow run")
        self.tracker = Tracker(self.cfg, tags=provenance_tags(), params=self.cfg.flat())
        self.state.run_id = self.tracker.run_id
        _say(self.dist, f"MLflow run {self.tracker.run_id} at {self.tracker.uri}")

    # ---- the loop

    def _loop(self) -> None:
        t, state = self.cfg.train, self.state
        if state.step >= self.total_steps:
            return
        _say(self.dist, f"training {self.cfg.model.backbone} for {self.total_steps} steps "
                        f"({self.total_steps / self.steps_per_epoch:.2f} epochs of {self.steps_per_epoch} steps, "
                        f"batch {t.batch_size} x {self.dist.world_size} process(es)) on {self.device}")
        self.model.train()
        window_loss, window_n, window_t0, window_steps = 0.0, 0, time.perf_counter(), 0
        segment_t0 = time.perf_counter()
        elapsed0 = state.elapsed_s
        batches = iter(self.loader)
        while state.step < self.total_steps:
            images, targets, lengths = next(batches)
            loss = self.step_fn(images, targets, lengths)
            self.scheduler.step()
            state.step += 1
            state.position = self.plan.advance(state.position)
            window_steps += 1
            if loss is None:
                state.skipped_steps += 1
                state.bad_streak += 1
                _say(self.dist, f"step {state.step}: non-finite loss, step skipped ({state.bad_streak} in a row)")
                if state.bad_streak >= t.max_bad_steps:
                    raise RosettaError(f"{state.bad_streak} non-finite losses in a row (train.max_bad_steps); the "
                                       "run diverged: lower train.lr, set train.grad_clip, or check the data")
            else:
                state.bad_streak = 0
                window_loss += loss
                window_n += 1
            state.elapsed_s = elapsed0 + time.perf_counter() - segment_t0
            last = state.step == self.total_steps
            if state.step % t.log_every == 0 or last:
                dt = time.perf_counter() - window_t0
                ips = window_steps * self.plan.global_batch / dt
                mean_loss = window_loss / window_n if window_n else float("nan")
                lr = self.optimizer.param_groups[0]["lr"]
                state.loss_rows.append([state.step, mean_loss, lr, ips])
                eta = (self.total_steps - state.step) * dt / window_steps
                _say(self.dist, f"step {state.step}/{self.total_steps} epoch {state.step / self.steps_per_epoch:.2f} "
                                f"loss {mean_loss:.4f} lr {lr:.2e} {ips:.0f} img/s ETA {_format_eta(eta)}")
                if self.tracker:
                    self.tracker.log_metrics({"loss": mean_loss, "lr": lr, "images_per_s": ips}, state.step)
                window_loss, window_n, window_t0, window_steps = 0.0, 0, time.perf_counter(), 0
            if self.dist.is_main and (state.step % t.eval_every == 0 or last):
                self._evaluate()
                window_t0 = time.perf_counter()  # evaluation time is not training throughput
            if self.dist.is_main and (state.step % t.checkpoint_every == 0 or last):
                self._save_last()
        del batches
        if self.dist.world_size > 1:
            # DDP hands rank 0's BatchNorm statistics to the others at each forward, so after the last one
            # they still differ by one local batch: give every rank the statistics rank 0 checkpointed.
            for buffer in self.model.buffers():
                torch.distributed.broadcast(buffer, 0)
            print(f"rank {self.dist.rank}/{self.dist.world_size}: final weights sha256 {weights_digest(self.model)}",
                  flush=True)

    def _evaluate(self) -> None:
        state, cfg = self.state, self.cfg
        m = validate(self.model, self.val_set, self.val_labels, self.charset, self.device, cfg.eval.batch_size,
                     cfg.model.image_height, cfg.model.image_width)
        state.val_rows.append([state.step, m["accuracy"], m["norm_edit_dis"]])
        if m["accuracy"] > state.best_val_accuracy:
            state.best_val_accuracy, state.best_step = m["accuracy"], state.step
            save_checkpoint(self.out / BEST, {"model": self.model.state_dict(), "config": cfg.to_dict(),
                                              "charset": self.charset.to_dict(), "step": state.step,
                                              "val_accuracy": m["accuracy"]})
        _say(self.dist, f"step {state.step}: val accuracy {m['accuracy']:.4f} norm_edit_dis {m['norm_edit_dis']:.4f} "
                        f"(best {state.best_val_accuracy:.4f} at step {state.best_step})")
        if self.tracker:
            self.tracker.log_metrics({"val_accuracy": m["accuracy"], "val_norm_edit_dis": m["norm_edit_dis"]},
                                     state.step)
        self._write_reports()

    def _save_last(self) -> None:
        save_checkpoint(self.out / LAST, {
            "model": self.model.state_dict(), "config": self.cfg.to_dict(), "charset": self.charset.to_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": rng_state(), "fingerprint": self.fingerprint,
            "step": self.state.step, "state": dict(vars(self.state))})

    # ---- outputs

    def _write_reports(self) -> None:
        from rosetta.plots import training_curve

        state = self.state
        _write_csv(self.out / LOSS_CSV, ["step", "loss", "lr", "images_per_s"], state.loss_rows)
        _write_csv(self.out / VAL_CSV, ["step", "accuracy", "norm_edit_dis"], state.val_rows)
        last_loss = next((r[1] for r in reversed(state.loss_rows) if math.isfinite(r[1])), None)
        ips = [r[3] for r in state.loss_rows]
        metrics = {"steps": state.step, "best_val_accuracy": max(state.best_val_accuracy, 0.0),
                   "best_step": state.best_step, "final_val_accuracy": state.val_rows[-1][1] if state.val_rows else 0.0,
                   "final_loss": last_loss, "skipped_steps": state.skipped_steps,
                   "images_per_s": float(np.median(ips)) if ips else 0.0, "train_time_s": round(state.elapsed_s, 1)}
        (self.out / METRICS_JSON).write_text(json.dumps(metrics, indent=2) + "\n")
        training_curve(state.loss_rows, state.val_rows, self.out / CURVE_PNG)

    def _result(self) -> TrainResult:
        return TrainResult(self.out / BEST, self.out / LAST, self.state.run_id, self.state.step,
                           max(self.state.best_val_accuracy, 0.0))

    def _finish(self) -> TrainResult:
        self._write_reports()
        from rosetta.tracking import tracking_uri

        result = self._result()
        info = {"run_id": result.run_id, "tracking_uri": tracking_uri(self.cfg),
                "experiment": self.cfg.mlflow.experiment, "best_checkpoint": str(result.best_checkpoint),
                "last_checkpoint": str(result.last_checkpoint), "steps": result.steps,
                "best_val_accuracy": result.best_val_accuracy}
        if self.tracker:
            self._log_final()
            self.tracker.end()
            self.state.finished = True
            self._save_last()
        (self.out / RUN_JSON).write_text(json.dumps(info, indent=2) + "\n")
        _say(self.dist, f"done: {result.steps} steps, best val accuracy {result.best_val_accuracy:.4f} at step "
                        f"{self.state.best_step}, {result.best_checkpoint}")
        return result

    def _log_final(self) -> None:
        tr = self.tracker
        tr.log_metrics({"best_val_accuracy": max(self.state.best_val_accuracy, 0.0),
                        "skipped_steps": self.state.skipped_steps}, self.state.step)
        tr.log_artifact(self.out / BEST, "checkpoints")
        for name in (METRICS_JSON, CURVE_PNG):
            tr.log_artifact(self.out / name)
        for name in (LOSS_CSV, VAL_CSV):
            tr.log_artifact(self.out / name, "plots")
        if self.cfg.train.log_model:
            ckpt = load_checkpoint(self.out / BEST)
            model = build_model(self.cfg.model, self.charset.num_classes)
            model.load_state_dict(ckpt["model"])
            example = np.zeros((2, 3, self.cfg.model.image_height, self.cfg.model.image_width), np.float32)
            tr.log_pytorch_model(model, example)


def _write_csv(path: Path, header: list[str], rows: list[list[float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(header)] + [",".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- CLI


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train the configured model (resumes from the last checkpoint)",
        description="Train per params.yaml's train section (PaddleOCR's recipe in the profiles). Rerunning the "
                    "same command after a crash resumes from <train.out_dir>/checkpoints/last.pt. "
                    "train.nproc > 1 (or torchrun) trains with DistributedDataParallel.")
    add_config_args(p)
    p.add_argument("--no-resume", action="store_true", help="start a new run even when a checkpoint exists")
    p.set_defaults(func=_train_command)


def _train_command(args: argparse.Namespace) -> int:
    def body() -> int:
        run_training(config_from_args(args), resume=not args.no_resume)
        return 0

    return run_guarded(body)

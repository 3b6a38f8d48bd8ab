"""Training: the loop, for any recipe the params describe (PaddleOCR's is in the profiles), resumable to the
batch after any crash, on one device or several through torchrun (DDP).

Its parts live beside it in ``rosetta.training``: ``optim`` (optimizer, schedule, the step), ``resume`` (RNG
states, the params fingerprint), ``validation`` (the accuracy best.pt is chosen on), ``outputs`` (metrics, plots,
the MLflow run), ``journal`` (the run's MLflow writes while its server is away), ``pretrained``
(``train.init_from``), ``runtime`` (ranks, autocast) and ``launch`` (the torchrun relaunch for
``train.nproc > 1``); ``rosetta.data.splits`` says which LMDBs.

Files below ``train.out_dir``: ``best.pt`` (inference checkpoint with the best validation accuracy),
``checkpoints/last.pt`` (the full training state, every ``checkpoint_every`` steps), ``run.json`` (the
MLflow run the later stages nest under; ``best.pt`` names it too), ``train_metrics.json`` and ``plots/*.csv``
(DVC metrics and plots) and ``curve.png``; ``mlflow_pending/`` while MLflow does not answer (``journal``). Only
rank 0 writes files and talks to MLflow.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rosetta.config import Config
from rosetta.data.loader import PlanSampler, RecTrainSet, train_loader
from rosetta.data.splits import training_plan, validation_sets
from rosetta.errors import RosettaError
from rosetta.fsutil import claim_folder, exclusive_lock, write_json
from rosetta.layout import RunLayout
from rosetta.params import param_differences
from rosetta.recognition.checkpoint import inference_entries, load_checkpoint, save_checkpoint
from rosetta.recognition.device import prepare_device
from rosetta.tracking.journal import JournaledTracker
from rosetta.tracking.store import tracking_uri
from rosetta.training.launch import launch_torchrun
from rosetta.training.optim import build_scheduler, build_trainable
from rosetta.training.outputs import log_checkpoint_model, log_final, start_run, write_reports
from rosetta.training.pretrained import apply_pretrained, load_pretrained
from rosetta.training.resume import fingerprint, rng_state, set_rng_state
from rosetta.training.runtime import Dist, autocast_context, die_with_parent
from rosetta.training.validation import score_splits
from rosetta_infer.charset import Charset


@dataclass
class TrainResult:
    best_checkpoint: Path
    last_checkpoint: Path
    run_id: str | None
    steps: int
    best_val_accuracy: float


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
    val_rows: list = field(default_factory=list)  # [step, accuracy, norm_edit_dis, accuracy of each source's split]
    best_val_by_source: dict = field(default_factory=dict)  # each split's accuracy at the best step


def weights_digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _format_eta(seconds: float) -> str:
    h, rem = divmod(int(max(0, seconds)), 3600)
    return f"{h}h{rem // 60:02d}m" if h else f"{rem // 60}m{rem % 60:02d}s"


def _say(dist: Dist, text: str | None) -> None:
    if dist.is_main and text:
        print(text, flush=True)


# --------------------------------------------------------------------------- the run


# Set by the launcher for its torchrun ranks: it holds this lock file for them.
_LOCK_HELD_ENV = "ROSETTA_TRAIN_LOCK_HELD"
_LAUNCHER_PID_ENV = "ROSETTA_TRAIN_LAUNCHER_PID"  # ranks starting after their launcher died end at once


@contextlib.contextmanager
def _run_folder_lock(runs: RunLayout):
    """The run folder claimed (a folder of someone else's is refused before anything in it is touched: a new run
    clears best.pt, run.json and temporaries) and locked for this training."""
    # A folder trained into before the marker existed holds the lock file of its training.
    claim_folder(runs.train, runs.run_marker.name, "set train.out_dir to a new or empty folder, or empty it yourself",
                 earlier=(runs.train_lock.name,))
    with exclusive_lock(runs.train_lock, f"{runs.train}: another training is running in this folder ({{holder}}); "
                                         "wait for it to end, or set train.out_dir to another folder"):
        yield


def run_training(cfg: Config, *, resume: bool = True) -> TrainResult:
    """Train per ``cfg``; with ``resume`` continue from ``<out_dir>/checkpoints/last.pt`` when it was
    written under the same params. ``train.nproc > 1`` relaunches under torchrun and waits for it.

    One training per ``train.out_dir``: the launching process (rank 0 under a torchrun started by hand)
    holds ``RunLayout.train_lock``; a second one ends in one sentence naming the first.
    """
    runs = RunLayout.from_config(cfg)
    if cfg.train.nproc > 1 and "WORLD_SIZE" not in os.environ:
        # The data and the settings a rank would refuse are refused here, in one sentence, before torchrun starts.
        training_plan(cfg, Charset.from_config(cfg.charset), cfg.train.nproc)
        load_pretrained(cfg)
        with _run_folder_lock(runs):
            launch_torchrun(cfg, resume, {_LOCK_HELD_ENV: str(runs.train_lock), _LAUNCHER_PID_ENV: str(os.getpid())})
        return result_from_run_json(runs.run_json)
    dist = Dist.from_env()
    if "TORCHELASTIC_RUN_ID" in os.environ:  # a rank ends with its torchrun agent (it has a session of its own)
        launcher = os.environ.get(_LAUNCHER_PID_ENV)
        die_with_parent(launcher_pid=int(launcher) if launcher else None)
    # Ranks other than 0 write nothing; rank 0 under this package's launcher runs under the launcher's lock.
    held = not dist.is_main or os.environ.get(_LOCK_HELD_ENV) == str(runs.train_lock)
    with contextlib.nullcontext() if held else _run_folder_lock(runs):
        device = prepare_device(cfg.train, dist.local_rank)
        if dist.world_size > 1:
            if device.type == "cuda":
                torch.cuda.set_device(device)
            torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
        try:
            return _Trainer(cfg, dist, device).fit(resume)
        finally:
            if dist.world_size > 1 and torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()


def result_from_run_json(path: Path) -> TrainResult:
    info = json.loads(Path(path).read_text())
    return TrainResult(Path(info["best_checkpoint"]), Path(info["last_checkpoint"]), info["run_id"],
                       int(info["steps"]), float(info["best_val_accuracy"]))


class _Trainer:
    def __init__(self, cfg: Config, dist: Dist, device: torch.device):
        self.cfg, self.dist, self.device = cfg, dist, device
        self.runs = RunLayout.from_config(cfg)
        self.tracker = None

    # ---- setup

    def fit(self, resume: bool) -> TrainResult:
        cfg, t = self.cfg, self.cfg.train
        autocast_context(t.precision, self.device)  # refuses fp16 off CUDA before anything starts
        # Only torch's generator: the weights' initialisation draws from it, while batches and augmentation have
        # their own seeded generators. Python's and numpy's global ones stay unseeded, so nothing that draws
        # from them (MLflow's run names, temp files) repeats from one run to the next.
        torch.manual_seed(cfg.seed)
        self.charset = Charset.from_config(cfg.charset)
        planned = training_plan(cfg, self.charset, self.dist.world_size)
        data, self.plan = planned.data, planned.plan
        for note in data.notes:
            _say(self.dist, note)
        if self.dist.is_main:
            self.val_splits, self.select_on = validation_sets(cfg, self.charset)
        self.steps_per_epoch, self.total_steps = planned.steps_per_epoch, planned.total_steps
        pretrained, notes = load_pretrained(cfg), []
        self.fingerprint = fingerprint(cfg, data.streams, self.dist.world_size,
                                       pretrained.sha256 if pretrained else None)

        parts = build_trainable(cfg, self.charset.num_classes, self.device, self.dist.world_size,
                                (lambda m: notes.append(apply_pretrained(m, pretrained, self.charset)))
                                if pretrained else None)
        self.model, self.optimizer, self.scaler, self.step_fn = parts.model, parts.optimizer, parts.scaler, parts.step
        self.scheduler = build_scheduler(cfg, self.optimizer, self.total_steps)
        if self.dist.is_main:
            self._remove_stale_temporaries()
        self.state = self._restore() if resume else TrainState()
        if not self.state.position:
            self.state.position = self.plan.start()
            if self.dist.is_main:
                self._clear_outputs()
            if pretrained:
                _say(self.dist, f"starting from the weights of {pretrained.description} (train.init_from)")
                for note in notes:
                    _say(self.dist, note)

        dataset = RecTrainSet(data.dataset, self.charset, cfg.model.image_height, cfg.model.image_width,
                              data.augmented)
        sampler = PlanSampler(self.plan, self.state.position, self.dist.rank, self.dist.world_size, self.state.step)
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
        path = self.runs.last_checkpoint
        if not path.is_file():
            return TrainState()
        ckpt = load_checkpoint(path, "cpu")  # RNG states must stay on the CPU; load_state_dict moves the rest
        diff = param_differences(ckpt.get("fingerprint", {}), self.fingerprint)
        if diff:
            _say(self.dist, f"{path} was written under other params or data ({'; '.join(diff[:5])}); "
                            "starting a new run")
            return TrainState()
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        state = TrainState(**ckpt["state"])
        _say(self.dist, f"resuming from {path} at step {state.step}/{self.total_steps}")
        return state

    def _remove_stale_temporaries(self) -> None:
        """Checkpoint and JSON temporaries (``.<name>.*.tmp``) a killed run left: under the run folder's lock no
        other process is writing one."""
        for folder in (self.runs.train, self.runs.checkpoints):
            for tmp in folder.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)

    def _clear_outputs(self) -> None:
        """A new run must not leave an earlier run's best checkpoint or curves behind."""
        r = self.runs
        for path in (r.best_checkpoint, r.last_checkpoint, r.run_json, r.train_metrics, r.loss_csv, r.val_csv,
                     r.curve_png):
            path.unlink(missing_ok=True)

    def _start_tracking(self) -> None:
        if self.state.finished:
            return
        if self.state.run_id:
            try:  # a store that does not answer now gets a journal of this run's writes, not a new run
                self.tracker = JournaledTracker.resume(self.cfg, self.state.run_id, self.runs.train,
                                                       log_checkpoint_model)
                return
            except RosettaError as exc:
                _say(self.dist, f"{exc}; logging to a new MLflow run")
        self.tracker = start_run(self.cfg, self.runs)
        self.state.run_id = self.tracker.run_id
        _say(self.dist, f"MLflow run {self.tracker.run_id} at {self.tracker.uri}")

    # ---- the loop

    def _loop(self) -> None:
        t, state = self.cfg.train, self.state
        if state.step >= self.total_steps:
            return
        _say(self.dist, f"training {self.cfg.model.backbone.key} for {self.total_steps} steps "
                        f"({self.total_steps / self.steps_per_epoch:.2f} epochs of {self.steps_per_epoch} steps, "
                        f"batch {t.batch_size} x {self.dist.world_size} process(es)) on {self.device}")
        _say(self.dist, self.plan.head_pass_note(state.position))
        self.model.train()
        window_loss, window_n, window_t0, window_steps = 0.0, 0, time.perf_counter(), 0
        segment_t0 = time.perf_counter()
        elapsed0 = state.elapsed_s
        batches = iter(self.loader)
        while state.step < self.total_steps:
            images, targets, lengths = next(batches)
            lr = self.optimizer.param_groups[0]["lr"]  # this step's rate; after the schedule's step, the next one's
            loss = self.step_fn(images, targets, lengths)
            self.scheduler.step()
            state.position = self.plan.advance(state.position, state.step)
            state.step += 1
            _say(self.dist, self.plan.joining_note(state.step))
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
                state.loss_rows.append([state.step, mean_loss, lr, ips])
                eta = (self.total_steps - state.step) * dt / window_steps
                _say(self.dist, f"step {state.step}/{self.total_steps} epoch {state.step / self.steps_per_epoch:.2f} "
                                f"loss {mean_loss:.4f} lr {lr:.2e} {ips:.0f} img/s ETA {_format_eta(eta)}")
                if self.tracker:
                    self.tracker.log_metrics({"loss": mean_loss, "lr": lr, "train/throughput_img_s": ips}, state.step)
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
        per_split = score_splits(self.model, self.val_splits, self.select_on, self.charset, self.device,
                                    cfg.eval.batch_size, cfg.model.image_height, cfg.model.image_width)
        m = per_split[self.select_on]
        sources = [s.source for s in self.val_splits]
        state.val_rows.append([state.step, m["accuracy"], m["norm_edit_dis"],
                               *(per_split[s]["accuracy"] for s in sources)])
        if m["accuracy"] > state.best_val_accuracy:
            state.best_val_accuracy, state.best_step = m["accuracy"], state.step
            state.best_val_by_source = {s: per_split[s]["accuracy"] for s in sources}
            save_checkpoint(self.runs.best_checkpoint, {
                **inference_entries(self.model, cfg.model, self.charset), "config": cfg.to_dict(), "step": state.step,
                "val_accuracy": m["accuracy"], "run_id": state.run_id})
        others = ", ".join(f"{s} {per_split[s]['accuracy']:.4f}" for s in sources if s != self.select_on)
        _say(self.dist, f"step {state.step}: val accuracy {m['accuracy']:.4f} on {self.select_on} "
                        f"norm_edit_dis {m['norm_edit_dis']:.4f}{f' ({others})' if others else ''} "
                        f"(best {state.best_val_accuracy:.4f} at step {state.best_step})")
        if self.tracker:
            self.tracker.log_metrics({"val_accuracy": m["accuracy"], "val_norm_edit_dis": m["norm_edit_dis"],
                                      **{f"val/{s}_accuracy": per_split[s]["accuracy"] for s in sources}},
                                     state.step)
        self._write_reports()

    def _save_last(self) -> None:
        save_checkpoint(self.runs.last_checkpoint, {
            **inference_entries(self.model, self.cfg.model, self.charset), "config": self.cfg.to_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": rng_state(), "fingerprint": self.fingerprint,
            "step": self.state.step, "state": dict(vars(self.state))})

    # ---- outputs

    def _write_reports(self) -> None:
        write_reports(self.runs, self.state, [s.source for s in self.val_splits], self.select_on, self.device)

    def _result(self) -> TrainResult:
        return TrainResult(self.runs.best_checkpoint, self.runs.last_checkpoint, self.state.run_id, self.state.step,
                           max(self.state.best_val_accuracy, 0.0))

    def _finish(self) -> TrainResult:
        self._write_reports()
        result = self._result()
        info = {"run_id": result.run_id, "tracking_uri": tracking_uri(self.cfg),
                "experiment": self.cfg.mlflow.experiment, "best_checkpoint": str(result.best_checkpoint),
                "last_checkpoint": str(result.last_checkpoint), "steps": result.steps,
                "best_val_accuracy": result.best_val_accuracy}
        if self.tracker:
            log_final(self.tracker, self.cfg, self.runs, self.state)
            self.tracker.end()
            self.state.finished = True
            self._save_last()
        write_json(self.runs.run_json, info)
        _say(self.dist, f"done: {result.steps} steps, best val accuracy {result.best_val_accuracy:.4f} at step "
                        f"{self.state.best_step}, {result.best_checkpoint}")
        return result

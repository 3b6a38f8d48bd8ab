"""``make gpu-check``: every CUDA path of the project run once, in one table.

On a CUDA machine (in under 8 minutes, nothing downloaded) it renders a small synth set, trains
MobileNetV3 and ResNet34_vd at batch 256 in fp32, bf16 and fp16, eager and under ``torch.compile``
(img/s, peak GPU memory, loss after N steps; the half precisions must track fp32's loss), trains under
``torchrun`` with NCCL, kills a training run and resumes it, exports the GPU-trained model to ONNX
through the parity gate (ONNX Runtime's CUDA provider when it has one) and evaluates it on the GPU.
Without a GPU the same command runs a dry mode (tiny sizes, CPU, bf16 autocast on the CPU, gloo) so CI
keeps every row working.

Each row drives the public commands (``rosetta data``, ``train -o ...``, ``export``, ``evaluate``) in
a subprocess and reads the JSON they write. A row that breaks is one ``FAIL`` line naming it; the other
rows still run, and the exit status is 1 at the end.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MJ_ST_IMAGES = 14.4e6  # one MJSynth + SynthText epoch, PaddleOCR's training set
EPOCHS = 72  # PaddleOCR's rec_r34_vd_none_none_ctc / rec_mv3_none_none_ctc schedule
# Published throughput to set ours against: mindocr's CRNN-ResNet34_vd, 8 Ascend 910 cards, batch 64 each.
REFERENCE = {"model": "CRNN ResNet34_vd (mindocr)", "hardware": "8 x Ascend 910", "images_per_s": 6695.0}
# Half precision "tracks" fp32 when its loss after N steps is within LOSS_ATOL + LOSS_RTOL * fp32's loss.
LOSS_RTOL = 0.15
LOSS_ATOL = 0.05
BACKBONES = ("mobilenet_v3", "resnet34_vd")
WORK_MARKER = ".gpu-check"  # in --work: the folder is this script's to empty
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class Plan:
    """Sizes of one check: the GPU one, or the dry one that keeps the script working on a CPU."""

    mode: str  # "gpu" or "dry"
    device: str
    train_rows: tuple  # (backbone, precision, compile) in the order they run
    late_rows: tuple  # run after torchrun, resume and export, while the time budget lasts
    skipped_rows: tuple  # (backbone, precision, compile, why): listed, not run
    batch_size: int
    steps: int
    synth: tuple  # train, val, test sizes
    num_workers: int
    resume_precision: str
    resume_steps: int
    resume_every: int
    torchrun_procs: int
    torchrun_precision: str
    torchrun_steps: int
    parity_samples: int
    budget_s: float


@dataclass
class Row:
    check: str  # data, train, torchrun, resume, export, evaluate
    name: str
    status: str = "ok"  # ok, FAIL or skip
    backbone: str | None = None
    precision: str | None = None
    compile: bool | None = None
    steps: int | None = None
    images_per_s: float | None = None
    peak_memory_mib: float | None = None  # GPU: torch's peak allocated memory; dry mode: the process's peak RSS
    loss: float | None = None
    val_accuracy: float | None = None  # train rows: at the last step, on the whole val split; evaluate: the same
    loss_vs_fp32: float | None = None  # relative difference to the same backbone's fp32 eager row
    seconds: float = 0.0
    note: str = ""
    log: str | None = None


@dataclass
class Report:
    mode: str
    device: str
    environment: dict
    loss_tolerance: dict
    rows: list = field(default_factory=list)
    estimates: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    elapsed_s: float = 0.0


# --------------------------------------------------------------------------- plans


def gpu_plan(gpus: int, bf16: bool, steps: int, batch_size: int, budget_s: float) -> Plan:
    precisions = [p for p in PRECISIONS if bf16 or p != "bf16"]
    skipped = () if bf16 else tuple((b, "bf16", c, "this GPU has no bfloat16") for b in BACKBONES
                                    for c in (False, True))
    eager = tuple((b, p, False) for b in BACKBONES for p in precisions)
    # Compiling costs up to a minute or two per row, so those rows come last (after torchrun, resume and
    # export), the recommended precision first, the others while the time budget lasts.
    order = (["bf16"] if bf16 else []) + [p for p in precisions if p != "bf16"]
    compiled = tuple((b, p, True) for p in order for b in BACKBONES)
    cores = os.cpu_count() or 4
    return Plan(mode="gpu", device="cuda", train_rows=eager, late_rows=compiled, skipped_rows=skipped,
                batch_size=batch_size, steps=steps, synth=(50 * batch_size, 512, 64),
                num_workers=max(2, min(12, cores - 2)),
                # fp16 for the resume row: its GradScaler state must come back with the weights.
                resume_precision="fp16", resume_steps=120, resume_every=10,
                torchrun_procs=gpus, torchrun_precision="bf16" if bf16 else "fp16", torchrun_steps=60,
                parity_samples=256, budget_s=budget_s)


def dry_plan(budget_s: float) -> Plan:
    rows = (("mobilenet_v3", "fp32", False), ("mobilenet_v3", "bf16", False), ("resnet34_vd", "fp32", False))

    def why(backbone: str, precision: str, compiled: bool) -> str:
        if precision == "fp16":
            return "fp16 needs CUDA (the CPU refuses it)"
        if compiled:
            return "torch.compile runs on CUDA only here (inductor's CPU build takes minutes)"
        # Emulated without the CPU's bfloat16 instructions, about 10x fp32's time: affordable for the few
        # MobileNetV3 images of the dry mode, not for ResNet34_vd's.
        return "bf16 on the CPU is slow for ResNet34_vd; the GPU mode runs it"

    skipped = tuple((b, p, c, why(b, p, c)) for b in BACKBONES for p in PRECISIONS for c in (False, True)
                    if (b, p, c) not in rows)
    return Plan(mode="dry", device="cpu", train_rows=rows, late_rows=(), skipped_rows=skipped,
                batch_size=2, steps=3, synth=(32, 8, 4), num_workers=0, resume_precision="fp32", resume_steps=6,
                resume_every=2, torchrun_procs=2, torchrun_precision="fp32", torchrun_steps=3, parity_samples=8,
                budget_s=budget_s)


# --------------------------------------------------------------------------- running commands


@dataclass
class Outcome:
    returncode: int | None  # None: killed at the time limit
    seconds: float
    peak_rss_mib: float
    output: str


def run_command(cmd: list[str], log: Path, timeout: float, env: dict) -> Outcome:
    """Run ``cmd`` in its own process group (a time-out kills its children too), output into ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(log, "w") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        returncode, rss = _wait(proc, start + timeout)
    return Outcome(returncode, time.monotonic() - start, rss, log.read_text(errors="replace"))


def _wait(proc: subprocess.Popen, deadline: float) -> tuple[int | None, float]:
    """(exit status or None when killed at ``deadline``, the process's peak RSS in MiB)."""
    try:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                return proc.returncode, usage.ru_maxrss / 1024
            if time.monotonic() > deadline:
                _kill_group(proc)
                _, _, usage = os.wait4(proc.pid, 0)
                proc.returncode = -signal.SIGKILL
                return None, usage.ru_maxrss / 1024
            time.sleep(0.05)
    except BaseException:  # Ctrl-C reaches only this process: its own session would outlive it
        _kill_group(proc)
        raise


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def failure_reason(outcome: Outcome, limit: float) -> str:
    """The one line that says why a command failed: its ``error:`` line, else the last line it wrote."""
    if outcome.returncode is None:
        return f"no result within {limit:.0f} s, killed at the end of the time budget (--budget-s)"
    lines = [line.strip() for line in outcome.output.splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith("error:")]
    # A traceback's last line names the exception; torchrun ends with its own ChildFailedError after the rank's.
    raised = [line for line in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Failed)\b", line)
              and "ChildFailedError" not in line]
    last = (ours or raised or lines or ["no output"])[-1]
    return f"exit status {outcome.returncode}: {last[:300]}"


# --------------------------------------------------------------------------- the check


class GpuCheck:
    def __init__(self, plan: Plan, work: Path, environment: dict, loss_rtol: float):
        self.plan, self.work = plan, work
        self.loss_rtol = loss_rtol
        self.started = time.monotonic()
        self.report = Report(plan.mode, plan.device, environment, {"rtol": loss_rtol, "atol": LOSS_ATOL})
        self.env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        self.env["PYTHONUNBUFFERED"] = "1"
        if plan.mode == "dry":
            self.env["CUDA_VISIBLE_DEVICES"] = ""  # the dry mode is the CPU's, even on a GPU host

    # ---- helpers

    def remaining(self) -> float:
        return self.plan.budget_s - (time.monotonic() - self.started)

    def rosetta(self, args: list[str], log: str, limit: float | None = None) -> Outcome:
        limit = self.remaining() if limit is None else min(limit, self.remaining())
        return run_command([sys.executable, "-m", "rosetta", *args], self.work / "logs" / f"{log}.log",
                           max(limit, 1.0), self.env)

    def data_root(self) -> Path:
        return self.work / "data"

    def overrides(self, out: Path, steps: int, *extra: str) -> list[str]:
        """``-o`` arguments shared by every training command of the check."""
        p = self.plan
        values = [f"data.root={self.data_root()}", "data.sources=[synth]", f"train.device={p.device}",
                  f"train.batch_size={p.batch_size}", f"train.max_steps={steps}", "train.optimizer=adamw",
                  "train.scheduler=cosine", f"train.warmup_steps={max(1, steps // 5)}",
                  f"train.log_every={max(1, steps // 6)}", f"train.eval_every={steps}",
                  f"train.checkpoint_every={steps}", f"train.num_workers={p.num_workers}", "train.nproc=1",
                  "train.threads=1" if p.mode == "dry" else "train.threads=0", "train.val_samples=0",
                  "train.log_model=false", f"train.out_dir={out}", f"eval.batch_size={p.batch_size}",
                  f"mlflow.tracking_uri=sqlite:///{self.work / 'mlflow.db'}", "mlflow.experiment=gpu-check",
                  # Dry: 3 steps of 2 words at the recipe's rate move the loss so far that bf16 rounding alone
                  # puts it 10-25 % off fp32's, depending on the words drawn; a small rate leaves the rounding.
                  *(["train.lr=1e-4"] if p.mode == "dry" else []), *extra]
        return [arg for v in values for arg in ("-o", v)]

    def add(self, row: Row) -> Row:
        """Record a finished row; a failed one also gets its FAIL line."""
        self.report.rows.append(row)
        if row.status == "FAIL":
            self.fail(row, row.note)
        return row

    def broke(self, row: Row, reason: str) -> None:
        """Record ``row`` as failed for ``reason``."""
        row.status, row.note = "FAIL", reason
        self.add(row)

    def fail(self, row: Row, reason: str) -> None:
        row.status = "FAIL"
        row.note = reason
        line = f"FAIL {row.check} {row.name}: {reason}" + (f" (log: {row.log})" if row.log else "")
        self.report.failures.append(line)
        print(line, flush=True)

    def skip(self, check: str, name: str, why: str, **fields) -> Row:
        row = self.add(Row(check, name, "skip", note=why, **fields))
        print(f"skip {check} {name}: {why}", flush=True)
        return row

    def out_of_time(self, check: str, name: str, need: float, **fields) -> bool:
        if self.remaining() >= need:
            return False
        self.skip(check, name, f"time budget ({self.plan.budget_s:.0f} s, --budget-s) spent", **fields)
        return True

    # ---- the rows

    def run(self) -> Report:
        p = self.plan
        if not self.render_data():
            return self.finish()
        for backbone, precision, compiled, why in p.skipped_rows:
            self.skip("train", _train_name(backbone, precision, compiled), why, backbone=backbone,
                      precision=precision, compile=compiled)
        for backbone, precision, compiled in p.train_rows:
            self.train(backbone, precision, compiled)
        self.torchrun()
        self.resume()
        self.export()
        self.evaluate()
        for backbone, precision, compiled in p.late_rows:
            self.train(backbone, precision, compiled)
        self.compare_losses()
        self.estimate()
        return self.finish()

    def render_data(self) -> bool:
        """A small synth set, rendered and converted by the data commands, as the pipeline does."""
        train, val, test = self.plan.synth
        row = Row("data", f"synth {train}/{val}/{test}")
        raw, lmdb = self.work / "raw" / "synth", self.data_root() / "lmdb" / "synth"
        sizes = [f"data.synth.train_size={train}", f"data.synth.val_size={val}", f"data.synth.test_size={test}"]
        steps = [("render", ["data", "synth", str(raw), *[a for s in sizes for a in ("-o", s)]]),
                 ("convert", ["data", "convert", "--format", "mjsynth", str(raw), str(lmdb)])]
        for name, args in steps:
            outcome = self.rosetta(args, f"data_{name}", limit=240)
            row.seconds += outcome.seconds
            if outcome.returncode != 0:
                row.log = str(self.work / "logs" / f"data_{name}.log")
                self.broke(row, f"rosetta data {name}: {failure_reason(outcome, 240)}")
                return False
        row.note = f"rendered and converted to {lmdb}"
        self.add(row)
        print(f"data: {train} train, {val} val, {test} test images in {row.seconds:.0f} s", flush=True)
        return True

    def train(self, backbone: str, precision: str, compiled: bool) -> None:
        p = self.plan
        name = _train_name(backbone, precision, compiled)
        fields = {"backbone": backbone, "precision": precision, "compile": compiled}
        if self.out_of_time("train", name, 30, **fields):
            return
        slug = name.replace(" ", "_")
        out = self.work / "runs" / slug
        row = Row("train", name, **fields, log=str(self.work / "logs" / f"train_{slug}.log"))
        outcome = self.rosetta(["train", "--no-resume", *self.overrides(
            out, p.steps, f"model.backbone={backbone}", f"train.precision={precision}",
            f"train.compile={'true' if compiled else 'false'}")], f"train_{slug}")
        row.seconds = outcome.seconds
        if outcome.returncode != 0:
            self.broke(row, failure_reason(outcome, outcome.seconds))
            return
        self.read_train_metrics(row, out, outcome)
        self.add(row)
        print(_row_line(row), flush=True)

    def read_train_metrics(self, row: Row, out: Path, outcome: Outcome) -> None:
        """The row's figures from the ``train_metrics.json`` a finished ``rosetta train`` wrote."""
        try:
            metrics = json.loads((out / "train_metrics.json").read_text())
        except (OSError, ValueError) as exc:
            row.status, row.note = "FAIL", f"training ended without a readable train_metrics.json ({exc})"
            return
        row.steps = metrics["steps"]
        row.images_per_s = metrics["images_per_s"]
        row.loss = metrics["final_loss"]
        row.val_accuracy = metrics["final_val_accuracy"]
        row.peak_memory_mib = metrics.get("peak_gpu_memory_mib") if self.plan.mode == "gpu" else outcome.peak_rss_mib
        if metrics["skipped_steps"]:
            row.note = f"{metrics['skipped_steps']} steps skipped (non-finite loss)"
        if row.loss is None or not math.isfinite(row.loss):
            row.status = "FAIL"
            row.note = f"no finite loss after {row.steps} steps"
        if self.plan.mode == "gpu" and row.peak_memory_mib is None:
            row.status = "FAIL"
            row.note = "train_metrics.json has no peak_gpu_memory_mib: the run did not train on CUDA"

    def torchrun(self) -> None:
        """``torchrun --nproc-per-node N``: NCCL on GPUs (gloo in the dry mode); ranks must end identical."""
        p = self.plan
        n = p.torchrun_procs
        backend = ("nccl" if p.device == "cuda" else "gloo") if n > 1 else "no process group"
        name = f"{n} process(es), {backend}"
        if self.out_of_time("torchrun", name, 30):
            return
        out = self.work / "runs" / "torchrun"
        row = Row("torchrun", name, backbone="mobilenet_v3", precision=p.torchrun_precision, compile=False,
                  log=str(self.work / "logs" / "torchrun.log"))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n),
               "-m", "rosetta", "train", "--no-resume",
               *self.overrides(out, p.torchrun_steps, "model.backbone=mobilenet_v3",
                               f"train.precision={p.torchrun_precision}", f"train.nproc={n}",
                               # the host's cores shared among the ranks' loaders
                               f"train.num_workers={max(1, p.num_workers // n) if p.num_workers else 0}")]
        outcome = run_command(cmd, Path(row.log), max(1.0, self.remaining()), self.env)
        row.seconds = outcome.seconds
        if outcome.returncode != 0:
            self.broke(row, failure_reason(outcome, outcome.seconds))
            return
        self.read_train_metrics(row, out, outcome)
        digests = dict(re.findall(rf"rank (\d+)/{n}: final weights sha256 ([0-9a-f]{{64}})", outcome.output))
        if n > 1 and (len(digests) != n or len(set(digests.values())) != 1):
            row.status, row.note = "FAIL", f"ranks ended with different weights or did not report them: {digests}"
        elif n > 1:
            row.note = f"{n} ranks ended with identical weights"
        else:
            row.note = "one GPU: torchrun ran without a process group (NCCL needs 2 GPUs)"
        self.add(row)
        print(_row_line(row), flush=True)

    def resume(self) -> None:
        """A run killed (SIGKILL) right after its first checkpoint, then started again with the same command."""
        p = self.plan
        name = f"mobilenet_v3 {p.resume_precision}, killed and resumed"
        if self.out_of_time("resume", name, 30):
            return
        out = self.work / "runs" / "resume"
        log = self.work / "logs" / "resume_killed.log"
        row = Row("resume", name, backbone="mobilenet_v3", precision=p.resume_precision, compile=False,
                  log=str(self.work / "logs" / "resume.log"))
        args = [sys.executable, "-m", "rosetta", "train", *self.overrides(
            out, p.resume_steps, "model.backbone=mobilenet_v3", f"train.precision={p.resume_precision}",
            f"train.checkpoint_every={p.resume_every}")]
        last = out / "checkpoints" / "last.pt"
        shutil.rmtree(out, ignore_errors=True)
        log.parent.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        with open(log, "w") as f:
            proc = subprocess.Popen(args, cwd=PROJECT_ROOT, env=self.env, stdout=f, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            deadline = start + max(1.0, self.remaining())
            try:
                while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.02)
                finished_first = proc.poll() is not None
            finally:
                _kill_group(proc)
                proc.wait()
        first = log.read_text(errors="replace")
        if finished_first or not last.exists():
            why = ("the run ended before its first checkpoint" if finished_first else
                   "no checkpoint within the time budget")
            row.log = str(log)
            self.broke(row, f"{why}: {failure_reason(Outcome(proc.returncode, 0, 0, first), 0)}")
            return
        outcome = run_command(args, Path(row.log), max(1.0, self.remaining()), self.env)
        row.seconds = time.monotonic() - start
        if outcome.returncode != 0:
            self.broke(row, failure_reason(outcome, outcome.seconds))
            return
        self.read_train_metrics(row, out, outcome)
        resumed = re.search(r"resuming from .* at step (\d+)/", outcome.output)
        run_before = re.search(r"MLflow run (\w+) at", first)
        run_after = json.loads((out / "run.json").read_text())["run_id"] if (out / "run.json").is_file() else None
        if row.status == "FAIL":  # train_metrics.json said why
            pass
        elif not resumed:
            row.status, row.note = "FAIL", "the second start did not resume from the checkpoint"
        elif row.steps != p.resume_steps:
            row.status, row.note = "FAIL", f"ended at step {row.steps}, not {p.resume_steps}"
        elif not run_before or run_before.group(1) != run_after:
            row.status, row.note = "FAIL", "the resumed run logged to another MLflow run"
        else:
            row.note = f"killed at step {resumed.group(1)}/{p.resume_steps}, resumed to the end in the same MLflow run"
        self.add(row)
        print(_row_line(row), flush=True)

    def export(self) -> None:
        """ONNX export of the first GPU-trained model, through the parity gate against PyTorch."""
        trained = self.first_trained()
        if trained is None:
            self.skip("export", "onnx parity", "no training row succeeded, so there is no model to export")
            return
        name = f"{trained.name} -> onnx"
        if self.out_of_time("export", name, 20):
            return
        out = self.work / "export"
        row = Row("export", name, backbone=trained.backbone, precision="fp32",
                  log=str(self.work / "logs" / "export.log"))
        outcome = self.rosetta(["export", "--model", str(self.checkpoint(trained)), "--out", str(out / "model.onnx"),
                                "--parity", str(out / "parity.json"), "--data", str(self.val_dir()),
                                "-o", f"export.parity_samples={self.plan.parity_samples}",
                                "-o", f"export.out_dir={out}"], "export")
        row.seconds = outcome.seconds
        parity = json.loads((out / "parity.json").read_text()) if (out / "parity.json").is_file() else {}
        if parity:
            row.note = (f"{parity.get('provider')}: max |p_onnx - p_torch| {_fmt(parity.get('max_abs_diff'), '.2g')}, "
                        f"same text {_fmt(parity.get('same_text'), '.1%')} on {parity.get('samples')} images")
        if outcome.returncode != 0:
            self.broke(row, failure_reason(outcome, outcome.seconds))
            return
        if self.plan.mode == "gpu" and parity.get("provider") != "CUDAExecutionProvider":
            row.note += " (onnxruntime has no CUDA provider here: pip install onnxruntime-gpu to check it)"
        self.add(row)
        print(_row_line(row), flush=True)

    def evaluate(self) -> None:
        """``rosetta evaluate`` of the same model on the device: the accuracy training measured at its end."""
        trained = self.first_trained()
        if trained is None:
            self.skip("evaluate", "val split", "no training row succeeded, so there is no model to evaluate")
            return
        name = f"{trained.name} on {self.plan.device}"
        if self.out_of_time("evaluate", name, 15):
            return
        out = self.work / "eval"
        row = Row("evaluate", name, backbone=trained.backbone, precision="fp32",
                  log=str(self.work / "logs" / "evaluate.log"))
        outcome = self.rosetta(["evaluate", "--model", str(self.checkpoint(trained)), "--data", str(self.val_dir()),
                                "--out", str(out), "-o", f"train.device={self.plan.device}",
                                "-o", f"eval.batch_size={self.plan.batch_size}"], "evaluate")
        row.seconds = outcome.seconds
        if outcome.returncode != 0:
            self.broke(row, failure_reason(outcome, outcome.seconds))
            return
        metrics = json.loads((out / "metrics.json").read_text())
        row.images_per_s, row.val_accuracy = metrics["images_per_s"], metrics["accuracy_total"]
        note = (f"accuracy {row.val_accuracy:.4f} on {metrics['count_total']} images; training measured "
                f"{trained.val_accuracy:.4f}")
        # One image either way: evaluation reads the same batches, but cuDNN may pick other kernels.
        if abs(row.val_accuracy - trained.val_accuracy) * metrics["count_total"] > 1:
            row.status = "FAIL"
        row.note = note
        self.add(row)
        print(_row_line(row), flush=True)

    def first_trained(self) -> Row | None:
        """The first training row that passed: the GPU-trained model export and evaluate take."""
        return next((r for r in self.report.rows if r.check == "train" and r.status == "ok"), None)

    def checkpoint(self, row: Row) -> Path:
        return self.work / "runs" / row.name.replace(" ", "_") / "best.pt"

    def val_dir(self) -> Path:
        return self.data_root() / "lmdb" / "synth" / "val"

    def compare_losses(self) -> None:
        """Every row's loss after N steps against the same backbone's fp32 eager row."""
        rows = [r for r in self.report.rows if r.check == "train" and r.status == "ok"]
        refs = {r.backbone: r for r in rows if r.precision == "fp32" and not r.compile}
        for r in rows:
            ref = refs.get(r.backbone)
            if ref is None or r is ref:
                continue
            r.loss_vs_fp32 = (r.loss - ref.loss) / abs(ref.loss)
            if abs(r.loss - ref.loss) > LOSS_ATOL + self.loss_rtol * abs(ref.loss):
                self.fail(r, f"loss {r.loss:.4f} after {r.steps} steps does not track fp32's {ref.loss:.4f} "
                             f"({r.loss_vs_fp32:+.1%}; tolerance {LOSS_ATOL} + {self.loss_rtol:.0%})")

    def estimate(self) -> None:
        """Hours per MJ+ST epoch from the fastest passing row of each backbone, on 1 device and on 8."""
        for backbone in BACKBONES:
            rows = [r for r in self.report.rows if r.check == "train" and r.status == "ok" and r.backbone == backbone]
            if not rows:
                continue
            best = max(rows, key=lambda r: r.images_per_s)
            hours = MJ_ST_IMAGES / best.images_per_s / 3600
            self.report.estimates.append({
                "backbone": backbone, "row": best.name, "device": self.plan.device,
                "images_per_s": round(best.images_per_s, 1), "hours_per_epoch_1": round(hours, 2),
                "hours_per_epoch_8": round(hours / 8, 3), "hours_72_epochs_8": round(hours / 8 * EPOCHS, 1)})

    def finish(self) -> Report:
        self.report.elapsed_s = round(time.monotonic() - self.started, 1)
        return self.report


def _train_name(backbone: str, precision: str, compiled: bool) -> str:
    return f"{backbone} {precision}" + (" compile" if compiled else "")


def _fmt(value, spec: str, none: str = "-") -> str:
    return none if value is None else format(value, spec)


def _row_line(r: Row) -> str:
    return (f"{r.status:<4} {r.check:<8} {r.name:<38} {_fmt(r.steps, 'd'):>5} {_fmt(r.images_per_s, ',.0f'):>8} "
            f"{_fmt(r.peak_memory_mib, ',.0f'):>8} {_fmt(r.loss, '.4f'):>8} {_fmt(r.loss_vs_fp32, '+.1%'):>7} "
            f"{r.seconds:>6.0f}  {r.note}")


def format_report(report: Report) -> str:
    memory = "GPU MiB" if report.mode == "gpu" else "RSS MiB"
    head = (f"{'':<4} {'check':<8} {'row':<38} {'steps':>5} {'img/s':>8} {memory:>8} {'loss':>8} {'vs fp32':>7} "
            f"{'s':>6}  note")
    order = {"data": 0, "train": 1, "torchrun": 2, "resume": 3, "export": 4, "evaluate": 5}
    rows = sorted(report.rows, key=lambda r: (order[r.check], r.backbone or "", bool(r.compile),
                                              PRECISIONS.index(r.precision) if r.precision else 0))
    lines = [head, "-" * len(head)] + [_row_line(r) for r in rows]
    tol = report.loss_tolerance
    lines.append(f"loss: the mean over the last logged window after N steps; a half-precision or compiled row "
                 f"fails when it is off fp32's by more than {tol['atol']} + {tol['rtol']:.0%}")
    for e in report.estimates:
        lines.append(f"estimate {e['backbone']}: {e['images_per_s']:,.0f} img/s ({e['row']}, {e['device']}) -> "
                     f"{e['hours_per_epoch_1']:.2f} h per MJ+ST epoch (14.4 M images) on 1 device, "
                     f"{e['hours_per_epoch_8']:.3f} h on 8 with linear scaling (an upper bound); "
                     f"{EPOCHS} epochs on 8: {e['hours_72_epochs_8']:.1f} h")
    ref_hours = MJ_ST_IMAGES / REFERENCE["images_per_s"] / 3600
    lines.append(f"published: {REFERENCE['model']} on {REFERENCE['hardware']}: {REFERENCE['images_per_s']:,.0f} "
                 f"img/s -> {ref_hours:.2f} h per epoch, {ref_hours * EPOCHS:.0f} h for {EPOCHS} epochs")
    verdict = (f"{len(report.failures)} failure(s):" if report.failures else "all rows passed") + \
        f" ({report.mode} mode, {report.elapsed_s:.0f} s)"
    return "\n".join(lines + [verdict] + report.failures)


# --------------------------------------------------------------------------- entry point


def environment() -> dict:
    import onnxruntime
    import torch

    env = {"torch": torch.__version__, "cuda": torch.version.cuda, "onnxruntime": onnxruntime.__version__,
           "onnxruntime_providers": onnxruntime.get_available_providers(), "cpus": os.cpu_count()}
    if torch.cuda.is_available():
        env["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        env["bf16"] = torch.cuda.is_bf16_supported()
    return env


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry", action="store_true", help="the CPU dry mode even where a GPU is present")
    parser.add_argument("--work", metavar="DIR", default=str(PROJECT_ROOT / "runs" / "gpu_check"),
                        help="scratch folder: data, runs and one log per command (emptied first)")
    parser.add_argument("--json", metavar="FILE", default=None, help="the table as JSON (default: WORK/gpu_check.json)")
    parser.add_argument("--steps", type=int, default=300, help="training steps per row on the GPU")
    parser.add_argument("--batch-size", type=int, default=256, help="batch per GPU")
    parser.add_argument("--gpus", type=int, default=None, help="processes for the torchrun row (default: all GPUs)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="seconds for all rows; those not started by then are listed as skipped "
                             "(default: 420 on a GPU, the whole check under 8 minutes; 600 dry)")
    parser.add_argument("--loss-rtol", type=float, default=LOSS_RTOL,
                        help=f"relative loss tolerance against fp32 (default {LOSS_RTOL}; plus {LOSS_ATOL} absolute)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.steps < 12 or args.batch_size < 1 or (args.gpus is not None and args.gpus < 1) or args.loss_rtol < 0:
        print("error: --steps must be at least 12, --batch-size and --gpus at least 1, --loss-rtol at least 0",
              file=sys.stderr)
        return 2
    work = Path(args.work).resolve()
    if work.is_dir() and any(work.iterdir()) and not (work / WORK_MARKER).is_file():
        print(f"error: {work} holds files that no earlier gpu check wrote; name an empty or new folder with --work",
              file=sys.stderr)
        return 2
    env = environment()
    if args.dry or "gpus" not in env:
        print(("--dry" if args.dry else "no CUDA GPU here") + ": running the dry mode (tiny sizes, CPU, bf16 "
              "autocast on the CPU, gloo for torchrun); run `make gpu-check` on a GPU host for the real check",
              flush=True)
        plan = dry_plan(args.budget_s or 600)
    else:
        gpus = args.gpus or len(env["gpus"])
        print(f"GPU check on {gpus} x {env['gpus'][0]} (torch {env['torch']}, CUDA {env['cuda']})", flush=True)
        plan = gpu_plan(gpus, env["bf16"], args.steps, args.batch_size, args.budget_s or 420)
    json_path = Path(args.json) if args.json else work / "gpu_check.json"
    shutil.rmtree(work, ignore_errors=True)  # an earlier check's rows must not pass for this one's
    json_path.unlink(missing_ok=True)
    work.mkdir(parents=True)
    (work / WORK_MARKER).touch()
    try:
        report = GpuCheck(plan, work, env, args.loss_rtol).run()
    except KeyboardInterrupt:
        print("interrupted: no table written", file=sys.stderr)
        return 130
    print(format_report(report), flush=True)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = json_path.with_name(f".{json_path.name}.tmp")
    tmp.write_text(json.dumps(asdict(report), indent=2) + "\n")
    os.replace(tmp, json_path)
    print(f"wrote {json_path}")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())

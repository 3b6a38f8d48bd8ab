"""``make bench-paddle``: our MobileNetV3-small-0.5 against PaddlePaddle training PaddleOCR's own network, side by
side: training images/s on synthetic batches of 64 (3x32x100, 37 classes, CTC, Adam), on one thread and on two cores.

Ours is measured by ``rosetta bench train --modes synthetic`` (the project's params, ``train.threads`` and
``--processes`` set per row); Paddle's by ``scripts/bench_paddle_worker.py``, run by the Python of a venv holding
paddlepaddle (``--paddle-python``; ``make bench-paddle`` makes ``.venv-paddle``) on the network's code of a PaddleOCR
checkout (``--paddleocr``): neither Paddle nor PaddleOCR's code comes into this project. Rounds interleave the rows,
each measured in a fresh process, so the machine's drift from one minute to the next reaches both sides alike; the
end is a markdown table of the medians and the ratios, with the CPU they were measured on.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from rosetta.cli.common import positive_int
from rosetta.errors import RosettaError, run_guarded

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("bench_paddle_worker.py")
CLONE = "git clone https://github.com/PaddlePaddle/PaddleOCR"
# What the worker imports from a PaddleOCR checkout; the first is what a checkout is recognised by.
PADDLEOCR_FILES = ("ppocr/modeling/backbones/rec_mobilenet_v3.py", "ppocr/modeling/backbones/det_mobilenet_v3.py",
                   "ppocr/modeling/necks/rnn.py", "ppocr/modeling/heads/rec_ctc_head.py",
                   "ppocr/losses/rec_ctc_loss.py")


@dataclass(frozen=True)
class Setup:
    """One row of a round: whose code, and how it is laid over the cores (``batch_size`` per process)."""

    side: str  # "ours" or "paddle"
    processes: int
    threads: int
    batch_size: int

    @property
    def label(self) -> str:
        who = "ours" if self.side == "ours" else "Paddle"
        processes = f"{self.processes} processes" if self.processes > 1 else "1 process"
        threads = f"{self.threads} threads" if self.threads > 1 else "1 thread"
        each = " each" if self.processes > 1 else ""
        return f"{who}, {processes} x {threads}, batch {self.batch_size}{each}"


OURS_1, PADDLE_1 = Setup("ours", 1, 1, 64), Setup("paddle", 1, 1, 64)
OURS_2P, OURS_2T, PADDLE_2T = Setup("ours", 2, 1, 32), Setup("ours", 1, 2, 64), Setup("paddle", 1, 2, 64)
# One round, in this order. Two single-threaded processes of 32 words are how the recipe trains on two cores
# (train.nproc: 2); Paddle's dygraph trains in one process, its MKL and oneDNN calls threaded.
ROUND = (OURS_1, PADDLE_1, OURS_2P, OURS_2T, PADDLE_2T)
COMPARISONS = (("1 thread (speed per thread)", OURS_1, PADDLE_1),
               ("2 cores: ours as the recipe trains (2 processes x 32) / Paddle 2 threads", OURS_2P, PADDLE_2T),
               ("2 cores: ours 2 threads / Paddle 2 threads", OURS_2T, PADDLE_2T))


def paddleocr_checkout(folder: str | None) -> Path:
    """The PaddleOCR checkout the worker imports the network from, or a one-sentence error saying what to pass."""
    if not folder:
        raise RosettaError(f"no PaddleOCR checkout given; pass --paddleocr DIR (make bench-paddle PADDLEOCR=DIR) with "
                           f"the folder of a PaddleOCR clone ({CLONE})")
    missing = [name for name in PADDLEOCR_FILES if not (Path(folder) / name).is_file()]
    if missing:
        raise RosettaError(f"{folder}: not a PaddleOCR checkout (no {missing[0]}); pass the folder of a PaddleOCR "
                           f"clone ({CLONE})")
    return Path(folder).resolve()


def paddle_interpreter(path: str) -> str:
    if not os.access(path, os.X_OK) or Path(path).is_dir():
        raise RosettaError(f"{path}: no Python here; `make bench-paddle` makes .venv-paddle, or pass --paddle-python "
                           "with the python of a venv holding paddlepaddle==2.6.2")
    return os.path.abspath(path)  # not resolve(): a venv's python is a link, and through it Python finds the venv


def _run(argv: list[str], what: str) -> dict:
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise RosettaError(f"{what} failed ({last}); run `{' '.join(argv)}` to see the whole message")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(setup: Setup, steps: int, warmup: int, paddle_python: str, paddleocr: Path) -> dict:
    """One row, in fresh processes: ``rosetta bench train``'s own measurement for ours (it spawns them), the worker
    under Paddle's Python for Paddle."""
    if setup.side == "ours":
        from rosetta.bench.train import bench_train
        from rosetta.config import load_config

        cfg = load_config(ROOT / "params.yaml", [f"train.threads={setup.threads}", "train.device=cpu"])
        (row,) = bench_train(cfg, ["mobilenet_v3"], setup.batch_size, steps, warmup, modes=("synthetic",),
                             processes=setup.processes)
        row = {**row, "side": "ours"}
    else:
        row = _run([paddle_python, str(WORKER), "--paddleocr", str(paddleocr), "--threads", str(setup.threads),
                    "--batch-size", str(setup.batch_size), "--steps", str(steps), "--warmup", str(warmup)],
                   "the Paddle worker")
    return {**row, "setup": setup.label}


def describe_cpu(lscpu: str, cpuinfo: str) -> str:
    """``AMD EPYC, 2 CPUs, avx512f: yes`` from ``lscpu``'s output (else /proc/cpuinfo's)."""
    fields = {}
    for line in lscpu.splitlines() + cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    model = fields.get("model name") or "unknown CPU"
    count = fields.get("cpu(s)") or str(os.cpu_count())
    avx512 = "yes" if "avx512f" in fields.get("flags", "").split() else "no"
    return f"{model}, {count} CPUs, avx512f: {avx512}"


def _cpu() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        lscpu = ""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    return describe_cpu(lscpu, cpuinfo)


def report(rows: list[dict], header: list[str]) -> str:
    """The markdown: the header lines, each setup's img/s per round and median, and the ratios of the medians
    (with each round's own ratio: the rows of a round ran minutes apart, the rounds maybe an hour)."""
    by_setup = {s.label: [r for r in rows if r["setup"] == s.label] for s in ROUND}
    median = {label: statistics.median(r["images_per_s"] for r in rs) for label, rs in by_setup.items() if rs}
    lines = [*header, "", "| setup | img/s per round | median img/s | ms/img | CPU s per wall s |",
             "|---|---:|---:|---:|---:|"]
    for label, rs in by_setup.items():
        if rs:
            speeds = " / ".join(f"{r['images_per_s']:.1f}" for r in rs)
            load = " / ".join(f"{r['cpu_per_wall']:.2f}" for r in rs) if "cpu_per_wall" in rs[0] else "-"
            lines.append(f"| {label} | {speeds} | {median[label]:.1f} | {1000 / median[label]:.2f} | {load} |")
    lines += ["", "| comparison | ours img/s | Paddle img/s | ours / Paddle (per round) |", "|---|---:|---:|---:|"]
    for name, ours, paddle in COMPARISONS:
        if ours.label in median and paddle.label in median:
            rounds = ", ".join(f"{o['images_per_s'] / p['images_per_s']:.2f}"
                               for o, p in zip(by_setup[ours.label], by_setup[paddle.label]))
            lines.append(f"| {name} | {median[ours.label]:.1f} | {median[paddle.label]:.1f} | "
                         f"**{median[ours.label] / median[paddle.label]:.2f}** ({rounds}) |")
    return "\n".join(lines)


def _header(rows: list[dict], rounds: int, steps: int, warmup: int, load: tuple[float, float]) -> list[str]:
    ours = next(r for r in rows if r["side"] == "ours")
    paddle = next(r for r in rows if r["side"] == "paddle")
    return [f"CPU: {_cpu()}; load average {load[0]:.2f} at the start, {load[1]:.2f} at the end",
            f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {rounds} interleaved rounds, {warmup} warmup + {steps} "
            "timed steps each row, every row a fresh process",
            f"ours: torch {importlib.metadata.version('torch')}, MobileNetV3-small-0.5, {ours['model_params']:,} "
            f"parameters; Paddle: paddlepaddle {paddle['paddle_version']} (dygraph, FLAGS_use_mkldnn="
            f"{paddle['use_mkldnn']}), PaddleOCR's rec_mv3_none_none_ctc with small-0.5, {paddle['model_params']:,} "
            "trainable parameters"]


def run(args: argparse.Namespace) -> int:
    paddleocr = paddleocr_checkout(args.paddleocr)
    if args.check_only:
        return 0
    paddle_python = paddle_interpreter(args.paddle_python)
    start_load, rows = os.getloadavg()[0], []
    for round_ in range(1, args.rounds + 1):
        for setup in ROUND:
            row = measure(setup, args.steps, args.warmup, paddle_python, paddleocr)
            rows.append(row)
            print(f"round {round_}/{args.rounds}  {setup.label:<44} {row['images_per_s']:8.1f} img/s "
                  f"{row['ms_per_image']:7.2f} ms/img", flush=True)
    print()
    print(report(rows, _header(rows, args.rounds, args.steps, args.warmup, (start_load, os.getloadavg()[0]))))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--paddleocr", metavar="DIR", default=os.environ.get("PADDLEOCR"),
                   help="a PaddleOCR checkout (default: $PADDLEOCR)")
    p.add_argument("--paddle-python", metavar="PYTHON",
                   default=os.environ.get("PADDLE_PYTHON", str(ROOT / ".venv-paddle" / "bin" / "python")),
                   help="the python of a venv holding paddlepaddle (default: $PADDLE_PYTHON, else .venv-paddle's)")
    p.add_argument("--rounds", type=positive_int, default=2)
    p.add_argument("--steps", type=positive_int, default=20, help="timed steps per row")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--check-only", action="store_true", help="check the PaddleOCR checkout and stop")
    args = p.parse_args(argv)
    return run_guarded(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())

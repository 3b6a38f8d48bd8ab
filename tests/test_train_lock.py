"""One training per ``train.out_dir``: a second ``rosetta train`` into a folder a running one uses (here a
two-process torchrun, whose launcher holds the lock for its ranks) ends in one sentence naming it; the lock
dies with its holder, and a run started after a ``kill -9`` removes the checkpoint temporaries left behind."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from rosetta.layout import RunLayout
from train_fixtures import tiny_config, write_params

pytestmark = pytest.mark.slow


def test_second_training_in_a_busy_folder_is_refused_and_the_lock_dies_with_its_holder(tmp_path, tiny_data,
                                                                                         rosetta_cli):
    cfg = tiny_config(tmp_path, f"data.root={tiny_data}", "train.max_steps=100000", "train.batch_size=4",
                      "train.checkpoint_every=2", "train.eval_every=100000")
    params = write_params(cfg, tmp_path / "params.yaml")
    runs = RunLayout.from_config(cfg)
    first = subprocess.Popen(rosetta_cli.command("train", "-c", str(params), "-o", "train.nproc=2"), cwd=tmp_path,
                             env=rosetta_cli.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        # The launcher holds the lock for its ranks (tests/test_train_ddp.py trains them to the end under it).
        # Trained a step or two (its MLflow store made): a kill now leaves what a killed training leaves.
        while not (runs.train_lock.is_file() and runs.train_lock.read_text() and runs.last_checkpoint.is_file()):
            assert first.poll() is None and time.monotonic() < deadline, "the first training did not start"
            time.sleep(0.2)
        second = rosetta_cli("train", "-c", str(params), "-o", "train.max_steps=2", cwd=tmp_path, timeout=120)
        assert second.returncode == 2, second.stdout + second.stderr
        assert second.stderr.startswith(f"error: {runs.train}: another training is running in this folder "
                                        f"(pid {first.pid} on ")
        assert second.stderr.count("\n") == 1 and "set train.out_dir to another folder" in second.stderr
        assert first.poll() is None  # the refused run touched nothing of the running one
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the launcher and torchrun; each rank has a session of its own
        first.wait()
    # The ranks die with torchrun (rosetta.training.runtime.die_with_parent): none trains on without the lock.
    deadline = time.monotonic() + 60
    while ranks := _processes_reading(runs.train / "launch_params.yaml"):
        assert time.monotonic() < deadline, f"ranks {ranks} outlived their killed launcher"
        time.sleep(0.2)

    stale = [runs.checkpoints / ".last.pt.k9x2ab.tmp", runs.train / ".best.pt.q7w1zz.tmp"]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a checkpoint")
    third = rosetta_cli("train", "-c", str(params), "-o", "train.max_steps=2", "--no-resume", cwd=tmp_path,
                        timeout=240)
    assert third.returncode == 0, third.stdout + third.stderr
    assert not any(path.exists() for path in stale)
    assert runs.train_lock.read_text() == ""  # released: no holder named


def _processes_reading(params) -> list[int]:
    """Pids of live processes whose command line names ``params``."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(params).encode() in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:  # ended while we looked
            continue
    return pids

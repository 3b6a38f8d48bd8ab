"""A training run killed with SIGKILL and started again ends exactly where an uninterrupted run ends, here one
mixing the synth and real sources (real joining at step 8, augmented), so every stream's position resumes."""
from __future__ import annotations

import shutil
import signal
import subprocess
import time

import pytest
import torch

from rosetta.layout import RunLayout
from rosetta.recognition.checkpoint import load_checkpoint
from rosetta.training.trainer import run_training
from train_fixtures import tiny_config, write_params

pytestmark = pytest.mark.slow

STEPS = 30


def _assert_same_tensors(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same_tensors(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


MIXED = ["data.sources=[synth, real]", "train.batch_ratio={synth: 3, real: 1}", "train.source_start_step.real=8",
         "train.augment=[real]", "train.curriculum_steps=4"]


def test_killed_run_resumes_to_the_same_weights(tmp_path, monkeypatch, tiny_mixed_data, rosetta_cli):
    data = tiny_mixed_data
    common = [f"train.max_steps={STEPS}", "train.checkpoint_every=4", "train.eval_every=10", "train.log_every=5",
              *MIXED]

    reference = tiny_config(tmp_path / "reference", f"data.root={data}", *common)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = run_training(reference)
    assert result.steps == STEPS

    crashed = tiny_config(tmp_path / "crashed", f"data.root={data}", *common)
    params = write_params(crashed, tmp_path / "params.yaml")
    cmd = rosetta_cli.command("train", "-c", str(params))
    last = RunLayout.from_config(crashed).last_checkpoint
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=rosetta_cli.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = load_checkpoint(last)
    killed_at = killed["step"]
    assert 0 < killed_at < STEPS, "the run should have been killed mid-way"

    resumed = subprocess.run(cmd, cwd=tmp_path, env=rosetta_cli.env(), capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming from {last} at step {killed_at}" in resumed.stdout

    want = load_checkpoint(RunLayout.from_config(reference).last_checkpoint)
    got = load_checkpoint(last)
    assert got["step"] == want["step"] == STEPS
    for key in ("model", "optimizer", "scheduler"):
        _assert_same_tensors(got[key], want[key], key)
    assert got["state"]["position"] == want["state"]["position"]
    assert set(want["state"]["position"]) == {"synth", "real"}
    assert got["state"]["best_step"] == want["state"]["best_step"]
    # The resumed run continued the killed run's MLflow run rather than starting another.
    assert got["state"]["run_id"] == killed["state"]["run_id"]


def test_changed_params_start_a_new_run(tmp_path, monkeypatch, capsys, tiny_data):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    data = tiny_data
    cfg = tiny_config(tmp_path, f"data.root={data}", "train.max_steps=6")
    run_training(cfg)
    first = load_checkpoint(RunLayout.from_config(cfg).last_checkpoint)
    again = run_training(tiny_config(tmp_path, f"data.root={data}", "train.max_steps=6", "train.log_every=2"))
    assert again.run_id == first["state"]["run_id"]  # operational settings resume (here: nothing left to do)
    changed = run_training(tiny_config(tmp_path, f"data.root={data}", "train.max_steps=6", "train.lr=1e-3"))
    assert "written under other params or data (train.lr: 0.002 -> 0.001)" in capsys.readouterr().out
    assert changed.run_id != first["state"]["run_id"]
    assert changed.steps == 6


def test_a_finished_run_on_other_training_data_is_not_resumed(tmp_path, monkeypatch, capsys, tiny_data):
    # Same params, same sizes, other pixels (a re-rendered data set): the old model must not be handed out.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    cfg = tiny_config(tmp_path, f"data.root={data}", "train.max_steps=4")
    first = run_training(cfg)
    mdb = next((data / "lmdb").glob("*/train/data.mdb"))
    raw = bytearray(mdb.read_bytes())
    raw[-1] ^= 0xFF  # one byte of the last page: the sizes and labels stay the same
    mdb.write_bytes(bytes(raw))
    again = run_training(cfg)
    assert "written under other params or data (data_sha256: " in capsys.readouterr().out
    assert again.run_id != first.run_id and again.steps == 4


def test_a_resumed_run_logs_each_step_once(tmp_path, tiny_data, rosetta_cli):
    """Killed (SIGKILL) after it logged steps past its last checkpoint, then started again: the resumed training
    repeats those steps, and its MLflow run holds each metric once per step all the same."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    cfg = tiny_config(tmp_path, f"data.root={tiny_data}", "train.max_steps=24", "train.checkpoint_every=6",
                      "train.log_every=1", "train.eval_every=12")
    cmd = rosetta_cli.command("train", "-c", str(write_params(cfg, tmp_path / "params.yaml")))
    runs = RunLayout.from_config(cfg)
    uri = cfg.mlflow.tracking_uri
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=rosetta_cli.env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    try:
        while True:  # held still at each look: killed once it logged a step its last checkpoint does not hold
            assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
            time.sleep(0.05)
            if not runs.last_checkpoint.exists():
                continue
            proc.send_signal(signal.SIGSTOP)
            last = load_checkpoint(runs.last_checkpoint)
            run_id = last["state"]["run_id"]
            try:
                logged = [m.step for m in MlflowClient(uri).get_metric_history(run_id, "loss")]
            except MlflowException:  # held still while it wrote: the store is locked until it goes on
                logged = []
            if max(logged, default=0) > last["step"]:
                break
            proc.send_signal(signal.SIGCONT)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    resumed = subprocess.run(cmd, cwd=tmp_path, env=rosetta_cli.env(), capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    for key in ("loss", "lr"):
        steps = [m.step for m in MlflowClient(uri).get_metric_history(run_id, key)]
        assert sorted(steps) == list(range(1, 25)), (key, sorted(steps))

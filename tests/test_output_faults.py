"""Outputs under faults: a run folder of someone else's is refused before anything in it is touched, a failed
export keeps the file it would have replaced, and a disk that fills up during training is one sentence, keeps
the last checkpoint and resumes from it once there is room (a real tmpfs, or a file-size limit)."""
from __future__ import annotations

import shutil
import subprocess

import pytest
import torch

from disk_fixtures import SmallDisk
from model_fixtures import config
from rosetta.delivery.export import ExportError, export_checkpoint
from rosetta.errors import RosettaError
from rosetta.layout import RunLayout
from rosetta.training.trainer import run_training
from rosetta_infer.onnx_runtime import int8_path
from train_fixtures import tiny_config, write_params

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_run_folder_of_someone_elses_is_refused_before_anything_is_touched(tmp_path, tiny_data, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mine = tmp_path / "mine"
    mine.mkdir()
    files = {"best.pt": b"my own model", "run.json": b'{"mine": true}', ".notes.tmp": b"notes in progress"}
    for name, data in files.items():
        (mine / name).write_bytes(data)
    cfg = tiny_config(tmp_path, f"data.root={tiny_data}", f"train.out_dir={mine}", "train.max_steps=2")
    with pytest.raises(RosettaError) as refused:
        run_training(cfg)
    assert str(refused.value) == (f"{mine}: the folder holds files and was not made by rosetta (no .rosetta-run in "
                                  "it); set train.out_dir to a new or empty folder, or empty it yourself")
    assert {p.name: p.read_bytes() for p in mine.iterdir()} == files
    # A new or empty folder is taken and marked; a folder trained into before the marker existed (it holds the
    # lock file of its training) is taken as well.
    for folder in (tmp_path / "new", tmp_path / "empty", tmp_path / "older"):
        folder.mkdir(exist_ok=True)
        if folder.name == "older":
            (folder / ".train.lock").touch()
            (folder / "best.pt").write_bytes(b"an earlier run's")
        run_training(tiny_config(tmp_path, f"data.root={tiny_data}", f"train.out_dir={folder}", "train.max_steps=2"))
        assert (folder / ".rosetta-run").is_file() and (folder / "best.pt").read_bytes()[:2] == b"PK"


def test_a_failed_export_keeps_the_file_it_would_have_replaced(tmp_path, tiny_data, untrained_model, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "o.onnx"
    shutil.copy(untrained_model.onnx, out)
    int8_path(out).write_bytes(b"the int8 model of the o.onnx there")
    (tmp_path / "parity.json").write_text("the parity report of the o.onnx there")
    before = out.read_bytes()
    strict = config(f"data.root={tiny_data}", "export.parity_samples=4", "export.batch_size=4",
                    "export.max_abs_diff=1e-30")  # no export passes it
    with pytest.raises(ExportError) as refused:
        export_checkpoint(untrained_model.best, out, strict, tmp_path / "parity.json")
    assert str(refused.value).startswith(f"{out}: the ONNX export failed the parity gate (")
    assert str(refused.value).endswith("nothing was written; the earlier o.onnx there was kept as it was")
    assert out.read_bytes() == before and int8_path(out).read_bytes() == b"the int8 model of the o.onnx there"
    assert (tmp_path / "parity.json").read_text() == "the parity report of the o.onnx there"  # still its pair
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.int8.onnx", "o.onnx", "parity.json"]  # no temporary


@pytest.mark.slow
def test_a_full_disk_during_training_keeps_the_last_checkpoint_and_resumes(tmp_path, tiny_data, tiny_run,
                                                                           rosetta_cli):
    """The run folder on a small filesystem with room for one last.pt and a half: the first checkpoint (step 3) is
    written, the next one cannot be (a checkpoint is replaced through a second file), and the run ends in one
    sentence; with room again the same command resumes at step 3."""
    last = (RunLayout.from_config(tiny_run.cfg).last_checkpoint).stat().st_size
    disk = SmallDisk(tmp_path / "disk", (1.5 * last + 256 * 1024) / 2**20)
    try:
        cfg = tiny_config(tmp_path, f"data.root={tiny_data}", f"train.out_dir={disk.path / 'run'}")
        params = write_params(cfg, tmp_path / "params.yaml")
        command = rosetta_cli.command("train", "-c", str(params))
        full = subprocess.run(command, cwd=tmp_path, env=rosetta_cli.env(), capture_output=True, text=True,
                              timeout=600, preexec_fn=disk.preexec())
        assert full.returncode == 2, (disk.kind, full.stdout, full.stderr)
        error = full.stderr.strip().splitlines()[-1]
        runs = RunLayout.from_config(cfg)
        assert error.startswith(f"error: {runs.checkpoints}: no room left to write the checkpoint "), error
        assert "free some space and run the same command again" in error and "Traceback" not in full.stderr
        assert torch.load(runs.last_checkpoint, weights_only=True)["step"] == 3
        assert not list(runs.train.rglob("*.tmp"))  # nothing half-written
        disk.resize(64)
        again = subprocess.run(command, cwd=tmp_path, env=rosetta_cli.env(), capture_output=True, text=True,
                               timeout=600, preexec_fn=disk.preexec())
        assert again.returncode == 0, again.stderr
        assert f"resuming from {runs.last_checkpoint} at step 3/12" in again.stdout
        assert torch.load(runs.last_checkpoint, weights_only=True)["step"] == 12
    finally:
        disk.close()

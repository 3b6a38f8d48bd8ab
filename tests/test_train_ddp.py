"""Two-process DistributedDataParallel on the CPU (gloo), launched by ``train.nproc=2`` through torchrun."""
from __future__ import annotations

import json
import re

import pytest
import torch

from rosetta.layout import RunLayout
from rosetta.modeling import build_model
from rosetta.recognition.checkpoint import load_checkpoint
from rosetta.training.trainer import weights_digest
from train_fixtures import tiny_config, write_params

pytestmark = pytest.mark.slow


def test_two_gloo_ranks_train_to_identical_weights(tmp_path, tiny_data, rosetta_cli):
    cfg = tiny_config(tmp_path, f"data.root={tiny_data}", "train.max_steps=6", "train.curriculum_steps=2",
                      "train.batch_size=4", "train.checkpoint_every=3", "train.eval_every=3")
    params = write_params(cfg, tmp_path / "params.yaml")
    proc = rosetta_cli("train", "-c", str(params), "-o", "train.nproc=2", cwd=tmp_path, timeout=400)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "--nproc-per-node 2" in out
    assert "batch 4 x 2 process(es)" in out
    digests = dict(re.findall(r"rank (\d)/2: final weights sha256 ([0-9a-f]{64})", out))
    assert set(digests) == {"0", "1"}
    assert digests["0"] == digests["1"]

    # Only rank 0 wrote files, and they hold the weights both ranks ended with.
    runs = RunLayout.from_config(cfg)
    info = json.loads(runs.run_json.read_text())
    assert info["steps"] == 6 and info["run_id"]
    ckpt = load_checkpoint(runs.last_checkpoint)
    model = build_model(cfg.model, 37)
    model.load_state_dict(ckpt["model"])
    assert weights_digest(model) == digests["0"]
    # The global batch (4 per rank x 2) walks the data: two steps over its first 16 samples (the curriculum's
    # head pass), then epoch 0 (40 samples make 5 steps an epoch) up to its fourth step.
    assert "the first 2 steps read only synth's first 16 samples" in out
    assert ckpt["state"]["position"] == {"synth": [0, 32]}
    assert torch.isfinite(torch.tensor([r[1] for r in ckpt["state"]["loss_rows"]])).all()

"""A non-finite loss skips its step and is counted; ``train.max_bad_steps`` in a row stop the run."""
from __future__ import annotations

import json

import pytest
import torch

from rosetta.errors import RosettaError
from rosetta.layout import RunLayout
from rosetta.modeling.losses.rec_ctc_loss import CTCLoss
from rosetta.training.trainer import run_training
from train_fixtures import tiny_config

pytestmark = pytest.mark.slow


def poison_losses(monkeypatch, bad_calls: set[int] | None):
    """Make the loss NaN on the given 1-based calls (every call when None)."""
    original = CTCLoss.forward
    calls = {"n": 0}

    def forward(self, *args):
        calls["n"] += 1
        loss = original(self, *args)
        return loss * float("nan") if bad_calls is None or calls["n"] in bad_calls else loss

    monkeypatch.setattr(CTCLoss, "forward", forward)


def test_non_finite_losses_are_skipped_and_counted(tmp_path, monkeypatch, tiny_data):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = tiny_config(tmp_path, f"data.root={tiny_data}", "train.max_steps=8")
    poison_losses(monkeypatch, {3, 4, 7})
    result = run_training(cfg)
    assert result.steps == 8
    metrics = json.loads(RunLayout.from_config(cfg).train_metrics.read_text())
    assert metrics["skipped_steps"] == 3
    state = torch.load(RunLayout.from_config(cfg).last_checkpoint, weights_only=True)["state"]
    assert state["skipped_steps"] == 3 and state["bad_streak"] == 0


def test_too_many_non_finite_losses_in_a_row_stop_the_run(tmp_path, monkeypatch, tiny_data):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = tiny_config(tmp_path, f"data.root={tiny_data}", "train.max_bad_steps=3")
    poison_losses(monkeypatch, None)
    with pytest.raises(RosettaError, match=r"3 non-finite losses in a row \(train.max_bad_steps\)"):
        run_training(cfg)
    from mlflow import MlflowClient

    client = MlflowClient(cfg.mlflow.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(cfg.mlflow.experiment).experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]

"""MLflow: a tiny training plus evaluation leave one run holding params, provenance, step and benchmark
metrics, artifacts and a loadable logged model, in a real sqlite store."""
from __future__ import annotations

import json

import pytest
import torch

from rosetta.config import DataLayout
from rosetta.evaluate import evaluate_benchmarks
from rosetta.train import RUN_JSON, run_training
from rosetta.tracking import artifact_location, data_version
from train_fixtures import tiny_config, tiny_data

pytestmark = pytest.mark.slow

DVC_LOCK = """schema: '2.0'
stages:
  convert:
    cmd: python stages/convert.py
    outs:
    - path: data/lmdb
      hash: md5
      md5: 0123456789abcdef0123456789abcdef.dir
      size: 1000
      nfiles: 4
  validate:
    cmd: python stages/validate.py
    outs:
    - path: data/reports/validation
      hash: md5
      md5: fedcba9876543210fedcba9876543210.dir
"""


def test_training_and_evaluation_land_in_one_mlflow_run(tmp_path, monkeypatch):
    import mlflow
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvc.lock").write_text(DVC_LOCK)
    assert data_version() == {"data/lmdb": "0123456789abcdef0123456789abcdef.dir"}
    cfg = tiny_config(tmp_path, f"data.root={tiny_data(tmp_path / 'data')}", "train.log_model=true",
                      "mlflow.experiment=tiny")
    result = run_training(cfg)

    info = json.loads((tmp_path / "runs" / "train" / RUN_JSON).read_text())
    assert info["run_id"] == result.run_id
    assert info["tracking_uri"] == cfg.mlflow.tracking_uri
    assert info["experiment"] == "tiny"
    assert info["best_checkpoint"] == str(result.best_checkpoint) and info["steps"] == 12

    summary = evaluate_benchmarks(result.best_checkpoint, DataLayout.from_config(cfg).benchmarks, cfg,
                                  tmp_path / "runs" / "eval", result.run_id)

    client = MlflowClient(cfg.mlflow.tracking_uri)
    exp = client.get_experiment_by_name("tiny")
    assert exp.artifact_location == artifact_location(cfg.mlflow.tracking_uri)
    assert exp.artifact_location == (tmp_path / "mlartifacts").as_uri()
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["train.lr"] == "0.002" and params["model.backbone"] == "mobilenet_v3"
    assert set(cfg.flat()) <= set(params)
    tags = run.data.tags
    assert tags["data_version.data/lmdb"] == "0123456789abcdef0123456789abcdef.dir"
    assert "data_version" in tags and "git_commit" in tags
    assert [m.step for m in client.get_metric_history(result.run_id, "loss")] == [3, 6, 9, 12]
    assert [m.step for m in client.get_metric_history(result.run_id, "val_accuracy")] == [6, 12]
    for key in ("lr", "images_per_s", "val_norm_edit_dis"):
        assert key in run.data.metrics
    metrics = run.data.metrics
    assert metrics["synth_test/accuracy"] == pytest.approx(summary["sets"]["synth_test"]["accuracy"])
    for key in ("synth_test/norm_edit_dis", "accuracy_total", "accuracy_mean", "norm_edit_dis_total",
                "eval_images_per_s"):
        assert key in metrics

    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    artifacts |= {a.path for d in ("checkpoints", "eval", "plots") for a in client.list_artifacts(result.run_id, d)}
    assert {"checkpoints/best.pt", "train_metrics.json", "curve.png", "plots/train_loss.csv",
            "eval/metrics.json", "eval/metrics.md", "eval/gallery.png"} <= artifacts

    models = client.search_logged_models(experiment_ids=[exp.experiment_id])
    assert [(m.name, m.source_run_id) for m in models] == [("pytorch_model", result.run_id)]
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    model = mlflow.pytorch.load_model(models[0].model_uri)
    with torch.no_grad():
        probs = model(torch.zeros(2, 3, 32, 160))
    assert probs.shape == (2, 40, 37)

"""MLflow: a tiny training (the session's ``tiny_run``) plus evaluation leave a training run holding the result
params, provenance, step and benchmark metrics, artifacts and a loadable logged model, with the evaluation nested
under it, in a real sqlite store."""
from __future__ import annotations

import json

import pytest
import torch

from rosetta.config import result_params
from rosetta.evaluation.evaluate import evaluate_model
from rosetta.layout import RunLayout
from rosetta.tracking.provenance import data_version
from rosetta.tracking.store import TAG_PARENT, artifact_location
from rosetta.training.trainer import result_from_run_json

pytestmark = pytest.mark.slow


def test_training_and_evaluation_land_in_one_mlflow_run(tiny_run, monkeypatch):
    import mlflow
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tiny_run.root)  # the run trained in this project folder; its dvc.lock names the data
    assert data_version() == {"data/lmdb": "0123456789abcdef0123456789abcdef.dir"}
    cfg, tmp_path = tiny_run.cfg, tiny_run.root
    result = result_from_run_json(RunLayout.from_config(cfg).run_json)

    info = json.loads(RunLayout.from_config(cfg).run_json.read_text())
    assert info["run_id"] == result.run_id
    assert info["tracking_uri"] == cfg.mlflow.tracking_uri
    assert info["experiment"] == "tiny"
    assert info["best_checkpoint"] == str(result.best_checkpoint) and info["steps"] == 12

    # As the evaluate stage calls it: the pipeline's best.pt, calibrated on the validation split it was chosen on.
    assert RunLayout.from_config(cfg).eval == tmp_path / "runs" / "eval"
    summary = evaluate_model(cfg, out_dir=RunLayout.from_config(cfg).eval, run_id=result.run_id)
    assert set(summary["validation"]) >= {"synth"}  # the accuracy best.pt was chosen on, from train_metrics.json
    assert summary["calibration"]["on"] == "all" and summary["calibration"]["count"] == 12  # synth's val split
    assert set(summary["calibration"]["ece"]) == {"mean", "min", "geometric"}
    assert json.loads(RunLayout.from_config(cfg).eval_metrics.read_text())["calibration"] == summary["calibration"]

    client = MlflowClient(cfg.mlflow.tracking_uri)
    exp = client.get_experiment_by_name("tiny")
    assert exp.artifact_location == artifact_location(cfg.mlflow.tracking_uri)
    assert exp.artifact_location == (tmp_path / "mlartifacts").as_uri()
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["train.lr"] == "0.002" and params["model.backbone.name"] == "MobileNetV3"
    assert set(params) == set(result_params(cfg))
    assert not {"prefect.mlflow_ui_url", "mlflow.run_name", "data.mjsynth.url", "train.out_dir"} & set(params)
    tags = run.data.tags
    assert tags["data_version.data/lmdb"] == "0123456789abcdef0123456789abcdef.dir"
    assert "data_version" in tags and "git_commit" in tags
    assert [m.step for m in client.get_metric_history(result.run_id, "loss")] == [3, 6, 9, 12]
    assert [m.step for m in client.get_metric_history(result.run_id, "val_accuracy")] == [6, 12]
    for key in ("lr", "train/throughput_img_s", "val_norm_edit_dis"):
        assert key in run.data.metrics
    assert all(m.value > 0 for m in client.get_metric_history(result.run_id, "lr"))  # the rate each step took
    metrics = client.get_run(result.run_id).data.metrics
    assert metrics["synth_test/accuracy"] == pytest.approx(summary["sets"]["synth_test"]["accuracy"], abs=1e-4)
    for key in ("synth_test/norm_edit_dis", "accuracy_total", "accuracy_mean", "norm_edit_dis_total",
                "eval/throughput_img_s", "calibration/ece_mean", "calibration/ece_min", "calibration/ece_geometric"):
        assert key in metrics
    assert all(round(metrics[k], 4) == metrics[k] for k in ("synth_test/accuracy", "val_accuracy", "accuracy_total"))
    # The pipeline's evaluation (given the run id) adds its line to the description at the top of the run page.
    note = client.get_run(result.run_id).data.tags["mlflow.note.content"]
    assert f"Benchmark accuracy: synth_test {summary['sets']['synth_test']['accuracy']:.4f}" in note
    assert "Params that differ from the defaults: `model.backbone" not in note and "`train.max_steps=12`" in note

    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    artifacts |= {a.path for d in ("checkpoints", "config", "plots") for a in client.list_artifacts(result.run_id, d)}
    assert {"checkpoints/best.pt", "train_metrics.json", "curve.png", "plots/train_loss.csv",
            "config/params.yaml"} <= artifacts
    nested = client.search_runs([exp.experiment_id], f"tags.`{TAG_PARENT}` = '{result.run_id}'")
    assert sorted(r.info.run_name for r in nested) == ["evaluate synth_test", "export"]  # tiny_run exported it
    (evaluation,) = [r for r in nested if r.info.run_name.startswith("evaluate")]
    assert evaluation.info.run_name == "evaluate synth_test" and "synth_test/accuracy" in evaluation.data.metrics
    assert {a.path for a in client.list_artifacts(evaluation.info.run_id, "eval")} == {
        "eval/metrics.json", "eval/metrics.md", "eval/gallery.png", "eval/reliability.png"}

    models = client.search_logged_models(experiment_ids=[exp.experiment_id])
    assert [(m.name, m.source_run_id) for m in models] == [("pytorch_model", result.run_id)]
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    model = mlflow.pytorch.load_model(models[0].model_uri)
    with torch.no_grad():
        probs = model(torch.zeros(2, 3, 32, 160))
    assert probs.shape == (2, 40, 37)

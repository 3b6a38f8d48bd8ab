"""The train and evaluate stages under the real ``dvc``, in a scratch git repository holding a copy of the
pipeline with tiny params: they run after the data stages, DVC reads their metrics and plots, and a second
``dvc repro`` has nothing to do."""
from __future__ import annotations

import json

import pytest
import yaml

from dvc_fixtures import TINY_DATA, always_changed, dvc, needs_dvc, project_copy, stages_run
from train_fixtures import TINY

pytestmark = [pytest.mark.slow, needs_dvc]


def test_dvc_repro_trains_evaluates_and_reports(tmp_path):
    repo = tmp_path / "repo"
    tiny_train = {o.split("=")[0]: yaml.safe_load(o.split("=", 1)[1]) for o in TINY}
    project_copy(repo, {**TINY_DATA, **tiny_train, "mlflow.tracking_uri": f"sqlite:///{repo / 'mlflow.db'}",
                        "data.real_benchmarks": ""})

    first = stages_run(dvc(repo, "repro", "evaluate"))
    # The real sets' stages: off here (data.real_benchmarks "", no ../shared/realtrain beside the copy): one line each.
    real = ["real_benchmarks", "convert_real", "real_train", "convert_real_train"]
    assert [s for s in first if s not in real] == ["download", "convert", "validate", "train", "evaluate"]
    assert set(real) <= set(first)
    run = json.loads((repo / "runs" / "train" / "run.json").read_text())
    assert run["tracking_uri"] == f"sqlite:///{repo / 'mlflow.db'}" and run["steps"] == 12
    assert (repo / "mlartifacts").is_dir()

    # Later stages' metrics (export, register) do not exist yet: DVC warns after the JSON, so read the JSON only.
    metrics = json.JSONDecoder().raw_decode(dvc(repo, "metrics", "show", "--json"))[0]
    files = next(iter(metrics.values()))["data"]
    assert files["runs/eval/metrics.json"]["data"]["sets"]["synth_test"]["count"] == 10
    assert files["runs/train/train_metrics.json"]["data"]["steps"] == 12
    plots = dvc(repo, "plots", "show", "--json", stdout_only=True)
    for name in ("runs/train/plots/train_loss.csv", "runs/train/plots/val_accuracy.csv", "runs/eval/gallery.png"):
        assert name in plots

    assert stages_run(dvc(repo, "repro", "evaluate")) == [s for s in real if s in always_changed(repo)]

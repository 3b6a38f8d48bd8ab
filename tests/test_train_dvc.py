"""The train and evaluate stages under the real ``dvc``, in a scratch git repository holding a copy of the
pipeline with tiny params: they run after the data stages, DVC reads their metrics and plots, and a second
``dvc repro`` has nothing to do."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rosetta.config import PROJECT_ROOT
from train_fixtures import TINY

VENV_BIN = Path(sys.executable).parent
DVC = VENV_BIN / "dvc"

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not DVC.exists(), reason="dvc is not installed in the venv")]


def _run(repo: Path, *args: str, stdout_only: bool = False) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update({"PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
                "GIT_CONFIG_NOSYSTEM": "1"})
    proc = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout if stdout_only else proc.stdout + proc.stderr


def _stages_run(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


def test_dvc_repro_trains_evaluates_and_reports(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(PROJECT_ROOT / "dvc.yaml", repo / "dvc.yaml")
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(PROJECT_ROOT / "stages", repo / "stages", ignore=skip)
    shutil.copytree(PROJECT_ROOT / "src", repo / "src", ignore=skip)
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    for dotted, value in [("data.synth.train_size", 40), ("data.synth.val_size", 10), ("data.synth.test_size", 10),
                          ("data.synth.vocabulary_size", 2000), ("data.workers", 1),
                          ("mlflow.tracking_uri", f"sqlite:///{repo / 'mlflow.db'}"),
                          *((o.split("=")[0], yaml.safe_load(o.split("=", 1)[1])) for o in TINY)]:
        *parents, last = dotted.split(".")
        node = params
        for part in parents:
            node = node[part]
        node[last] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(repo, "git", "init", "-q")
    _run(repo, str(DVC), "init", "-q")

    first = _run(repo, str(DVC), "repro", "evaluate")
    assert _stages_run(first) == ["download", "convert", "validate", "train", "evaluate"]
    run = json.loads((repo / "runs" / "train" / "run.json").read_text())
    assert run["tracking_uri"] == f"sqlite:///{repo / 'mlflow.db'}" and run["steps"] == 12
    assert (repo / "mlartifacts").is_dir()

    # Later stages' metrics (export, register) do not exist yet: DVC warns after the JSON, so read the JSON only.
    metrics = json.JSONDecoder().raw_decode(_run(repo, str(DVC), "metrics", "show", "--json"))[0]
    files = next(iter(metrics.values()))["data"]
    assert files["runs/eval/metrics.json"]["data"]["sets"]["synth_test"]["count"] == 10
    assert files["runs/train/train_metrics.json"]["data"]["steps"] == 12
    plots = _run(repo, str(DVC), "plots", "show", "--json", stdout_only=True)
    for name in ("runs/train/plots/train_loss.csv", "runs/train/plots/val_accuracy.csv", "runs/eval/gallery.png"):
        assert name in plots

    assert _stages_run(_run(repo, str(DVC), "repro", "evaluate")) == []

"""The data stages under the real ``dvc``, in a scratch git repository holding a copy of the pipeline."""
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

VENV_BIN = Path(sys.executable).parent
DVC = VENV_BIN / "dvc"

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not DVC.exists(), reason="dvc is not installed in the venv")]


def _run(repo: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "GIT_CONFIG_NOSYSTEM": "1"}
    proc = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def _set_params(repo: Path, **changes) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        node = params
        *parents, last = dotted.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def _stages_run(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


def test_dvc_repro_builds_data_then_skips_then_reruns_only_validate(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(PROJECT_ROOT / name, repo / name)
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(PROJECT_ROOT / "stages", repo / "stages", ignore=skip)
    # The code runs from the editable install; the copy is there for the stages' deps to hash.
    shutil.copytree(PROJECT_ROOT / "src", repo / "src", ignore=skip)
    _set_params(repo, **{"data.synth.train_size": 40, "data.synth.val_size": 10, "data.synth.test_size": 10,
                         "data.synth.vocabulary_size": 2000, "data.workers": 1})
    _run(repo, "git", "init", "-q")
    _run(repo, str(DVC), "init", "-q")

    first = _run(repo, str(DVC), "repro", "validate")
    assert _stages_run(first)[:3] == ["download", "convert", "validate"]
    data = repo / "data"
    for split in ("train", "val", "test"):
        assert (data / "lmdb" / "synth" / split / "data.mdb").is_file()
    assert (data / "lmdb" / "benchmarks" / "synth_test" / "data.mdb").is_file()
    assert not list(data.rglob("lock.mdb"))
    metrics = json.loads((data / "reports" / "data_metrics.json").read_text())
    assert metrics["synth_train"]["samples"] == 40 and metrics["synth_train"]["passed"]
    assert metrics["benchmarks_synth_test"]["samples"] == 10
    assert (data / "reports" / "validation" / "synth_val.json").is_file()
    assert (data / "reports" / "plots" / "label_length" / "synth_test.csv").is_file()
    assert "synth_train" in _run(repo, str(DVC), "metrics", "show", "--json")

    second = _run(repo, str(DVC), "repro", "validate")
    assert _stages_run(second) == [], second

    _set_params(repo, **{"data.validation.min_height": 10})
    third = _run(repo, str(DVC), "repro", "validate")
    assert _stages_run(third) == ["validate"], third

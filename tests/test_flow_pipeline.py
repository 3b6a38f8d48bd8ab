"""The flow's steps outside Prefect: the data check's one-sentence errors, the params the DVC data stages
must share, and the Markdown report."""
from __future__ import annotations

import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prefect.states import Failed

from model_fixtures import config
from rosetta.config import PROJECT_ROOT, ConfigError
from rosetta.errors import RosettaError
from rosetta.pipeline import DataStageError, Links, check_data_params, ensure_data, flow_config, report_markdown
from rosetta.registry import Decision


def test_missing_data_is_one_sentence(tmp_path):
    cfg = config(f"data.root={tmp_path / 'data'}")
    with pytest.raises(RosettaError, match=r"synth/train: no synth/train LMDB there; build the data with `dvc repro"):
        ensure_data(cfg, tmp_path)  # no dvc.yaml there: nothing to rebuild with


def test_data_overrides_must_match_params_yaml(tmp_path):
    shutil.copy(PROJECT_ROOT / "params.yaml", tmp_path / "params.yaml")
    check_data_params(flow_config(tmp_path / "params.yaml", ["train.lr=1e-3"]), tmp_path)
    with pytest.raises(ConfigError, match=r"^data\.synth\.train_size: the flow's value differs from params\.yaml's"):
        check_data_params(flow_config(tmp_path / "params.yaml", ["data.synth.train_size=10"]), tmp_path)


def test_gpus_become_nproc_on_cuda():
    cfg = flow_config(PROJECT_ROOT / "params.yaml", [], gpus=4)
    assert cfg.train.nproc == 4 and cfg.train.device == "cuda"
    with pytest.raises(ConfigError, match="^gpus: 0 must be at least 1"):
        flow_config(PROJECT_ROOT / "params.yaml", [], gpus=0)


def test_report_has_the_table_parity_decision_and_links():
    cfg = config()
    metrics = {"sets": {"IIIT5k_3000": {"accuracy": 0.8, "norm_edit_dis": 0.9, "count": 3000}},
               "accuracy_total": 0.8, "accuracy_mean": 0.8, "norm_edit_dis_total": 0.9, "count_total": 3000,
               "images_per_s": 500.0}
    parity = {"samples": 512, "max_abs_diff": 2e-7, "same_text": 1.0}
    decision = Decision("rosetta", "4", True, "beats production v3", "accuracy_total", 0.8, "3", 0.7)
    links = Links("http://mlflow/#/experiments/1/runs/abc123", "http://mlflow/#/models/rosetta/versions/4")
    md = report_markdown(cfg, metrics, parity, decision, "abc123", links)
    assert "| IIIT5k_3000 | 3000 | 80.00 % |" in md
    assert "512 images: max abs difference 2e-07" in md
    assert "[v4](http://mlflow/#/models/rosetta/versions/4): **promoted**: beats production v3" in md
    assert "MLflow run: [abc123](http://mlflow/#/experiments/1/runs/abc123)" in md


def test_a_failing_download_stage_is_one_sentence_and_retryable(tmp_path):
    """A real ``dvc repro validate`` whose download stage fails the way a flaky server makes it fail."""
    shutil.copy(PROJECT_ROOT / "params.yaml", tmp_path / "params.yaml")
    sentence = "https://example.org/x.tar: the server answered 503; try again later"
    fail = f"import sys; print('error: {sentence}'); sys.exit(2)"
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {
        "download": {"cmd": f'python -c "{fail}"', "outs": ["raw"]},
        "validate": {"cmd": "python -c pass", "deps": ["raw"]}}}))
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1"}
    for cmd in (["git", "init", "-q"], [str(Path(sys.executable).parent / "dvc"), "init", "-q"]):
        subprocess.run(cmd, cwd=tmp_path, env=env, check=True, capture_output=True)
    with pytest.raises(DataStageError) as info:
        ensure_data(config(), tmp_path)
    assert str(info.value) == sentence
    assert info.value.stage == "download" and info.value.retryable

    flow_module = runpy.run_path(str(PROJECT_ROOT / "flows" / "train_rosetta.py"))
    retry = flow_module["_is_download_failure"]
    assert retry(None, None, Failed(data=info.value))
    assert not retry(None, None, Failed(data=DataStageError("validation failed", "validate")))
    assert not retry(None, None, Failed(data=ConfigError("train.lr: -1.0 must be > 0")))

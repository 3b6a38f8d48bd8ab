"""The flow's hold on DVC outside Prefect: overrides written into params.yaml (checked first, comments kept), a
failing stage's own sentence, one flow run per project folder, experiments DVC lists, and the report."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from model_fixtures import config
from rosetta.config import ConfigError, load_config
from rosetta.errors import RosettaError
from rosetta.orchestration import dvc_project, report
from rosetta.params import PROJECT_ROOT, parse_override

DVC = str(Path(sys.executable).parent / "dvc")
ENV = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t",
       "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}


def _repo(root: Path, stages: dict) -> Path:
    """A git + DVC repository with the project's params.yaml and ``stages``, committed."""
    shutil.copy(PROJECT_ROOT / "params.yaml", root / "params.yaml")
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    for cmd in (["git", "init", "-q"], [DVC, "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=root, env=ENV, check=True, capture_output=True)
    return root


def test_gpus_become_nproc_on_cuda():
    assert dvc_project.flow_overrides(["train.lr=1e-3"], 4) == ["train.lr=1e-3", "train.nproc=4", "train.device=cuda"]
    with pytest.raises(ConfigError, match="^gpus: 0 must be at least 1"):
        dvc_project.flow_overrides([], 0)


def test_overrides_go_into_params_yaml_with_its_comments(tmp_path):
    shutil.copy(PROJECT_ROOT / "params.yaml", tmp_path / "params.yaml")
    before = (tmp_path / "params.yaml").read_text()
    with pytest.raises(ConfigError, match=r"^train\.lr: -1\.0 must be > 0$"):
        dvc_project.apply_params(tmp_path, ["train.lr=-1"])
    assert (tmp_path / "params.yaml").read_text() == before  # refused before anything was written

    cfg = dvc_project.apply_params(tmp_path, ["train.max_steps=50", "data.synth.train_size=300", "data.sources=[synth]"])
    text = (tmp_path / "params.yaml").read_text()
    assert cfg.train.max_steps == 50 and cfg.data.synth.train_size == 300
    assert load_config(tmp_path / "params.yaml") == cfg
    assert "# PaddleOCR dictionary file" in text and text.count("\n") == before.count("\n")
    assert dvc_project.apply_params(tmp_path, []) == cfg and (tmp_path / "params.yaml").read_text() == text


def test_an_override_in_e_notation_goes_into_params_yaml_as_a_number(tmp_path):
    """The README's `train.lr=2e-3` (YAML 1.1 reads 2e-3, without a dot, as a string) is written as the number
    0.002, which DVC, MLflow and any YAML reader see as one; a quoted '2e-3' stays what it says."""
    shutil.copy(PROJECT_ROOT / "params.yaml", tmp_path / "params.yaml")
    dvc_project.apply_params(tmp_path, ["train.lr=2e-3"])
    assert yaml.safe_load((tmp_path / "params.yaml").read_text())["train"]["lr"] == 0.002
    assert parse_override("a.b='2e-3'") == (["a", "b"], "2e-3") and parse_override("a.b=-1E5") == (["a", "b"], -1e5)


def test_the_flow_needs_the_project_folder(tmp_path):
    with pytest.raises(RosettaError, match=r"no dvc\.yaml and params\.yaml there; run the flow from the project"):
        dvc_project.project_folder(tmp_path)


def test_one_flow_run_per_project_folder(tmp_path):
    with dvc_project.project_lock(tmp_path):
        with pytest.raises(RosettaError, match="another flow run is using this project folder"):
            with dvc_project.project_lock(tmp_path):
                pass
    with dvc_project.project_lock(tmp_path):  # released at the end of the first
        pass


@pytest.mark.slow
def test_a_failing_stage_is_its_own_sentence(tmp_path):
    """A real ``dvc repro`` whose stage fails the way a stage script does: ``error: <sentence>``, exit 2."""
    sentence = "https://example.org/x.tar: the server answered 503; try again later"
    (tmp_path / "fail.py").write_text(f"import sys\nprint('error: {sentence}', file=sys.stderr)\nsys.exit(2)\n")
    repo = _repo(tmp_path, {"download": {"cmd": "python fail.py", "outs": ["raw"]}})
    with pytest.raises(RosettaError) as info:
        dvc_project.dvc(repo, "repro", "download")
    assert str(info.value) == sentence


@pytest.mark.slow
def test_a_run_is_saved_as_an_experiment_with_its_metrics(tmp_path):
    """The metrics live under git-ignored runs/, as in the project: cached, so the experiment still carries them."""
    (tmp_path / "stage.py").write_text(
        "import json, os, yaml\nsteps = yaml.safe_load(open('params.yaml'))['train']['max_steps']\n"
        "os.makedirs('runs', exist_ok=True)\njson.dump({'steps': steps}, open('runs/m.json', 'w'))\n")
    (tmp_path / ".gitignore").write_text("/runs/\n")
    repo = _repo(tmp_path, {"train": {"cmd": "python stage.py", "params": ["train.max_steps"],
                                      "metrics": ["runs/m.json"]}})
    dvc_project.apply_params(repo, ["train.max_steps=7"])
    dvc_project.dvc(repo, "repro", "train")
    assert dvc_project.save_experiment(repo, "flow-tiny-run") == "flow-tiny-run"
    listed = subprocess.run([DVC, "exp", "show", "--json"], cwd=repo, env=ENV, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    exps = {e["name"]: e["revs"][0]["data"] for rev in json.loads(listed.stdout)
            for e in (rev.get("experiments") or [])}
    assert exps["flow-tiny-run"]["metrics"]["runs/m.json"]["data"] == {"steps": 7}, listed.stdout
    assert exps["flow-tiny-run"]["params"]["params.yaml"]["data"]["train"]["max_steps"] == 7
    assert "Data and pipelines are up to date" in dvc_project.dvc(repo, "status")


def test_report_has_the_table_parity_decision_links_and_where_they_work():
    cfg = config()
    metrics = {"sets": {"IIIT5k_3000": {"accuracy": 0.8, "norm_edit_dis": 0.9, "count": 3000}},
               "accuracy_total": 0.8, "accuracy_mean": 0.8, "norm_edit_dis_total": 0.9, "count_total": 3000,
               "images_per_s": 500.0}
    parity = {"samples": 512, "max_abs_diff": 2e-7, "same_text": 1.0}
    decision = {"model_name": "rosetta", "version": "4", "promoted": True, "reason": "beats production v3"}
    run = {"run_id": "abc123", "tracking_uri": "sqlite:////srv/rosetta/mlflow.db"}
    links = report.Links("http://mlflow/#/experiments/1/runs/abc123", "http://mlflow/#/models/rosetta/versions/4")
    md = report.report_markdown(cfg, metrics, parity, decision, run, links, "flow-tiny-run")
    assert "| IIIT5k_3000 | 3000 | 0.8000 |" in md
    assert "512 images: max abs difference 2e-07" in md
    assert "[v4](http://mlflow/#/models/rosetta/versions/4): **promoted**: beats production v3" in md
    assert "MLflow run: [abc123](http://mlflow/#/experiments/1/runs/abc123)" in md
    assert ("The links open while `mlflow ui --backend-store-uri sqlite:////srv/rosetta/mlflow.db` serves "
            "http://127.0.0.1:5000") in md
    assert "DVC experiment: `flow-tiny-run`" in md
    plain = report.report_markdown(cfg, metrics, parity, decision, run, report.Links())
    assert "MLflow run: `abc123`" in plain and "MLflow store: `sqlite:////srv/rosetta/mlflow.db`" in plain


def test_a_tracking_server_s_runs_link_to_its_own_ui_not_a_local_mlflow_ui():
    cfg = config()
    assert report.mlflow_ui(cfg, "http://10.0.0.5:5010/") == "http://10.0.0.5:5010"
    assert report.mlflow_ui(cfg, "sqlite:////srv/rosetta/mlflow.db") == "http://127.0.0.1:5000"
    metrics = {"sets": {}, "accuracy_total": 0.8, "accuracy_mean": 0.8, "norm_edit_dis_total": 0.9,
               "count_total": 3000, "images_per_s": 500.0}
    parity = {"samples": 512, "max_abs_diff": 2e-7, "same_text": 1.0}
    decision = {"model_name": "rosetta", "version": "4", "promoted": False, "reason": "below production v3"}
    run = {"run_id": "abc123", "tracking_uri": "http://10.0.0.5:5010"}
    links = report.Links("http://10.0.0.5:5010/#/experiments/1/runs/abc123")
    md = report.report_markdown(cfg, metrics, parity, decision, run, links)
    assert "The links open in the tracking server's own UI, http://10.0.0.5:5010, which stores" in md
    assert "127.0.0.1:5000" not in md and "mlflow ui" not in md

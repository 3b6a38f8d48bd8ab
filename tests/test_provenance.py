"""What a run says about itself, without a server: its name leads with the recipe settings it changed, and its
git commit is dirty only when tracked code differs (not the files a run writes itself), and it names the DVC
experiment and the Prefect flow run it belongs to."""
from __future__ import annotations

import os
import subprocess
from datetime import datetime

from model_fixtures import config
from rosetta.tracking.provenance import DVC_EXPERIMENT_ENV, FLOW_RUN_URL_ENV, git_commit, provenance_tags
from rosetta.tracking.runs import run_name


def test_a_run_name_leads_with_the_recipe_not_the_run_size():
    """A smoke run's steps and data sizes come after what it tries (here augmentation and the learning rate)."""
    cfg = config("train.max_steps=60", "train.warmup_steps=20", "train.batch_size=16", "data.synth.train_size=400",
                 "train.augment=true", "train.lr=0.001", "train.log_every=5")
    name = run_name(cfg, datetime(2026, 11, 27, 23, 37, 24))
    assert name == "mobilenet_v3 large x0.5 lr=0.001 augment=True warmup_steps=20 batch_size=16 +2 11-27 23:37:24"
    assert "log_every" not in run_name(config("train.log_every=5"))  # operational: never in a name


def _git(repo, *args: str) -> None:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)


def test_git_commit_is_dirty_only_when_tracked_code_differs(tmp_path):
    for name, text in (("params.yaml", "seed: 1\n"), ("dvc.lock", "stages: {}\n"), ("data.dvc", "outs: []\n"),
                       ("src/code.py", "x = 1\n")):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "project")
    clean = git_commit(tmp_path)
    assert clean and not clean.endswith("-dirty")
    # What `dvc exp run -S`, a flow run and `dvc repro` write leaves the code as committed.
    for name in ("params.yaml", "dvc.lock", "data.dvc"):
        (tmp_path / name).write_text("changed: true\n")
    (tmp_path / "untracked.py").write_text("y = 2\n")
    assert git_commit(tmp_path / "src") == clean
    (tmp_path / "src" / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path / "src") == f"{clean}-dirty"


def test_provenance_names_the_dvc_experiment_and_the_flow_run(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(DVC_EXPERIMENT_ENV, raising=False)
    monkeypatch.delenv(FLOW_RUN_URL_ENV, raising=False)
    assert {"dvc_experiment", "prefect_flow_run"}.isdisjoint(provenance_tags(tmp_path))
    monkeypatch.setenv(DVC_EXPERIMENT_ENV, "flow-tiny-run")
    monkeypatch.setenv(FLOW_RUN_URL_ENV, "http://127.0.0.1:4200/runs/flow-run/0d3c")
    tags = provenance_tags(tmp_path)
    assert tags["dvc_experiment"] == "flow-tiny-run" and tags["prefect_flow_run"].endswith("/flow-run/0d3c")

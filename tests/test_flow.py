"""The Prefect flow end to end, everything really started, following the README's orchestration steps in a
copy of the project (a git + DVC repository with tiny params): ``scripts/prefect_local.py up`` (what
``make prefect-up`` runs: a server on a free port with its own PREFECT_HOME, the work pools, a worker),
``prefect deploy --all`` in forced-interactive mode with nothing to answer, then
``prefect deployment run 'train-rosetta/local' --watch``. DVC, MLflow and Prefect's API are then asked what
happened, and DVC for the metrics and plots the stages wrote (the one end-to-end `dvc repro` of the model stages
in the suite). Each test runs its own deployment run, so one failure does not hide the others."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from dvc_fixtures import DVC, TINY_DATA, VENV_BIN, project_copy
from rosetta.params import PROJECT_ROOT

PREFECT = VENV_BIN / "prefect"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (PREFECT.exists() and DVC.exists()), reason="prefect and dvc must be in the venv")]

# Data and model small enough for seconds; one loader process, so its shutdown is exercised.
PARAMS = {
    **TINY_DATA,
    "model.backbone.model_name": "small", "model.backbone.scale": 0.35,
    "train.optimizer": "adamw", "train.lr": 2e-3, "train.warmup_steps": 0, "train.batch_size": 8,
    "train.max_steps": 6, "train.eval_every": 3, "train.checkpoint_every": 3, "train.log_every": 3,
    "train.num_workers": 1, "train.threads": 1, "train.nproc": 1, "train.log_model": False, "train.device": "cpu",
    "eval.batch_size": 16, "eval.gallery_size": 2, "export.parity_samples": 8, "export.batch_size": 4,
    "registry.min_score": 0.0,  # six steps read nothing; the floor has its own tests
    "prefect.data_retry_delay_s": 1,
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(root: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update({"PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", "PREFECT_HOME": str(root / "prefect"),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false",
                "PREFECT_LOGGING_LEVEL": "INFO", "PREFECT_WORKER_QUERY_SECONDS": "1", "DVC_NO_ANALYTICS": "1",
                "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
                "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org",
                "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})  # the server and the run share 2 cores
    return env


def _project_copy(root: Path, env: dict) -> Path:
    """What a clone holds, committed, with the tiny params."""
    return project_copy(root / "project", {**PARAMS, "mlflow.tracking_uri": f"sqlite:///{root / 'mlflow.db'}"},
                        files=("prefect.yaml",), folders=("flows",), commit=True, env=env)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The README's steps on a fresh Prefect home and server; stopped at teardown."""
    root = tmp_path_factory.mktemp("flow")
    env = _env(root)
    repo = _project_copy(root, env)
    port = _free_port()
    state = root / "state"
    local = [sys.executable, str(PROJECT_ROOT / "scripts" / "prefect_local.py")]
    try:
        up = subprocess.run([*local, "up", "--port", str(port), "--state-dir", str(state)], cwd=repo, env=env,
                            capture_output=True, text=True, timeout=240)
        assert up.returncode == 0, up.stdout + up.stderr
        env = {**env, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}

        def prefect(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
            return subprocess.run([str(PREFECT), *args], cwd=repo, env=env, capture_output=True, text=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL)

        # --prompt: interactive as in a terminal; any question would read the empty stdin and fail.
        deployed = prefect("--prompt", "deploy", "--all")
        yield {"root": root, "repo": repo, "api": env["PREFECT_API_URL"], "prefect": prefect, "env": env,
               "deployed": deployed, "state": state}
    finally:
        subprocess.run([*local, "down", "--state-dir", str(state)], env=env, capture_output=True, timeout=120)


def _run_deployment(stack, *overrides: str) -> tuple[subprocess.CompletedProcess, dict]:
    """``prefect deployment run 'train-rosetta/local' --watch``, and the flow run as the API reports it."""
    done = stack["prefect"]("deployment", "run", "train-rosetta/local", "--param",
                            f"overrides={json.dumps(list(overrides))}", "--watch", "--watch-timeout", "400",
                            timeout=450)
    match = re.search(r"UUID: ([0-9a-f-]{36})", done.stdout)
    assert match, done.stdout + done.stderr
    return done, _api(stack, f"flow_runs/{match.group(1)}")


def _api(stack, path: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{stack['api']}/{path}", data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def _filter(stack, kind: str, flow_run_id: str) -> list[dict]:
    """The artifacts or task runs of one flow run."""
    return _api(stack, f"{kind}/filter", {kind: {"flow_run_id": {"any_": [flow_run_id]}}})


def _worker_log(stack) -> str:
    return (stack["state"] / "worker.log").read_text(errors="replace")


def _dvc(stack, *args: str) -> str:
    out = subprocess.run([str(DVC), *args], cwd=stack["repo"], env=stack["env"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout + out.stderr


def _up_to_date(stack) -> None:
    """``dvc status``: nothing to rerun (stages marked always_changed are always listed, and only they may be)."""
    always = {name for name, stage in yaml.safe_load((stack["repo"] / "dvc.yaml").read_text())["stages"].items()
              if stage.get("always_changed")}
    status = json.loads(_dvc(stack, "status", "--json"))
    assert all(name in always and entries == ["always changed"] for name, entries in status.items()), status


def _lock_params(stack, stage: str) -> dict:
    return yaml.safe_load((stack["repo"] / "dvc.lock").read_text())["stages"][stage]["params"]["params.yaml"]


def test_deploy_all_asks_nothing_on_a_fresh_server(stack):
    done = stack["deployed"]
    assert done.returncode == 0, done.stdout + done.stderr
    assert "train-rosetta/local" in done.stdout and "train-rosetta/gpu" in done.stdout
    deployment = _api(stack, "deployments/name/train-rosetta/local")
    assert deployment["global_concurrency_limit"]["limit"] == 1 and deployment["schedules"] == []
    assert deployment["pull_steps"] == [{"prefect.deployments.steps.set_working_directory": {
        "directory": str(stack["repo"])}}]


@pytest.fixture(scope="module")
def flow_run(stack):
    """One deployment run with a training and a data override, as the README shows it."""
    done, run = _run_deployment(stack, "train.max_steps=5", "data.synth.train_size=30")
    return {"done": done, "run": run}


def test_the_flow_run_completes(stack, flow_run):
    done, run = flow_run["done"], flow_run["run"]
    assert done.returncode == 0 and run["state"]["type"] == "COMPLETED", done.stdout + _worker_log(stack)


def test_dvc_records_the_flow_run(stack, flow_run):
    """DVC ran every stage and knows it: nothing left to do, the params in dvc.lock, the run an experiment."""
    _up_to_date(stack)
    assert _lock_params(stack, "train")["train.max_steps"] == 5
    assert _lock_params(stack, "download")["data.synth"]["train_size"] == 30
    params = yaml.safe_load((stack["repo"] / "params.yaml").read_text())
    assert params["train"]["max_steps"] == 5 and params["data"]["synth"]["train_size"] == 30
    exps = {e["name"]: e["revs"][0]["data"] for rev in json.loads(_dvc(stack, "exp", "show", "--json"))
            for e in (rev.get("experiments") or [])}
    recorded = exps[f"flow-{flow_run['run']['name']}"]
    assert recorded["params"]["params.yaml"]["data"]["train"]["max_steps"] == 5
    metrics = set(recorded["metrics"])
    assert {"runs/eval/metrics.json", "runs/export/parity.json", "runs/register/decision.json"} <= metrics


def test_dvc_reads_the_runs_metrics_and_plots(stack, flow_run):
    """The train and evaluate stages' files as DVC shows them, and the run record the later stages read."""
    run = json.loads((stack["repo"] / "runs" / "train" / "run.json").read_text())
    assert run["tracking_uri"] == f"sqlite:///{stack['root'] / 'mlflow.db'}" and run["steps"] == 5
    assert (stack["root"] / "mlartifacts").is_dir()
    metrics = json.JSONDecoder().raw_decode(_dvc(stack, "metrics", "show", "--json"))[0]
    files = next(iter(metrics.values()))["data"]
    assert files["runs/eval/metrics.json"]["data"]["sets"]["synth_test"]["count"] == 10
    assert files["runs/train/train_metrics.json"]["data"]["steps"] == 5
    plots = subprocess.run([str(DVC), "plots", "show", "--json"], cwd=stack["repo"], env=stack["env"],
                           capture_output=True, text=True, timeout=300).stdout
    for name in ("runs/train/plots/train_loss.csv", "runs/train/plots/val_accuracy.csv", "runs/eval/gallery.png"):
        assert name in plots


def test_the_flow_run_registers_and_reports(stack, flow_run):
    uri = f"sqlite:///{stack['root'] / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    mv = client.get_model_version("rosetta", "1")
    assert mv.tags["promotion.decision"] == "promoted" and mv.tags["backbone"] == "mobilenet_v3"
    train_run = json.loads((stack["repo"] / "runs" / "train" / "run.json").read_text())["run_id"]
    assert client.get_run(mv.run_id).data.tags.get("mlflow.parentRunId", mv.run_id) == train_run
    assert "accuracy_total" in client.get_run(train_run).data.metrics
    run = flow_run["run"]
    report = [a for a in _filter(stack, "artifacts", run["id"]) if a["key"] == "train-rosetta-report"]
    assert report and "| synth_test |" in report[0]["data"] and f"runs/{train_run}" in report[0]["data"]
    assert f"mlflow ui --backend-store-uri {uri}" in report[0]["data"]
    assert f"DVC experiment: `flow-{run['name']}`" in report[0]["data"]


def test_each_stage_is_a_task(stack, flow_run):
    tasks = {t["name"].rsplit("-", 1)[0]: t for t in _filter(stack, "task_runs", flow_run["run"]["id"])}
    assert set(tasks) == {"params", "raw-data", "validated-data", "train", "benchmark-metrics", "onnx-model",
                          "registered-version", "dvc-experiment"}
    assert "gpu" in tasks["train"]["tags"] and "gpu" not in tasks["raw-data"]["tags"]
    assert all(t["state"]["type"] == "COMPLETED" for t in tasks.values())


def test_training_ends_without_a_loader_traceback(stack, flow_run):
    log = _worker_log(stack)
    assert "Running stage 'train'" in log and "Exception ignored" not in log and "exited unexpectedly" not in log


def test_bad_params_fail_the_run_in_one_sentence(stack):
    before = (stack["repo"] / "params.yaml").read_text()
    done, run = _run_deployment(stack, "train.lr=-1")
    assert done.returncode == 1 and run["state"]["type"] == "FAILED"
    assert run["state"]["message"] == "train.lr: -1.0 must be > 0"
    assert (stack["repo"] / "params.yaml").read_text() == before

"""The Prefect flow end to end, with everything really started: a Prefect server on a free port (its own
PREFECT_HOME and sqlite database), a process work pool, ``prefect deploy --all`` from a copy of the project,
a worker, and ``prefect deployment run 'train-rosetta/local' --watch`` on tiny data. Then MLflow is asked
what happened: the run, the registered version, the production alias; a worse run is not promoted and says
why; ``rosetta rollback`` moves the alias back; bad params fail a run with one sentence while the worker
keeps serving."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from rosetta.config import PROJECT_ROOT

VENV_BIN = Path(sys.executable).parent
PREFECT = VENV_BIN / "prefect"
DVC = VENV_BIN / "dvc"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (PREFECT.exists() and DVC.exists()), reason="prefect and dvc must be in the venv")]

# Data and model small enough for seconds; the data keys must be in params.yaml (DVC reads them there).
PARAMS = {
    "data.synth.train_size": 40, "data.synth.val_size": 10, "data.synth.test_size": 10,
    "data.synth.vocabulary_size": 2000, "data.workers": 1,
    "model.mobilenet_v3.model_name": "small", "model.mobilenet_v3.scale": 0.35,
    "train.optimizer": "adamw", "train.lr": 2e-3, "train.batch_size": 8, "train.max_steps": 12,
    "train.eval_every": 6, "train.checkpoint_every": 6, "train.log_every": 6, "train.num_workers": 0,
    "train.threads": 1, "train.log_model": False, "train.device": "cpu",
    "eval.batch_size": 16, "eval.gallery_size": 2, "export.parity_samples": 8, "export.batch_size": 4,
    "prefect.data_retry_delay_s": 1,
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _project_copy(root: Path) -> Path:
    """The files a deployment needs, in a fresh git + DVC repository, with the tiny params."""
    repo = root / "project"
    repo.mkdir()
    for name in ("dvc.yaml", "params.yaml", "prefect.yaml"):
        shutil.copy(PROJECT_ROOT / name, repo / name)
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for folder in ("stages", "flows", "src"):
        shutil.copytree(PROJECT_ROOT / folder, repo / folder, ignore=skip)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for dotted, value in {**PARAMS, "mlflow.tracking_uri": f"sqlite:///{root / 'mlflow.db'}"}.items():
        *parents, last = dotted.split(".")
        node = params
        for part in parents:
            node = node[part]
        node[last] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = _env(root)
    for cmd in (["git", "init", "-q"], [str(DVC), "init", "-q"]):
        subprocess.run(cmd, cwd=repo, env=env, check=True, capture_output=True)
    return repo


def _env(root: Path, api_url: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update({"PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", "PREFECT_HOME": str(root / "prefect"),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false",
                "PREFECT_LOGGING_LEVEL": "INFO", "DVC_NO_ANALYTICS": "1", "GIT_CONFIG_NOSYSTEM": "1",
                "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})  # the server and the run share 2 cores
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def _start(cmd: list[str], log: Path, cwd: Path, env: dict) -> subprocess.Popen:
    # A process group of its own, so teardown stops it and whatever it started, and nothing else.
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def prefect_stack(tmp_path_factory):
    """Server, work pool, deployments and a worker, all real; stopped at teardown."""
    root = tmp_path_factory.mktemp("flow")
    repo = _project_copy(root)
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = _env(root, api)
    server = _start([str(PREFECT), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                    root / "server.log", root, _env(root))
    worker = None
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{api}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, (root / "server.log").read_text()
            assert time.time() < deadline, "the Prefect server did not answer /api/health in 120 s"
            time.sleep(1)

        def prefect(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
            return subprocess.run([str(PREFECT), *args], cwd=repo, env=env, capture_output=True, text=True,
                                  timeout=timeout)

        for pool in ("local", "gpu"):
            done = prefect("work-pool", "create", pool, "--type", "process")
            assert done.returncode == 0, done.stdout + done.stderr
        done = prefect("concurrency-limit", "create", "gpu", "1")  # one training per card
        assert done.returncode == 0, done.stdout + done.stderr
        done = prefect("--no-prompt", "deploy", "--all")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "train-rosetta/local" in done.stdout and "train-rosetta/gpu" in done.stdout
        # Polling every second instead of every 10 s: the runs below start as soon as they are created.
        worker = _start([str(PREFECT), "worker", "start", "--pool", "local"], root / "worker.log", repo,
                        {**env, "PREFECT_WORKER_QUERY_SECONDS": "1"})
        yield {"root": root, "repo": repo, "api": api, "prefect": prefect, "worker": worker, "env": env}
    finally:
        for proc in (worker, server):
            if proc is not None:
                _stop(proc)


def _run_deployment(stack, *overrides: str) -> tuple[subprocess.CompletedProcess, dict]:
    """``prefect deployment run 'train-rosetta/local' --watch``, and the flow run as the API reports it."""
    done = stack["prefect"]("deployment", "run", "train-rosetta/local", "--param",
                            f"overrides={json.dumps(list(overrides))}", "--watch", "--watch-timeout", "400",
                            timeout=450)
    match = re.search(r"UUID: ([0-9a-f-]{36})", done.stdout)
    assert match, done.stdout + done.stderr
    with urllib.request.urlopen(f"{stack['api']}/flow_runs/{match.group(1)}", timeout=10) as r:
        return done, json.loads(r.read())


def _filter(stack, kind: str, flow_run_id: str) -> list[dict]:
    """``POST /api/<kind>/filter`` for the artifacts or task runs of one flow run."""
    body = json.dumps({kind: {"flow_run_id": {"any_": [flow_run_id]}}}).encode()
    req = urllib.request.Request(f"{stack['api']}/{kind}/filter", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def _worker_log(stack) -> str:
    return (stack["root"] / "worker.log").read_text(errors="replace")


def test_flow_trains_registers_promotes_and_survives_bad_params(prefect_stack):
    stack = prefect_stack
    uri = f"sqlite:///{stack['root'] / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    done, run = _run_deployment(stack)
    assert done.returncode == 0 and run["state"]["type"] == "COMPLETED", done.stdout + _worker_log(stack)
    mv1 = client.get_model_version("rosetta", "1")
    aliases = {k: str(v) for k, v in client.get_registered_model("rosetta").aliases.items()}
    assert aliases == {"production": "1"}
    assert mv1.tags["promotion.decision"] == "promoted" and mv1.tags["backbone"] == "mobilenet_v3"
    mlflow_run = client.get_run(mv1.run_id)
    assert "accuracy_total" in mlflow_run.data.metrics and "parity/max_abs_diff" in mlflow_run.data.metrics
    assert mv1.tags["metric.accuracy_total"] == f"{mlflow_run.data.metrics['accuracy_total']:.6g}"
    report = [a for a in _filter(stack, "artifacts", run["id"]) if a["key"] == "train-rosetta-report"]
    assert report and "| synth_test |" in report[0]["data"] and f"runs/{mv1.run_id}" in report[0]["data"]
    tasks = {t["name"].rsplit("-", 1)[0]: t for t in _filter(stack, "task_runs", run["id"])}
    assert set(tasks) == {"data", "train", "benchmark-metrics", "onnx-model", "registered-version"}
    assert "gpu" in tasks["train"]["tags"] and "gpu" not in tasks["data"]["tags"]

    bad, failed = _run_deployment(stack, "train.lr=-1")
    assert bad.returncode == 1 and failed["state"]["type"] == "FAILED"
    assert failed["state"]["message"] == "train.lr: -1.0 must be > 0"

    worse, second = _run_deployment(stack, "train.max_steps=1")  # the worker still serves
    assert worse.returncode == 0 and second["state"]["type"] == "COMPLETED", worse.stdout + _worker_log(stack)
    mv2 = client.get_model_version("rosetta", "2")
    assert mv2.run_id != mv1.run_id
    assert mv2.tags["promotion.decision"] == "not promoted"
    assert "does not beat production v1" in mv2.tags["promotion.reason"]
    assert "rosetta v2 not promoted: accuracy_total" in _worker_log(stack)  # printed into the run's log

    rosetta = [sys.executable, "-m", "rosetta"]
    forced = subprocess.run([*rosetta, "promote", "--version", "2", "--force"], cwd=stack["repo"], env=stack["env"],
                            capture_output=True, text=True, timeout=120)
    assert forced.returncode == 0, forced.stderr
    back = subprocess.run([*rosetta, "rollback"], cwd=stack["repo"], env=stack["env"], capture_output=True,
                          text=True, timeout=120)
    assert back.returncode == 0 and "rosetta v1 restored to production" in back.stdout, back.stderr
    assert {k: str(v) for k, v in client.get_registered_model("rosetta").aliases.items()} == {"production": "1"}

    # The DVC stages run the same code on the files the flow left (train and evaluate outputs).
    def dvc(*args: str) -> str:
        out = subprocess.run([str(DVC), *args], cwd=stack["repo"], env=stack["env"], capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout + out.stderr

    assert "Running stage 'export'" in dvc("repro", "--single-item", "export")
    registered = dvc("repro", "--single-item", "register")
    assert "rosetta v3 not promoted: accuracy_total" in registered
    decision = json.loads((stack["repo"] / "runs" / "register" / "decision.json").read_text())
    assert decision["version"] == "3" and decision["promoted"] is False and decision["production_version"] == "1"
    metrics = dvc("metrics", "show", "--json")
    assert "runs/register/decision.json" in metrics and "runs/export/parity.json" in metrics
    assert "Running stage" not in dvc("repro", "--single-item", "register")  # always_changed: false

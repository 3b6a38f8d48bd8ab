"""The Prefect flow end to end, everything really started, as the README's orchestration steps run it in a copy of
the project (a git + DVC repository with tiny params and two tiny real benchmark sets): ``scripts/prefect_local.py
up`` (what ``make prefect-up`` runs: a server with its own PREFECT_HOME, the work pools, a worker), ``prefect
deploy --all`` in forced-interactive mode with nothing to answer, then ``prefect deployment run
'train-rosetta/local' --watch``. conftest.py makes one such run per test session (``flow_run``) and, beside it,
one ``dvc exp run -S`` experiment (``flow_experiments``); the tests of the flow, of DVC experiments and of the
MLflow UI read them. These are the helpers they share."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from dvc_fixtures import DVC, TINY_DATA, VENV_BIN, project_copy
from model_fixtures import WORDS, write_gt_set
from rosetta.orchestration import processes
from rosetta.params import PROJECT_ROOT

PREFECT = VENV_BIN / "prefect"
# Another loopback address than 127.0.0.1: the server binds the one it is given (`make prefect-up PREFECT_HOST=...`),
# and the workers reach it there, as a worker on a GPU host reaches the server's address.
SERVER_HOST = "127.0.0.2"

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
REAL_SETS = {"REALA_12": WORDS, "REALB_8": WORDS[:8]}  # real benchmark sets: gt-file sets, as ../shared/benchmarks


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen, grace: float = 20) -> None:
    """End a server or worker started in a session of its own: SIGTERM to its group, SIGKILL after ``grace``
    seconds (``processes.stop_group``, as ``prefect_local.py down`` does). A Prefect worker turns the first SIGTERM
    into a graceful stop that waits for its flow runs' processes, which on a busy machine may not end within the
    grace; the tests read what it did, not how fast it stops."""
    processes.stop_group(proc.pid, grace)
    proc.wait(timeout=60)


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    """Until ``url`` answers 200 (a health endpoint); a server that exits first, or never answers, fails the test."""
    deadline = time.monotonic() + timeout
    while not processes.http_ok(url):
        assert proc.poll() is None, f"{url}: the server exited with status {proc.returncode}"
        assert time.monotonic() < deadline, f"{url} did not answer within {timeout:.0f} s"
        time.sleep(0.5)


def flow_env(root: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "ROSETTA_", "DVC_EXP"))}
    env.update({"PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", "PREFECT_HOME": str(root / "prefect"),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false",
                "PREFECT_LOGGING_LEVEL": "INFO", "PREFECT_WORKER_QUERY_SECONDS": "1", "DVC_NO_ANALYTICS": "1",
                "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
                "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org",
                "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})  # the server and the run share 2 cores
    return env


def flow_project(root: Path, env: dict) -> Path:
    """What a clone holds, committed, with the tiny params and the tiny real sets beside it."""
    for name, labels in REAL_SETS.items():
        write_gt_set(root / "real" / name, labels, seed=len(labels))
    return project_copy(root / "project", {**PARAMS, "mlflow.tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
                                           "data.real_benchmarks": str(root / "real")},
                        files=("prefect.yaml",), folders=("flows",), commit=True, env=env)


class Stack:
    """A Prefect server on ``SERVER_HOST`` with the work pools and a worker for ``local`` (``prefect_local.py up``),
    and ``prefect deploy --all`` run in the project; ``down`` stops it."""

    def __init__(self, root: Path):
        self.root = root
        self.env = flow_env(root)
        self.repo = flow_project(root, self.env)
        self.state = root / "state"
        port = free_port(SERVER_HOST)
        self._local = [sys.executable, str(PROJECT_ROOT / "scripts" / "prefect_local.py")]
        self.up = subprocess.run([*self._local, "up", "--host", SERVER_HOST, "--port", str(port), "--state-dir",
                                  str(self.state)], cwd=self.repo, env=self.env, capture_output=True, text=True,
                                 timeout=240)
        self.api = f"http://{SERVER_HOST}:{port}/api"
        self.env = {**self.env, "PREFECT_API_URL": self.api}
        self.uri = f"sqlite:///{root / 'mlflow.db'}"
        # --prompt: interactive as in a terminal; any question would read the empty stdin and fail.
        self.deployed = self.prefect("--prompt", "deploy", "--all") if self.up.returncode == 0 else self.up

    def prefect(self, *args: str, timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([str(PREFECT), *args], cwd=cwd or self.repo, env=self.env, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def down(self) -> None:
        subprocess.run([*self._local, "down", "--state-dir", str(self.state)], env=self.env, capture_output=True,
                       timeout=120)

    def run_deployment(self, *overrides: str, deployment: str = "train-rosetta/local",
                       params: tuple[str, ...] = ()) -> tuple[subprocess.CompletedProcess, dict]:
        """``prefect deployment run <deployment> --watch``, and the flow run as the API reports it."""
        done = self.prefect("deployment", "run", deployment, "--param", f"overrides={json.dumps(list(overrides))}",
                            *params, "--watch", "--watch-timeout", "400", timeout=450)
        match = re.search(r"UUID: ([0-9a-f-]{36})", done.stdout)
        assert match, done.stdout + done.stderr
        return done, self.api_get(f"flow_runs/{match.group(1)}")

    def api_get(self, path: str, body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.api}/{path}", data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def of_flow_run(self, kind: str, flow_run_id: str) -> list[dict]:
        """The artifacts or task runs of one flow run."""
        return self.api_get(f"{kind}/filter", {kind: {"flow_run_id": {"any_": [flow_run_id]}}})

    def worker_log(self) -> str:
        return (self.state / "worker.log").read_text(errors="replace")

    def dvc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([str(DVC), *args], cwd=self.repo, env=self.env, capture_output=True, text=True,
                              timeout=600)
        assert not check or done.returncode == 0, done.stdout + done.stderr
        return done


def experiments(show_json: str) -> dict[str, dict]:
    """``dvc exp show --json``'s experiments by name: each one's data (params, metrics)."""
    return {e["name"]: e["revs"][0]["data"] for rev in json.loads(show_json) for e in (rev.get("experiments") or [])}

"""Real servers on 127.0.0.1 for the registry's tests, as a team runs them: ``mlflow server`` on a SQLite store (with
its basic-auth app and an admin, where asked) and a Prefect server (the registry lock of a store behind a server).
Each runs in a session of its own and is stopped, with what it started, when its block ends."""
from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from dvc_fixtures import VENV_BIN
from flow_fixtures import free_port, stop, wait_http


@dataclass(frozen=True)
class MlflowServer:
    uri: str
    admin_password: str | None  # with the basic-auth app: the admin's (user ``admin``)


@contextlib.contextmanager
def mlflow_server(root: Path, *, auth: bool = False, workers: int = 1) -> Iterator[MlflowServer]:
    """``mlflow server`` on ``root/mlflow.db`` (an existing store, or a new one), its artifacts in ``root``; with
    ``auth`` the basic-auth app, new users reading everything (``default_permission = READ``) as on the team's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    args = []
    password = None
    if auth:
        password = secrets.token_urlsafe(16)
        config = root / "mlflow-auth.ini"
        config.write_text(f"[mlflow]\ndefault_permission = READ\nadmin_username = admin\n"
                          f"database_uri = sqlite:///{root / 'mlflow-auth.db'}\n")
        env.update(MLFLOW_AUTH_CONFIG_PATH=str(config), MLFLOW_AUTH_ADMIN_PASSWORD=password,
                   MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(16))
        args = ["--app-name", "basic-auth"]
    port = free_port()
    proc = subprocess.Popen([str(VENV_BIN / "mlflow"), "server", *args, "--backend-store-uri",
                             f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts"),
                             "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
                            cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc)
        yield MlflowServer(f"http://127.0.0.1:{port}", password)
    finally:
        stop(proc)


@contextlib.contextmanager
def prefect_server(root: Path) -> Iterator[str]:
    """A Prefect server with its own home in ``root``; its API URL. Expired leases are swept every second."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(root / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_UI_ENABLED="false", PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS="1")
    port = free_port()
    proc = subprocess.Popen([str(VENV_BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    api = f"http://127.0.0.1:{port}/api"
    try:
        wait_http(f"{api}/health", proc)
        yield api
    finally:
        stop(proc)

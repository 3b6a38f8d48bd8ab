"""The registered model over HTTP: ``mlflow models serve`` started as the README shows it (``rosetta serve``), and
a client that posts images as MLflow's JSON (base64 strings in the binary ``image`` column).

What is served is a model of the configured registry (``models:/<name>@<alias>``, ``models:/<name>/<version>``),
downloaded into a folder of this process and checked against the digests the registry recorded
(``rosetta.tracking.registered.fetch_verified``), or a local model folder named on purpose (one holding an MLmodel
file); anything else is refused in one sentence before a server starts. The downloaded folder is removed when the
server ends, and one left by a process that was killed outright is removed by the next.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from rosetta.config import Config
from rosetta.errors import RosettaError


def production_uri(cfg: Config) -> str:
    return f"models:/{cfg.registry.model_name}@{cfg.registry.alias}"


_FOLDER_PREFIX = "rosetta-serve-"  # rosetta-serve-<pid>-<random>: a served model's checked copy


@contextmanager
def served_model(cfg: Config, model_uri: str | None = None) -> Iterator[Path]:
    """The local folder to serve for ``model_uri`` (default: the production alias): a registered version's
    files, checked, in a temporary folder removed on exit; or a local model folder as it is."""
    from rosetta.tracking.registered import fetch_verified, is_model_uri
    from rosetta.tracking.store import tracking_uri

    uri = model_uri or production_uri(cfg)
    if not is_model_uri(uri):
        folder = Path(uri).expanduser()
        if not (folder / "MLmodel").is_file():
            raise RosettaError(f"--model-uri: {uri!r} is neither a model of the registry at {tracking_uri(cfg)} "
                               "(models:/<name>@<alias> or models:/<name>/<version>) nor a local model folder holding "
                               "an MLmodel file; give one of those")
        yield folder
        return
    _remove_orphans()
    tmp = Path(tempfile.mkdtemp(prefix=f"{_FOLDER_PREFIX}{os.getpid()}-"))
    try:
        yield fetch_verified(cfg, uri, tmp, "--model-uri").folder
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _remove_orphans() -> None:
    """Checked copies whose server was killed outright (its pid is gone): nothing else removes them."""
    for folder in Path(tempfile.gettempdir()).glob(f"{_FOLDER_PREFIX}*-*"):
        pid = folder.name[len(_FOLDER_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(folder, ignore_errors=True)


def serve(cfg: Config, model_uri: str | None, host: str, port: int) -> int:
    """``rosetta serve``: ``mlflow models serve`` of the checked model until it ends; returns its exit status.
    Ctrl-C reaches the server with the terminal's process group, a SIGTERM or SIGHUP sent to this process is
    passed on; either way the checked copy is removed afterwards."""
    with served_model(cfg, model_uri) as folder:
        proc = subprocess.Popen(serve_command(str(folder), host, port), env=serve_env(cfg))
        forward = {sig: signal.signal(sig, lambda signum, _: proc.send_signal(signum))
                   for sig in (signal.SIGTERM, signal.SIGHUP)}
        interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server gets it too, and ends
        try:
            return proc.wait()
        finally:
            for sig, handler in {**forward, signal.SIGINT: interrupt}.items():
                signal.signal(sig, handler)


def serve_command(model_uri: str, host: str, port: int) -> list[str]:
    """``mlflow models serve`` in this environment (``--env-manager local``: no new virtualenv per model)."""
    mlflow = Path(sys.executable).parent / "mlflow"
    return [str(mlflow), "models", "serve", "-m", model_uri, "--env-manager", "local", "-h", host, "-p", str(port)]


def serve_env(cfg: Config) -> dict[str, str]:
    """The environment the server needs: the registry's store, and this venv's ``bin`` on PATH (MLflow starts
    ``uvicorn`` from PATH; without it the server dies with status 127)."""
    from rosetta.tracking.store import tracking_uri

    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri(cfg), "PATH": path}


def invocations_body(images: Sequence[bytes]) -> bytes:
    """MLflow's JSON for a batch of encoded images: one row per image, base64 in the ``image`` column."""
    rows = [[base64.b64encode(data).decode("ascii")] for data in images]
    return json.dumps({"dataframe_split": {"columns": ["image"], "data": rows}}).encode()


def post(url: str, body: bytes, timeout: float = 60) -> tuple[int, dict]:
    """(HTTP status, JSON body) of a POST to ``url``/invocations."""
    request = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Server:
    """``mlflow models serve`` for ``model_uri`` (default: the production alias), started at once in its own
    process group; ``wait`` returns its URL once it answers ``/ping``, ``stop`` ends it and its uvicorn."""

    def __init__(self, cfg: Config, model_uri: str | None = None, host: str = "127.0.0.1", port: int | None = None):
        self.model_uri = model_uri or production_uri(cfg)
        self._files = ExitStack()  # the checked copy of the model, removed by ``stop``
        folder = self._files.enter_context(served_model(cfg, model_uri))
        port = port or _free_port(host)
        self.url = f"http://{host}:{port}"
        self._log = self._files.enter_context(tempfile.TemporaryFile())
        self._proc = subprocess.Popen(serve_command(str(folder), host, port), env=serve_env(cfg), stdout=self._log,
                                      stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                self._log.seek(0)
                last = self._log.read().decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise RosettaError(f"`mlflow models serve -m {self.model_uri}` stopped with status "
                                   f"{self._proc.returncode} ({last[0]}); check that the model is registered there")
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=2):
                    return self.url
            except OSError:
                if time.monotonic() > deadline:
                    raise RosettaError(f"`mlflow models serve -m {self.model_uri}` did not answer on {self.url} "
                                       f"within {timeout:.0f} s") from None
                time.sleep(0.5)

    def stop(self) -> None:
        if self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
        self._files.close()


@contextmanager
def running_server(cfg: Config, model_uri: str | None = None, host: str = "127.0.0.1",
                   port: int | None = None) -> Iterator[str]:
    """A ``Server`` that answers: its URL, and the server stopped on exit."""
    server = Server(cfg, model_uri, host, port)
    try:
        yield server.wait()
    finally:
        server.stop()

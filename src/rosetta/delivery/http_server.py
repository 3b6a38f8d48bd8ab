"""The registered model over HTTP: ``mlflow models serve`` started as the README shows it (``rosetta serve``), and
a client that posts images as MLflow's JSON (base64 strings in the binary ``image`` column).

``rosetta serve`` picks a version (the one holding an alias, or a number: ``models:/<name>@<alias>``,
``models:/<name>/<version>`` of the configured registry), resolves it once, serves that version and tells the pyfunc
which it is (``SERVED_MODEL_ENV``), so every answer names the model, version and alias it came from.

What is served is that version, downloaded into a folder of this process and checked against the digests the
registry recorded (``rosetta.registry.refs.download_verified``), or a local model folder named on purpose (one
holding an MLmodel file); anything else is refused in one sentence before a server starts. The downloaded folder
is removed when the server ends, and one left by a process that was killed outright is removed by the next.
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

from rosetta.config import Config
from rosetta.errors import RosettaError
from rosetta_infer.pyfunc import ONNX_ARTIFACT, SERVED_MODEL_ENV


@dataclass(frozen=True)
class ServedModel:
    """A registered version to serve, and the alias it was picked by ("" when picked by its number)."""

    name: str
    version: str
    alias: str = ""

    def __str__(self) -> str:
        return f"{self.name} v{self.version}" + (f" (alias {self.alias})" if self.alias else "")


def served_model(cfg: Config, alias: str | None = None, version: int | str | None = None) -> str:
    """The URI of the version of ``registry.model_name`` to serve: ``version`` when given, else the one holding
    ``alias`` (default ``registry.alias``); ``checked_model`` resolves it."""
    name = cfg.registry.model_name
    return f"models:/{name}/{version}" if version is not None else f"models:/{name}@{alias or cfg.registry.alias}"


_FOLDER_PREFIX = "rosetta-serve-"  # rosetta-serve-<pid>-<random>: a served model's checked copy


def _check_ours(folder: Path) -> None:
    """Refuse, in one sentence, a local model folder that is not a rosetta model: its MLmodel must name a
    python_function flavor with the ONNX file among its artifacts, as ``rosetta register`` logs it."""
    import yaml

    try:
        mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
        ours = ONNX_ARTIFACT in mlmodel["flavors"]["python_function"]["artifacts"]
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError):
        ours = False
    if not ours:
        raise RosettaError(f"--model-uri: {folder / 'MLmodel'} is no rosetta model (no python_function flavor with "
                           f"an {ONNX_ARTIFACT!r} artifact); give a model folder `rosetta register` logged, or serve "
                           "this one with `mlflow models serve`")


@contextmanager
def checked_model(cfg: Config, model: str, setting: str = "--model-uri"
                  ) -> Iterator[tuple[Path, ServedModel | None]]:
    """The local folder to serve for ``model``, and the version it is: a models:/ URI of the configured registry,
    resolved once, downloaded into a temporary folder, checked, removed on exit; or a local model folder (one
    holding an MLmodel file) as it is, no version. ``setting`` names ``model`` in the sentences refusing it."""
    from rosetta.registry.refs import ModelRef, download_verified, is_model_uri, resolve_version
    from rosetta.tracking.store import tracking_uri

    _remove_orphans()
    if not is_model_uri(model):
        folder = Path(model).expanduser()
        if not (folder / "MLmodel").is_file():
            raise RosettaError(f"{setting}: {model!r} is neither a model of the registry at {tracking_uri(cfg)} "
                               "(models:/<name>@<alias> or models:/<name>/<version>) nor a local model folder "
                               "holding an MLmodel file; give one of those")
        _check_ours(folder)
        yield folder, None
        return
    version = resolve_version(cfg, model, setting)
    served = ServedModel(version.name, str(version.version), ModelRef.parse(model, setting).alias or "")
    tmp = Path(tempfile.mkdtemp(prefix=f"{_FOLDER_PREFIX}{os.getpid()}-"))
    try:
        yield download_verified(cfg, version, tmp, setting, model).folder, served
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _remove_orphans() -> None:
    """Checked copies whose server was killed outright (its pid is gone): nothing else removes them."""
    for folder in Path(tempfile.gettempdir()).glob(f"{_FOLDER_PREFIX}*-*"):
        pid = folder.name[len(_FOLDER_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(folder, ignore_errors=True)


def serve(cfg: Config, model: str, host: str, port: int, setting: str = "--model-uri") -> int:
    """``rosetta serve``: ``mlflow models serve`` of the checked ``model`` until it ends; returns its exit status.
    Ctrl-C reaches the server with the terminal's process group, a SIGTERM or SIGHUP sent to this process is
    passed on; either way the checked copy is removed afterwards."""
    with checked_model(cfg, model, setting) as (folder, served):
        print(f"serving {served or folder} on http://{host}:{port}", flush=True)
        proc = subprocess.Popen(serve_command(str(folder), host, port), env=serve_env(cfg, served))
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


def serve_env(cfg: Config, served: ServedModel | None = None) -> dict[str, str]:
    """The environment the server needs: the registry's store, this venv's ``bin`` on PATH (MLflow starts
    ``uvicorn`` from PATH; without it the server dies with status 127) and, given ``served``, which version it
    serves, for the pyfunc's answers."""
    from rosetta.tracking.store import tracking_uri

    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri(cfg), "PATH": path}
    env.pop(SERVED_MODEL_ENV, None)
    return env | ({SERVED_MODEL_ENV: json.dumps(asdict(served))} if served else {})


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
    """``mlflow models serve`` for ``model`` (a model URI or folder; default: the version holding
    ``registry.alias``), started at once in its own process group; ``wait`` returns its URL once it answers
    ``/ping``, ``stop`` ends it and its uvicorn."""

    def __init__(self, cfg: Config, model: str | None = None, host: str = "127.0.0.1", port: int | None = None):
        self.model_uri = served_model(cfg) if model is None else str(model)
        self._files = ExitStack()  # the checked copy of the model, removed by ``stop``
        folder, served = self._files.enter_context(
            checked_model(cfg, self.model_uri, "rosetta serve" if model is None else "--model-uri"))
        port = port or _free_port(host)
        self.url = f"http://{host}:{port}"
        self._log = self._files.enter_context(tempfile.TemporaryFile())
        self._proc = subprocess.Popen(serve_command(str(folder), host, port), env=serve_env(cfg, served),
                                      stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

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
def running_server(cfg: Config, model: str | None = None, host: str = "127.0.0.1",
                   port: int | None = None) -> Iterator[str]:
    """A ``Server`` that answers: its URL, and the server stopped on exit."""
    server = Server(cfg, model, host, port)
    try:
        yield server.wait()
    finally:
        server.stop()

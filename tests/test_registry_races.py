"""The registry under concurrency, against a real store: registrations and alias moves of processes started at the
same instant (a barrier), many rounds over, on a SQLite store and through a real ``mlflow server`` on 127.0.0.1;
what each command prints is what happened; a lock holder killed outright blocks nobody."""
from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import onnx
import pytest
from mlflow import MlflowClient

from model_fixtures import config
from rosetta.registry.promotion import promote
from rosetta.registry.versions import register_and_promote
from rosetta.tracking.store import Tracker
from server_fixtures import mlflow_server

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]  # processes, a server

SUMMARY = {"sets": {"synth_test": {"accuracy": 0.5, "norm_edit_dis": 0.5, "count": 12}}, "accuracy_total": 0.5,
           "accuracy_mean": 0.5, "norm_edit_dis_total": 0.5, "count_total": 12, "images_per_s": 1.0}
ROUNDS = 6


def _model_file(onnx_path: Path, folder: Path, name: str) -> Path:
    """Another model file: the same ONNX with other bytes (its doc_string), as another training run exports one."""
    model = onnx.load(str(onnx_path))
    model.doc_string = name
    path = folder / f"model-{name}.onnx"
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def registry(tmp_path_factory, tiny_data, untrained_model):
    """A SQLite store holding versions 1, 2 and 3 of ``rosetta``, v1 in production."""
    root = tmp_path_factory.mktemp("races")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.chdir(root)
        overrides = [f"data.root={tiny_data}", f"mlflow.tracking_uri=sqlite:///{root / 'mlflow.db'}",
                     "registry.min_score=0.2"]
        cfg = config(*overrides)
        tracker = Tracker(cfg)
        tracker.end()
        with contextlib.redirect_stdout(io.StringIO()):
            for i in (1, 2, 3):
                model = _model_file(untrained_model.onnx, root, f"v{i}")
                register_and_promote(cfg, model, untrained_model.parity, SUMMARY, tracker.run_id)
        yield {"root": root, "overrides": overrides, "run_id": tracker.run_id, "parity": untrained_model.parity,
               "onnx": untrained_model.onnx}


@contextlib.contextmanager
def _project_sys_path():
    """Spawned processes start with this process's sys.path: without the model code folders that an earlier test's
    ``mlflow.pyfunc.load_model`` put first on it, so that they import this project's rosetta, not a registered copy."""
    import rosetta

    ours = Path(rosetta.__file__).resolve().parents[1]
    saved = sys.path[:]
    sys.path[:] = [p for p in saved if not (Path(p or ".") / "rosetta").is_dir() or Path(p or ".").resolve() == ours]
    try:
        yield
    finally:
        sys.path[:] = saved


def _client(uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _promote_rounds(overrides, version, rounds, start, done, results):
    """A process promoting ``version`` by force once per round, at the instant the barrier opens."""
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # the params name the store, as for a user's command
    cfg = config(*overrides)
    try:
        for _ in range(rounds):
            start.wait()
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                decision = promote(cfg, version, force=True)
            results.put((version, decision.production_version, out.getvalue().strip()))
            done.wait()
    except BaseException:
        start.abort()  # the test process stops waiting for this one
        done.abort()
        raise


def _race_promotions(uri: str, overrides: list[str]) -> None:
    """Rounds of ``promote --force --version 2`` and ``--version 3`` at once from production v1: one of them runs
    first, and the other must replace it (so ``previous`` is the first, never v1) and say so."""
    ctx = multiprocessing.get_context("spawn")
    start, done, results = ctx.Barrier(3), ctx.Barrier(3), ctx.Queue()
    workers = [ctx.Process(target=_promote_rounds, args=(overrides, v, ROUNDS, start, done, results))
               for v in (2, 3)]
    with _project_sys_path():
        for w in workers:
            w.start()
    client = _client(uri)
    try:
        for _ in range(ROUNDS):
            client.set_registered_model_alias("rosetta", "production", "1")
            with contextlib.suppress(Exception):
                client.delete_registered_model_alias("rosetta", "previous")
            start.wait(timeout=300)
            done.wait(timeout=300)
            got = [results.get(timeout=60) for _ in workers]
            aliases = {k: int(v) for k, v in client.get_registered_model("rosetta").aliases.items()}
            # Serialised: the first replaced v1, the second replaced the first, and each printed just that.
            replaced = sorted((r, v) for v, r, _ in got)
            assert replaced in ([("1", 2), ("2", 3)], [("1", 3), ("3", 2)]), got
            (_, first), (_, second) = replaced
            assert aliases == {"production": second, "previous": first}, (aliases, got)
            for version, replaced, printed in got:
                assert printed == (f"rosetta v{version} promoted to production: forced by hand over v{replaced} "
                                   "(accuracy_total 0.5000); its accuracy_total is 0.5000")
    finally:
        for w in workers:
            w.join(timeout=60)
            if w.is_alive():
                w.kill()
    assert [w.exitcode for w in workers] == [0, 0]
    assert [m.name for m in _client(uri).search_registered_models()] == ["rosetta"]  # the lock left nothing there


def test_promotions_at_once_are_serialised_on_a_sqlite_store(registry):
    _race_promotions(f"sqlite:///{registry['root'] / 'mlflow.db'}", registry["overrides"])


def test_promotions_at_once_are_serialised_through_an_mlflow_server(registry, tmp_path, prefect_api, monkeypatch):
    """Processes that share one tracking server (as machines of a team do) and no file: the lock is the Prefect
    server's. Afterwards the registry's REST API lists the project's model alone."""
    shutil.copy(registry["root"] / "mlflow.db", tmp_path / "mlflow.db")
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)  # the workers' environment, as env.sh sets it
    with mlflow_server(tmp_path, workers=2) as server:
        overrides = [o for o in registry["overrides"] if not o.startswith("mlflow.tracking_uri")]
        _race_promotions(server.uri, [*overrides, f"mlflow.tracking_uri={server.uri}"])
        with urllib.request.urlopen(f"{server.uri}/api/2.0/mlflow/registered-models/search", timeout=30) as answer:
            assert [m["name"] for m in json.load(answer)["registered_models"]] == ["rosetta"]


def _register_rounds(overrides, models, parity, run_id, start, results):
    """A process registering (and deciding on) each of ``models`` in turn, at the instant the barrier opens."""
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    cfg = config(*overrides)
    try:
        for model in models:
            start.wait()
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                decision = register_and_promote(cfg, Path(model), parity, SUMMARY, run_id)
            results.put((model, decision.version, out.getvalue()))
    except BaseException:
        start.abort()
        raise


def test_the_same_file_registered_at_once_is_one_version(registry):
    uri = f"sqlite:///{registry['root'] / 'mlflow.db'}"
    models = [str(_model_file(registry["onnx"], registry["root"], name)) for name in ("twice-a", "twice-b", "twice-c")]
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(2), ctx.Queue()
    workers = [ctx.Process(target=_register_rounds, args=(registry["overrides"], models, registry["parity"],
                                                         registry["run_id"], start, results)) for _ in range(2)]
    with _project_sys_path():
        for w in workers:
            w.start()
    got = [results.get(timeout=300) for _ in range(2 * len(models))]
    for w in workers:
        w.join(timeout=60)
    assert [w.exitcode for w in workers] == [0, 0]
    for model in models:
        answers = [(version, printed) for m, version, printed in got if m == model]
        assert len({version for version, _ in answers}) == 1, answers
        sha = _client(uri).get_model_version("rosetta", answers[0][0]).tags["model.sha256"]
        same = [v for v in _client(uri).search_model_versions("name='rosetta'") if v.tags.get("model.sha256") == sha]
        assert len(same) == 1
        assert sum("already holds" in printed for _, printed in answers) == 1  # the second found the first's


def _locker(store: str, *then: str) -> subprocess.Popen:
    """A process holding (or waiting for) the registry lock of ``rosetta`` in ``store`` while ``then`` runs."""
    return subprocess.Popen([sys.executable, "-c", "\n".join((
        "import sys, time",
        "from rosetta.registry.lock import registry_lock",
        f"with registry_lock({store!r}, 'rosetta'):",
        *then))], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"})


def test_a_lock_holder_killed_outright_blocks_nobody(registry):
    """A process holding the registry lock is killed with SIGKILL: the next command goes on at once."""
    holder = _locker(f"sqlite:///{registry['root'] / 'mlflow.db'}", "    print('held', flush=True)",
                     "    time.sleep(600)")
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    started = time.monotonic()
    with contextlib.redirect_stdout(io.StringIO()):
        promote(config(*registry["overrides"]), 2, force=True)
    assert time.monotonic() - started < 60


def test_a_waiter_ended_by_sigterm_blocks_nobody(registry):
    """A command waiting for the registry lock is told who holds it, then ended by SIGTERM (a timeout, a stopped
    job, a shutdown): it ends as an exit does, and the next command takes the lock as soon as the holder ends."""
    store = f"sqlite:///{registry['root'] / 'mlflow.db'}"
    holder = _locker(store, "    print('held', flush=True)", "    time.sleep(600)")
    try:
        assert holder.stdout.readline().strip() == "held"
        waiter = _locker(store, "    pass")
        line = waiter.stderr.readline()
        assert line.startswith(f"waiting for the registry of rosetta: pid {holder.pid} on "), line
        assert line.rstrip().endswith(" holds it") and "-c" in line  # the holder's command line
        waiter.terminate()
        assert waiter.wait(60) == 128 + signal.SIGTERM
    finally:
        holder.terminate()
        assert holder.wait(60) == 128 + signal.SIGTERM
    after = _locker(store, "    print('held', flush=True)")
    assert after.stdout.readline().strip() == "held" and after.wait(60) == 0

"""A registered model under faults, against a real store and real servers: a model swapped in the artifact store
is refused wherever it would be loaded (serve, evaluate, predict), model URIs that are no model of the registry
are one sentence and start nothing, a server's copy of the model never outlives it, and a damaged store is one
sentence naming it for every command that reads it."""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import sqlite3
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import onnx
import pytest
from mlflow import MlflowClient

from flow_fixtures import free_port, wait_http
from model_fixtures import config, png_bytes, word_image
from rosetta.cli import main
from rosetta.registry.versions import register_and_promote
from rosetta.fsutil import write_json
from rosetta.tracking.store import Tracker

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SUMMARY = {"sets": {"synth_test": {"accuracy": 0.5, "norm_edit_dis": 0.5, "count": 12}}, "accuracy_total": 0.5,
           "accuracy_mean": 0.5, "norm_edit_dis_total": 0.5, "count_total": 12, "images_per_s": 1.0}


@pytest.fixture(scope="module")
def registry(tmp_path_factory, tiny_data, untrained_model):
    """A project folder whose SQLite store holds ``rosetta`` v1 in production (the session's untrained export)
    and ``other`` v1, registered but never promoted."""
    root = tmp_path_factory.mktemp("faults")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.chdir(root)
        shutil.copy(Path(__file__).resolve().parents[1] / "params.yaml", root / "params.yaml")
        overrides = [f"data.root={tiny_data}", f"mlflow.tracking_uri=sqlite:///{root / 'mlflow.db'}",
                     "registry.min_score=0.2"]
        cfg = config(*overrides)
        tracker = Tracker(cfg)
        tracker.end()
        shutil.copy(untrained_model.onnx, root / "model.onnx")
        with contextlib.redirect_stdout(io.StringIO()):
            assert register_and_promote(cfg, root / "model.onnx", untrained_model.parity, SUMMARY,
                                        tracker.run_id).promoted
            other = config(*overrides, "registry.model_name=other", "registry.min_score=0.9")
            assert not register_and_promote(other, root / "model.onnx", untrained_model.parity, SUMMARY,
                                            tracker.run_id).promoted
        (root / "word.png").write_bytes(png_bytes(word_image("joint", np.random.default_rng(0))))
        yield {"root": root, "overrides": overrides, "cfg": cfg, "uri": f"sqlite:///{root / 'mlflow.db'}"}


def _args(registry) -> list[str]:
    return [a for o in registry["overrides"] for a in ("-o", o)]


def _model_folder(registry, name: str = "rosetta", version: str = "1") -> Path:
    """The registered version's files in the artifact store (a local folder for a SQLite store)."""
    client = MlflowClient(tracking_uri=registry["uri"], registry_uri=registry["uri"])
    uri = client.get_model_version_download_uri(name, version)
    return Path(uri.removeprefix("file://"))


@contextlib.contextmanager
def _swapped(path: Path, data: bytes):
    """``path`` holding ``data`` for the block, as someone with write access to the artifact store leaves it."""
    original = path.read_bytes()
    path.write_bytes(data)
    try:
        yield
    finally:
        path.write_bytes(original)


def _one_sentence(capsys, start: str) -> str:
    """The command's one sentence: the last line of stderr (above it at most MLflow's download progress)."""
    err = capsys.readouterr().err
    last = err.rstrip("\n").rsplit("\n", 1)[-1]
    assert last.startswith(f"error: {start}") and "Traceback" not in err and err.count("error:") == 1, err
    return last


def test_a_model_swapped_in_the_artifact_store_is_never_loaded(registry, tiny_run, capsys, monkeypatch):
    monkeypatch.chdir(registry["root"])
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    folder = _model_folder(registry)
    onnx_file = folder / "artifacts" / "model.onnx"
    # The registered model loads as it is, by every path; predict reads the production version by default.
    assert main(["predict", "--model", "models:/rosetta@production", str(registry["root"] / "word.png"),
                 *_args(registry)]) == 0
    named = capsys.readouterr().out
    assert named.startswith(f"{registry['root'] / 'word.png'}\t")
    assert main(["predict", str(registry["root"] / "word.png"), *_args(registry)]) == 0
    assert capsys.readouterr().out == named
    pwned = onnx.load(str(tiny_run.onnx))  # another model, another text
    with _swapped(onnx_file, pwned.SerializeToString()):
        for command in (["predict", "--model", "models:/rosetta@production", str(registry["root"] / "word.png")],
                        ["evaluate", "--model", "models:/rosetta/1", "--data", str(registry["root"] / "nowhere")],
                        ["serve", "--port", "1"]):
            assert main([*command, *_args(registry)]) == 2
            err = _one_sentence(capsys, "")
            assert "(v1) was changed in the artifact store since it was registered (its ONNX file no longer " \
                   "matches the digest the registry recorded); it is not loaded" in err
    code = next(folder.glob("code/rosetta_infer/pyfunc.py"))  # the model's code, which serving runs
    with _swapped(code, code.read_bytes() + b"\nprint('pwned')\n"):
        assert main(["serve", "--port", "1", *_args(registry)]) == 2
        assert "its files (model code, settings) no longer match the digest" in _one_sentence(capsys, "rosetta serve: ")
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob(f"rosetta-serve-{os.getpid()}-*"))


def test_a_registry_named_elsewhere_in_the_environment_is_not_read(registry, tmp_path, capsys, monkeypatch):
    """MLflow resolves a ``models:/`` download through its own registry setting (``MLFLOW_REGISTRY_URI``, which a
    process that set one hands to its children), whatever registry the call names: the configured store's version
    is read, not a namesake elsewhere (refused by its digest, or not found there)."""
    from mlflow.tracking._model_registry import utils as registry_utils

    monkeypatch.chdir(registry["root"])
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", elsewhere)
    monkeypatch.setattr(registry_utils, "_registry_uri", elsewhere)
    assert main(["predict", "--model", "models:/rosetta@production", str(registry["root"] / "word.png"),
                 *_args(registry)]) == 0
    assert capsys.readouterr().out.startswith(f"{registry['root'] / 'word.png'}\t")


def test_model_uris_that_name_no_model_of_the_registry_are_one_sentence(registry, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(registry["root"])
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where the server's copies would go
    foreign = registry["root"] / "sklearn-model"  # another library's model folder
    foreign.mkdir(exist_ok=True)
    (foreign / "MLmodel").write_text("flavors:\n  sklearn:\n    pickled_model: model.pkl\n")
    cases = {
        str(foreign): f"--model-uri: {foreign / 'MLmodel'} is no rosetta model (no python_function flavor with an "
                      "'onnx' artifact); give a model folder `rosetta register` logged, or serve this one with",
        "/etc": "--model-uri: '/etc' is neither a model of the registry at sqlite:///",
        "runs:/abc/model": "--model-uri: 'runs:/abc/model' is neither a model of the registry",
        "models:/rosetta@nope": "--model-uri: rosetta has no alias 'nope' (its aliases: production (v1)); use one "
                                "of those, or models:/rosetta/<version>",
        "models:/rosetta/7": "--model-uri: rosetta has no version 7 (versions 1 to 1); pick one of them",
        "models:/nobody@production": "--model-uri: no registered model 'nobody' in the registry at sqlite:///",
    }
    for uri, sentence in cases.items():
        assert main(["serve", "--model-uri", uri, *_args(registry)]) == 2
        _one_sentence(capsys, sentence)
    # The registry's own model without a production version: the command that makes one.
    assert main(["serve", *_args(registry), "-o", "registry.model_name=other"]) == 2
    _one_sentence(capsys, "rosetta serve: other has no version with alias 'production' yet (its aliases: none); "
                          "promote one with `rosetta promote --version N --force` (see the versions in `mlflow ui`), "
                          "or name a version (models:/other/<version>, `rosetta serve --version N`)")
    assert main(["serve", "--alias", "nope", *_args(registry)]) == 2
    _one_sentence(capsys, "rosetta serve: rosetta has no alias 'nope' (its aliases: production (v1)); use one of those")
    assert list(tmp_path.iterdir()) == []  # nothing copied anywhere


@pytest.mark.slow
def test_a_served_model_copy_never_outlives_its_server(registry, tmp_path, rosetta_cli):
    """``rosetta serve`` ended by SIGTERM or Ctrl-C (SIGINT) removes its checked copy of the model, and MLflow
    leaves no copy of its own; one killed outright leaves its copy, which the next ``rosetta serve`` removes."""
    env = rosetta_cli.env(TMPDIR=str(tmp_path))
    port = free_port()
    command = rosetta_cli.command("serve", "--port", str(port), *_args(registry))
    for ending in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL):
        server = subprocess.Popen(command, cwd=registry["root"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            wait_http(f"http://127.0.0.1:{port}/ping", server)
            copies = list(tmp_path.glob(f"rosetta-serve-{server.pid}-*"))
            assert len(copies) == 1 and (copies[0] / "MLmodel").is_file()
            if ending == signal.SIGINT:
                os.killpg(server.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole process group
            elif ending == signal.SIGKILL:
                os.killpg(server.pid, signal.SIGKILL)  # rosetta serve, its mlflow and uvicorn: nothing cleans up
            else:
                server.send_signal(ending)
            server.wait(timeout=60)
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        _wait_gone(port)
        left = sorted(p.name for p in tmp_path.iterdir() if p.name != ".ses")  # .ses: a session id some libraries leave, or not
        assert left == ([copies[0].name] if ending == signal.SIGKILL else []), (ending, left)
    refused = rosetta_cli("serve", "--model-uri", "models:/rosetta@nope", *_args(registry), cwd=registry["root"],
                          env=env)
    assert refused.returncode == 2 and [p.name for p in tmp_path.iterdir() if p.name != ".ses"] == []


def _wait_gone(port: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                pass
        except OSError:
            return
        assert time.monotonic() < deadline, "the server outlived rosetta serve"
        time.sleep(0.5)


def _damaged_copy(store: Path, dest: Path, table: str) -> Path:
    """``store`` with the root page of ``table`` overwritten (the SQLite header intact), as a failing disk or
    a copy taken mid-write leaves it."""
    shutil.copy(store, dest)
    with sqlite3.connect(dest) as con:
        page_size = con.execute("PRAGMA page_size").fetchone()[0]
        root = con.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
    with open(dest, "r+b") as f:
        f.seek((root - 1) * page_size + 8)
        f.write(os.urandom(page_size - 8))
    return dest


def test_a_damaged_store_is_one_sentence_for_every_command(registry, tmp_path, tiny_data, untrained_model, capsys,
                                                            monkeypatch):
    monkeypatch.chdir(registry["root"])
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    parity = write_json(tmp_path / "parity.json", untrained_model.parity)
    metrics = write_json(tmp_path / "metrics.json", {**SUMMARY, "model": {"sha256": untrained_model.parity["onnx_sha256"]}})
    run_json = write_json(tmp_path / "run.json", {"run_id": None})
    for table in ("registered_model_aliases", "runs"):
        store = _damaged_copy(registry["root"] / "mlflow.db", tmp_path / f"{table}.db", table)
        args = [*_args(registry), "-o", f"mlflow.tracking_uri=sqlite:///{store}"]
        for command in (["promote", "--version", "1", "--force"], ["rollback"],
                        ["register", "--onnx", str(registry["root"] / "model.onnx"), "--parity", str(parity),
                         "--metrics", str(metrics), "--run-json", str(run_json)],
                        ["evaluate", "--model", str(registry["root"] / "model.onnx"), "--data",
                         str(tiny_data / "lmdb" / "benchmarks")],
                        ["train", "-o", "train.max_steps=1", "-o", f"train.out_dir={tmp_path / 'run'}",
                         "-o", "data.sources=[synth]", "-o", "train.nproc=1"]):
            assert main([*command, *args]) == 2, (table, command)
            _one_sentence(capsys, f"{store}: the MLflow store is damaged (SQLite's check says: ")


def test_registration_refuses_the_evidence_of_another_file(tmp_path, tiny_data, untrained_model, capsys, monkeypatch):
    """``register --onnx B`` beside the parity report, the scores or the run record of model A is one sentence
    naming the file that is not about B, and registers nothing; B's own evidence registers B."""
    from model_fixtures import untrained_checkpoint
    from rosetta.delivery.export import export_checkpoint
    from rosetta.fsutil import sha256_file

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    overrides = [f"data.root={tiny_data}", f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
                 "export.parity_samples=4", "export.batch_size=4"]
    args = [a for o in overrides for a in ("-o", o)]
    b_best = untrained_checkpoint(tmp_path / "b.pt", config(*overrides), seed=1)
    export_checkpoint(b_best, tmp_path / "b.onnx", config(*overrides), tmp_path / "b_parity.json")
    a_parity = write_json(tmp_path / "a_parity.json", untrained_model.parity)
    for name, model in (("a", untrained_model.best), ("b", b_best)):
        assert main(["evaluate", "--model", str(model), "--data", str(tiny_data / "lmdb" / "benchmarks"),
                     "--out", str(tmp_path / f"{name}_eval"), *args]) == 0
    capsys.readouterr()
    run_json = write_json(tmp_path / "run.json", {"run_id": None})
    other_run = write_json(tmp_path / "other_run.json", {"run_id": "0" * 32})
    b = str(tmp_path / "b.onnx")
    for parity, metrics, run, sentence in (
            (a_parity, "a_eval", run_json, f"{a_parity}: the parity report is about another ONNX file (sha256 "),
            (tmp_path / "b_parity.json", "a_eval", run_json,
             f"{tmp_path / 'a_eval' / 'metrics.json'}: the benchmark metrics score another model (sha256 "),
            (tmp_path / "b_parity.json", "b_eval", other_run,
             f"{other_run}: the run record names MLflow run {'0' * 32}, but {b} was trained in run None")):
        assert main(["register", "--onnx", b, "--parity", str(parity), "--metrics",
                     str(tmp_path / metrics / "metrics.json"), "--run-json", str(run), *args]) == 2
        _one_sentence(capsys, sentence)
    assert not (tmp_path / "mlflow.db").exists()  # nothing was registered, no store even made
    assert main(["register", "--onnx", b, "--parity", str(tmp_path / "b_parity.json"), "--metrics",
                 str(tmp_path / "b_eval" / "metrics.json"), "--run-json", str(run_json), *args]) == 0
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    version = MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version("rosetta", "1")
    assert version.tags["model.sha256"] == sha256_file(tmp_path / "b.onnx")

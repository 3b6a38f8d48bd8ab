"""The MLflow store and its runs: one ``Tracker`` per run, addressed by id (no global active run); evaluation,
export and registration are nested runs of the training run.

The tracking URI is ``MLFLOW_TRACKING_URI`` when set, else ``mlflow.tracking_uri`` from params, else an absolute
sqlite file at the project root. A new experiment gets an absolute artifact location beside the sqlite file, so
runs started from DVC's or pytest's folders land in one place.
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

from rosetta.config import Config
from rosetta.errors import RosettaError
from rosetta.fsutil import environ
from rosetta.params import project_root
from rosetta.tracking.failures import store_errors
from rosetta.tracking.runs import run_name, share_runs_view

ARTIFACTS_DIR = "mlartifacts"
_MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value
TAG_PARENT = "mlflow.parentRunId"  # MLflow nests a run under the one this tag names
TAG_NOTE = "mlflow.note.content"  # the description at the top of a run's page
# The experiment's kind: a model-training one. MLflow 3's UI still opens every experiment in the view its sidebar
# switch last chose (GenAI by default); a link opens the model-training view (``rosetta.tracking.runs.ML_VIEW``).
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
# Decimals for fractions (accuracy, norm_edit_dis): 4 tell 1 sample in 10,000 apart; anything else keeps
# 4 significant digits (loss, lr, throughput).
_FRACTION_METRICS = ("accuracy", "norm_edit_dis", "same_text")


def round_metric(name: str, value: float) -> float:
    value = float(value)
    if name.rsplit("/", 1)[-1].startswith(_FRACTION_METRICS) or name.endswith(_FRACTION_METRICS):
        return round(value, 4)
    return float(f"{value:.4g}")


_SQLITE_HEADER = b"SQLite format 3\x00"

# mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI (for child processes); afterwards this process must
# still see the user's own setting, or none, not the store an earlier call chose: (user's value, exported).
_exported: tuple[str | None, str | None] | None = None


def _user_tracking_env() -> str | None:
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if _exported is not None and env == _exported[1]:
        return _exported[0]
    return env


ARTIFACT_BARS_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"  # MLflow reads it at each transfer


def artifact_bars_on_terminal():
    """MLflow's artifact progress bars while the block runs only where someone watches them: on a terminal. In a
    log (a flow run's, a DVC stage's, a pipe) each bar is dozens of lines ahead of what the command says."""
    return environ({} if sys.stderr.isatty() else {ARTIFACT_BARS_ENV: "false"})


def default_tracking_uri(cfg: Config) -> str:
    """``mlflow.tracking_uri``, else ``mlflow.db`` at the project root (``project_root``), absolute."""
    return cfg.mlflow.tracking_uri or f"sqlite:///{(project_root() / 'mlflow.db').resolve()}"


def activate_store(uri: str) -> None:
    """Make ``uri`` MLflow's store, runs and registry, for the fluent API in this process (and its children).
    The registry too: MLflow resolves a ``models:/`` download through its own registry setting
    (``MLFLOW_REGISTRY_URI``, which any process that set one hands to its children), whatever registry the call is
    given, so a namesake version in another store would be fetched."""
    global _exported
    import mlflow

    user = _user_tracking_env()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    _exported = (user, os.environ.get("MLFLOW_TRACKING_URI"))


def tracking_uri(cfg: Config) -> str:
    """The MLflow store: ``MLFLOW_TRACKING_URI``, else ``mlflow.tracking_uri``, else the project's mlflow.db.
    A sqlite file that is not a database is refused here in one sentence (MLflow would print pages of
    SQLAlchemy); a missing or empty one is a new store."""
    uri = _user_tracking_env() or default_tracking_uri(cfg)
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):])
        try:
            with open(path, "rb") as f:
                head = f.read(len(_SQLITE_HEADER))
        except FileNotFoundError:
            head = b""
        except OSError as exc:
            raise RosettaError(f"{path}: the MLflow store cannot be read ({exc.strerror}); fix its permissions "
                               "or set mlflow.tracking_uri to another store") from None
        if head and head != _SQLITE_HEADER:
            raise RosettaError(f"{path}: the MLflow store is not an SQLite database (damaged or overwritten); "
                               "move it aside to start a new store, or set mlflow.tracking_uri to another one")
        if head:
            _check_sqlite(path)
    return uri


_CHECKED: set[tuple] = set()  # sqlite stores found whole in this process: (path, size, mtime)


def _check_sqlite(path: Path) -> None:
    """Refuse an SQLite store whose pages are damaged (SQLite's ``quick_check``: milliseconds for a store of
    MBs), before MLflow reads a damaged page and answers with a traceback, or worse, with "not found"."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key in _CHECKED:
        return
    try:
        # Read-write, as MLflow opens it: a journal left by a killed writer is rolled back first.
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as con:
            problems = [row[0] for row in con.execute("PRAGMA quick_check(3)")]
    except sqlite3.OperationalError as exc:
        raise RosettaError(f"{path}: the MLflow store cannot be opened ({exc}); fix its permissions or free the "
                           "disk, or set mlflow.tracking_uri to another store") from None
    except sqlite3.DatabaseError as exc:
        problems = [str(exc)]
    if problems != ["ok"]:
        first = " ".join(problems[0].split())[:160]
        raise RosettaError(f"{path}: the MLflow store is damaged (SQLite's check says: {first}); restore it from a "
                           "backup (or `sqlite3 mlflow.db .recover`), or move it aside to start a new store")
    _CHECKED.add(key)


# What failed, in a few words, from the texts of an exception and those it was raised from (first match wins); a
# failure none of them names is said by its first line.
def artifact_location(uri: str) -> str | None:
    """``<folder of the sqlite file>/mlartifacts`` for sqlite stores; None lets a server decide."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).resolve().parent / ARTIFACTS_DIR).as_uri()
    return None


def ensure_experiment(client, name: str, uri: str) -> str:
    """The id of experiment ``name``, created with an absolute artifact location when missing."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        for key, value in EXPERIMENT_KIND.items():
            if key not in exp.tags:  # a kind someone chose in the UI stays
                client.set_experiment_tag(exp.experiment_id, key, value)
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location(uri), tags=EXPERIMENT_KIND)
    except MlflowException:
        # Another process created it between our lookup and our create.
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def parent_run(cfg: Config, model: str | Path, run_id: str | None, named_run: str | None) -> str | None:
    """The training run that results about ``model`` nest under: ``run_id`` when given (it must be in the
    store), else ``named_run``, the run the model file names (``rosetta.recognition.model_file.training_run_of``),
    when the store holds it; else None, said in one line."""
    from mlflow import MlflowClient

    uri = tracking_uri(cfg)
    wanted = run_id or named_run
    if wanted is None:
        print(f"{model} names no MLflow training run (trained before model files recorded it); these results "
              "are not logged to MLflow (`rosetta evaluate` takes --run-id)", file=sys.stderr)
        return None
    try:
        with store_errors(uri):  # a store that fails is said so, not taken for one without the run
            MlflowClient(tracking_uri=uri).get_run(wanted)
    except RosettaError:
        raise
    except Exception:
        if run_id is not None:
            raise RosettaError(f"MLflow run {run_id} not found at {uri}; check MLFLOW_TRACKING_URI or "
                               "mlflow.tracking_uri (or train again)") from None
        print(f"{model} was trained in MLflow run {wanted}, which {uri} does not hold; these results are not "
              "logged (set mlflow.tracking_uri to that run's store)", file=sys.stderr)
        return None
    return wanted


class Tracker:
    """One MLflow run: created (``run_id=None``, under ``parent_id`` when given) or continued, then written
    to by id. ``reopen=False`` adds to a run without marking it running again (its duration stays)."""

    def __init__(self, cfg: Config, run_id: str | None = None, *, tags: Mapping[str, str] | None = None,
                 params: Mapping[str, Any] | None = None, name: str | None = None, parent_id: str | None = None,
                 reopen: bool = True):
        from mlflow import MlflowClient

        self.uri = tracking_uri(cfg)
        self.client = MlflowClient(tracking_uri=self.uri)
        if run_id is not None:
            self._continue(run_id, reopen)
            return
        tags = dict(tags or {})
        if parent_id is not None:
            exp_id = self._existing(parent_id).info.experiment_id
            tags[TAG_PARENT] = parent_id
        else:
            with store_errors(self.uri):
                exp_id = ensure_experiment(self.client, cfg.mlflow.experiment, self.uri)
        with store_errors(self.uri):
            name = name or tags.pop("mlflow.runName", None) or self._unique(exp_id, run_name(cfg))
            run = self.client.create_run(exp_id, run_name=name, tags=tags)
        self.run_id = run.info.run_id
        if params:
            self.log_params(params)

    @classmethod
    def at(cls, uri: str, run_id: str, *, reopen: bool = True) -> "Tracker":
        """Run ``run_id`` of the store at ``uri`` (one a record names, rather than the params)."""
        from mlflow import MlflowClient

        tracker = cls.__new__(cls)
        tracker.uri, tracker.client = uri, MlflowClient(tracking_uri=uri)
        tracker._continue(run_id, reopen)
        return tracker

    def _continue(self, run_id: str, reopen: bool) -> None:
        self.run_id = self._existing(run_id).info.run_id
        if reopen:
            self.reopen()

    def reopen(self) -> None:
        """Mark the run running again (a resumed training)."""
        with store_errors(self.uri):
            self.client.update_run(self.run_id, status="RUNNING")

    def _unique(self, exp_id: str, name: str) -> str:
        """``name``, or ``name #2``, ``#3``... when runs of the experiment already have it (two runs started
        in the same second, or the same ``mlflow.run_name``)."""
        if "'" in name:
            return name
        taken = {r.info.run_name for r in self.client.search_runs(
            [exp_id], filter_string=f"attributes.run_name LIKE '{name}%'", max_results=1000)}
        n = 1
        candidate = name
        while candidate in taken:
            n += 1
            candidate = f"{name} #{n}"
        return candidate

    def _existing(self, run_id: str):
        try:
            with store_errors(self.uri):
                return self.client.get_run(run_id)
        except RosettaError:
            raise
        except Exception:
            raise RosettaError(f"MLflow run {run_id} not found at {self.uri}; check MLFLOW_TRACKING_URI "
                               "or mlflow.tracking_uri (or train again)") from None

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:_MAX_PARAM_LENGTH]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None,
                    timestamp_ms: int | None = None) -> None:
        """``metrics`` at ``step``, measured at ``timestamp_ms`` (now when None: a journal sends its own)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        items = [Metric(k, round_metric(k, v), now, step or 0) for k, v in metrics.items()]
        for i in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[i:i + 1000])

    def set_tags(self, tags: Mapping[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, v)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def share_runs_view(self, metrics: list[str]) -> None:
        """``metrics`` as columns of the runs list's shared view (``share_runs_view``) of this run's experiment."""
        share_runs_view(self.client, self.client.get_run(self.run_id).info.experiment_id, metrics)

    def describe(self, text: str) -> None:
        self.client.set_tag(self.run_id, TAG_NOTE, text)

    def add_to_description(self, line: str) -> None:
        """Append ``line`` to the description, replacing an earlier line that starts with the same words."""
        current = self.client.get_run(self.run_id).data.tags.get(TAG_NOTE, "")
        head = line.split(":", 1)[0]
        kept = [p for p in current.split("\n\n") if p and not p.startswith(head)]
        self.describe("\n\n".join([*kept, line]))

    def log_pytorch_model(self, model, example, name: str = "pytorch_model") -> str:
        """The model in MLflow's pytorch flavour (``pt2``: a traced graph, no pickle), batch and width
        dynamic; returns the model URI."""
        import mlflow
        import numpy as np
        import torch
        from mlflow.models import ModelSignature
        from mlflow.types import Schema, TensorSpec

        signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *example.shape[1:3], -1))]),
                                   outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1, -1))]))
        with self.active():
            # A pt2 graph needs torch alone: naming it spares MLflow inferring requirements in a subprocess.
            info = mlflow.pytorch.log_model(model.eval(), name=name, input_example=example, signature=signature,
                                            serialization_format="pt2",
                                            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
        self.client.update_run(self.run_id, status="RUNNING")
        return info.model_uri

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """This run as MLflow's active run in this process, for the fluent API (``log_model``). The links MLflow
        prints to stdout when the run ends against a tracking server go to stderr, so what a command prints on
        stdout (``evaluate --json``) stays its own."""
        import mlflow

        activate_store(self.uri)
        with contextlib.redirect_stdout(sys.stderr), mlflow.start_run(run_id=self.run_id):
            yield

    def end(self, status: str = "FINISHED") -> None:
        # Against a tracking server MLflow prints the run's links to stdout here: to stderr, as in ``active``.
        with contextlib.redirect_stdout(sys.stderr):
            self.client.set_terminated(self.run_id, status)

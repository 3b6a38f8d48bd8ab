"""MLflow tracking at the edges: one ``Tracker`` per run, addressed by id (no global active run), plus what
a training run records so two runs compare at a glance: a name saying what the run is, the params that can
change a result (the rest as ``config/params.yaml``), the data version from ``dvc.lock``, the git commit, and
a description at the top of the run page. Evaluation and registration are nested runs of the training run.

The tracking URI is ``MLFLOW_TRACKING_URI`` when set, else ``mlflow.tracking_uri`` from params (an
absolute sqlite file at the project root by default). A new experiment gets an absolute artifact
location beside the sqlite file, so runs started from DVC's or pytest's folders land in one place.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

import yaml

from rosetta.config import Config, project_root
from rosetta.errors import RosettaError

ARTIFACTS_DIR = "mlartifacts"
_MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value
TAG_PARENT = "mlflow.parentRunId"  # MLflow nests a run under the one this tag names
TAG_NOTE = "mlflow.note.content"  # the description at the top of a run's page
TAG_CHANGED = "changed_params"  # the params that differ from the defaults, one column in the runs table
TAG_BACKBONE = "backbone"
# An experiment of this kind opens in MLflow's "Model training" view rather than the GenAI one.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}

# Params that cannot change a trained model or its scores: where files go, how fast, how often to log,
# downloads' addresses, the later stages' gates. They go to the config artifact, not to the params table.
_NOT_RESULT_PREFIXES = ("prefect.", "mlflow.", "export.", "registry.", "serve.", "eval.", "data.validation.")
_NOT_RESULT_SUFFIXES = (".url", ".sha256", ".out_dir")
_NOT_RESULT_KEYS = {"data.root", "data.workers", "data.real_benchmarks", "train.device", "train.num_workers",
                    "train.threads", "train.log_every", "train.checkpoint_every", "train.log_model",
                    "train.max_bad_steps", "train.compile", "train.channels_last"}
# Decimals for fractions (accuracy, norm_edit_dis): 4 tell 1 sample in 10,000 apart; anything else keeps
# 4 significant digits (loss, lr, throughput).
_FRACTION_METRICS = ("accuracy", "norm_edit_dis", "same_text")


def result_params(cfg: Config) -> dict[str, Any]:
    """The flat params that can change a result: what MLflow logs as params."""
    return {k: v for k, v in cfg.flat().items()
            if not (k.startswith(_NOT_RESULT_PREFIXES) or k.endswith(_NOT_RESULT_SUFFIXES) or k in _NOT_RESULT_KEYS)}


def changed_params(cfg: Config) -> dict[str, Any]:
    """The result params whose values differ from the defaults (``rosetta.config``'s, which params.yaml
    repeats), the backbone's own keys left out (the backbone is named on its own)."""
    defaults = result_params(Config())
    return {k: v for k, v in result_params(cfg).items()
            if not k.startswith("model.backbone.") and defaults.get(k, object()) != v}


def backbone_label(cfg: Config) -> str:
    """``mobilenet_v3 large x0.5`` or ``resnet34_vd``: the backbone and its size."""
    b = cfg.model.backbone
    return f"{b.key} {b.model_name} x{b.scale:g}" if hasattr(b, "model_name") else b.key


def _short(key: str, value: Any) -> str:
    return f"{key.rsplit('.', 1)[-1]}={value if not isinstance(value, list) else ','.join(map(str, value))}"


# A run name shows the model's and the recipe's changes before the data's; a path says little in a name.
_NAME_ORDER = ("model.", "train.", "seed", "charset.", "data.")


def run_name(cfg: Config, now: datetime | None = None, max_changes: int = 4) -> str:
    """``mlflow.run_name`` when set, else what the run is: backbone, the first changed params and the
    local date and time, e.g. ``mobilenet_v3 large x0.5 lr=0.001 max_steps=600 11-27 23:40:05``."""
    if cfg.mlflow.run_name:
        return cfg.mlflow.run_name
    changed = [(k, v) for k, v in changed_params(cfg).items() if not (isinstance(v, str) and "/" in v)]
    changed.sort(key=lambda kv: next(i for i, p in enumerate(_NAME_ORDER + ("",)) if kv[0].startswith(p)))
    changes = [_short(k, v) for k, v in changed]
    shown = changes[:max_changes] + ([f"+{len(changes) - max_changes}"] if len(changes) > max_changes else [])
    return " ".join([backbone_label(cfg), *shown, (now or datetime.now()).strftime("%m-%d %H:%M:%S")])


def round_metric(name: str, value: float) -> float:
    value = float(value)
    if name.rsplit("/", 1)[-1].startswith(_FRACTION_METRICS) or name.endswith(_FRACTION_METRICS):
        return round(value, 4)
    return float(f"{value:.4g}")


def run_description(cfg: Config, tags: Mapping[str, str]) -> str:
    """The Markdown at the top of a training run's page: what it trained, on which data, and what differs."""
    changed = changed_params(cfg)
    lines = [f"**{backbone_label(cfg)}**, data version `{tags.get('data_version', 'unknown')}`, "
             f"git `{tags.get('git_commit', 'unknown')}`",
             "Params that differ from the defaults: " + (", ".join(f"`{k}={v}`" for k, v in changed.items())
                                                          if changed else "none")]
    return "\n\n".join(lines)


def benchmark_description(summary: Mapping[str, Any]) -> str:
    """One line of benchmark accuracies (fractions) for a run's description."""
    parts = [f"{name} {m['accuracy']:.4f}" for name, m in summary["sets"].items()]
    if "accuracy_real" in summary:
        parts.append(f"real total {summary['accuracy_real']:.4f}")
    parts.append(f"total {summary['accuracy_total']:.4f}")
    return "Benchmark accuracy: " + ", ".join(parts)


_SQLITE_HEADER = b"SQLite format 3\x00"

# mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI (for child processes); afterwards this process must
# still see the user's own setting, or none, not the store an earlier call chose: (user's value, exported).
_exported: tuple[str | None, str | None] | None = None


def _user_tracking_env() -> str | None:
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if _exported is not None and env == _exported[1]:
        return _exported[0]
    return env


def activate_store(uri: str) -> None:
    """Make ``uri`` MLflow's store for the fluent API in this process (and its children)."""
    global _exported
    import mlflow

    user = _user_tracking_env()
    mlflow.set_tracking_uri(uri)
    _exported = (user, os.environ.get("MLFLOW_TRACKING_URI"))


def tracking_uri(cfg: Config) -> str:
    """The MLflow store: ``MLFLOW_TRACKING_URI``, else ``mlflow.tracking_uri``, else the project's mlflow.db.
    A sqlite file that is not a database is refused here in one sentence (MLflow would print pages of
    SQLAlchemy); a missing or empty one is a new store."""
    uri = _user_tracking_env() or cfg.mlflow.resolved_tracking_uri()
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
    return uri


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


def data_version(root: Path | None = None) -> dict[str, str]:
    """md5 of every LMDB output recorded in ``dvc.lock`` (``{path: md5}``), empty without a lock file."""
    lock = _find_file("dvc.lock", root)
    if lock is None:
        return {}
    try:
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    except yaml.YAMLError:
        return {}
    found = {}
    for stage in stages.values():
        for out in stage.get("outs", []) or []:
            path, md5 = out.get("path", ""), out.get("md5")
            if md5 and "lmdb" in Path(path).parts:
                found[path] = md5
    return dict(sorted(found.items()))


def git_commit(root: Path | None = None) -> str | None:
    """The checked-out commit, with ``-dirty`` when tracked files differ; None outside git or before
    the first commit."""
    cwd = root or Path.cwd()
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             timeout=10)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def provenance_tags(root: Path | None = None) -> dict[str, str]:
    tags = {}
    commit = git_commit(root)
    tags["git_commit"] = commit or "unknown"
    if commit:
        tags["mlflow.source.git.commit"] = commit.removesuffix("-dirty")
    version = data_version(root)
    for path, md5 in version.items():
        tags[f"data_version.{path}"] = md5
    # One short id for the whole data: the md5 of the per-path hashes.
    joined = ";".join(f"{p}={m}" for p, m in version.items())
    tags["data_version"] = hashlib.md5(joined.encode()).hexdigest() if version else "unknown"
    return tags


def _find_file(name: str, root: Path | None) -> Path | None:
    for folder in ([root] if root else [project_root()]):
        if (folder / name).is_file():
            return folder / name
    return None


def training_run_of(model: str | Path) -> str | None:
    """The MLflow training run recorded in a checkpoint (``run_id``) or an exported ONNX file (its
    ``rosetta.model`` metadata); None when the file names none."""
    if Path(model).suffix.lower() == ".onnx":
        from rosetta.onnx_runtime import onnx_model_info

        return onnx_model_info(Path(model)).get("run_id")
    from rosetta.checkpoint import load_checkpoint

    return load_checkpoint(model).get("run_id")


def parent_run(cfg: Config, model: str | Path, run_id: str | None = None) -> str | None:
    """The training run that results about ``model`` nest under: ``run_id`` when given (it must be in the
    store), else the run the model file names when the store holds it; else None, said in one line."""
    from mlflow import MlflowClient

    uri = tracking_uri(cfg)
    wanted = run_id or training_run_of(model)
    if wanted is None:
        print(f"{model} names no MLflow training run (trained before model files recorded it); these results "
              "are not logged to MLflow (`rosetta evaluate` takes --run-id)", file=sys.stderr)
        return None
    try:
        MlflowClient(tracking_uri=uri).get_run(wanted)
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
        self.experiment = cfg.mlflow.experiment
        self.client = MlflowClient(tracking_uri=self.uri)
        if run_id is not None:
            self.run_id = self._existing(run_id).info.run_id
            if reopen:
                self.client.update_run(run_id, status="RUNNING")
            return
        tags = dict(tags or {})
        if parent_id is not None:
            exp_id = self._existing(parent_id).info.experiment_id
            tags[TAG_PARENT] = parent_id
        else:
            exp_id = ensure_experiment(self.client, self.experiment, self.uri)
        name = name or tags.pop("mlflow.runName", None) or self._unique(exp_id, run_name(cfg))
        run = self.client.create_run(exp_id, run_name=name, tags=tags)
        self.run_id = run.info.run_id
        if params:
            self.log_params(params)

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
            return self.client.get_run(run_id)
        except Exception:
            raise RosettaError(f"MLflow run {run_id} not found at {self.uri}; check MLFLOW_TRACKING_URI "
                               "or mlflow.tracking_uri (or train again)") from None

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:_MAX_PARAM_LENGTH]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, round_metric(k, v), now, step or 0) for k, v in metrics.items()]
        for i in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[i:i + 1000])

    def set_tags(self, tags: Mapping[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, v)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_config(self, cfg: Config) -> None:
        """Every param, those that cannot change a result included, as ``config/params.yaml``."""
        self.client.log_text(self.run_id, yaml.safe_dump(cfg.to_dict(), sort_keys=False), "config/params.yaml")

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
        activate_store(self.uri)
        with mlflow.start_run(run_id=self.run_id):
            # A pt2 graph needs torch alone: naming it spares MLflow inferring requirements in a subprocess.
            info = mlflow.pytorch.log_model(model.eval(), name=name, input_example=example, signature=signature,
                                            serialization_format="pt2",
                                            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
        self.client.update_run(self.run_id, status="RUNNING")
        return info.model_uri

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status)

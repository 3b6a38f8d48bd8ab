"""MLflow tracking at the edges: one ``Tracker`` per run, addressed by id (no global active run), plus the
provenance every training run records (params, data version from ``dvc.lock``, git commit).

The tracking URI is ``MLFLOW_TRACKING_URI`` when set, else ``mlflow.tracking_uri`` from params (an
absolute sqlite file at the project root by default). A new experiment gets an absolute artifact
location beside the sqlite file, so runs started from DVC's or pytest's folders land in one place.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Mapping

import yaml

from rosetta.config import PROJECT_ROOT, Config
from rosetta.errors import RosettaError

ARTIFACTS_DIR = "mlartifacts"
_MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value


def tracking_uri(cfg: Config) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or cfg.mlflow.resolved_tracking_uri()


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
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location(uri))
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
    for folder in ([root] if root else [Path.cwd(), PROJECT_ROOT]):
        if (folder / name).is_file():
            return folder / name
    return None


class Tracker:
    """One MLflow run: created (``run_id=None``) or continued, then written to by id."""

    def __init__(self, cfg: Config, run_id: str | None = None, *, tags: Mapping[str, str] | None = None,
                 params: Mapping[str, Any] | None = None):
        from mlflow import MlflowClient

        self.uri = tracking_uri(cfg)
        self.experiment = cfg.mlflow.experiment
        self.client = MlflowClient(tracking_uri=self.uri)
        if run_id is not None:
            try:
                self.client.get_run(run_id)
            except Exception:
                raise RosettaError(f"MLflow run {run_id} not found at {self.uri}; check MLFLOW_TRACKING_URI "
                                   "or mlflow.tracking_uri (or train again)") from None
            self.run_id = run_id
            self.client.update_run(run_id, status="RUNNING")
            return
        exp_id = ensure_experiment(self.client, self.experiment, self.uri)
        run = self.client.create_run(exp_id, run_name=cfg.mlflow.run_name, tags=dict(tags or {}))
        self.run_id = run.info.run_id
        if params:
            self.log_params(params)

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:_MAX_PARAM_LENGTH]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        for i in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[i:i + 1000])

    def set_tags(self, tags: Mapping[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, v)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

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
        mlflow.set_tracking_uri(self.uri)
        with mlflow.start_run(run_id=self.run_id):
            # A pt2 graph needs torch alone: naming it spares MLflow inferring requirements in a subprocess.
            info = mlflow.pytorch.log_model(model.eval(), name=name, input_example=example, signature=signature,
                                            serialization_format="pt2",
                                            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
        self.client.update_run(self.run_id, status="RUNNING")
        return info.model_uri

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status)

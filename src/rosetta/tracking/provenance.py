"""Where a run comes from: the git commit (``-dirty`` when tracked code differs), the data version (the md5 of every
LMDB output ``dvc.lock`` records), the DVC experiment and the Prefect flow run it belongs to; tagged on training
runs and registered versions.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import yaml

from rosetta.params import project_root


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


# Tracked files a run writes itself: DVC records each stage in dvc.lock (and *.dvc files), and `dvc exp run -S` or a
# flow run writes its overrides into params.yaml, which the run's MLflow params and its DVC experiment record.
# Neither makes the code differ from the commit.
RUN_WRITTEN = ("dvc.lock", "*.dvc", "params.yaml")
# Set by DVC for the stages of `dvc exp run` (and by the Prefect flow for the experiment it saves); the flow also
# sets the other: its flow run's page in the Prefect UI.
DVC_EXPERIMENT_ENV = "DVC_EXP_NAME"
FLOW_RUN_URL_ENV = "ROSETTA_FLOW_RUN_URL"
TAG_DVC_EXPERIMENT = "dvc_experiment"
TAG_FLOW_RUN = "prefect_flow_run"


def git_commit(root: Path | None = None) -> str | None:
    """The checked-out commit, with ``-dirty`` when a tracked file differs from it, the files a run writes itself
    (``RUN_WRITTEN``) left out; None outside git or before the first commit."""
    cwd = root or Path.cwd()
    excluded = [f":(top,exclude,glob)**/{name}" for name in RUN_WRITTEN]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             timeout=10)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":/", *excluded],
                               cwd=cwd, capture_output=True, text=True, timeout=30)
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
    for key, env in ((TAG_DVC_EXPERIMENT, DVC_EXPERIMENT_ENV), (TAG_FLOW_RUN, FLOW_RUN_URL_ENV)):
        if os.environ.get(env):
            tags[key] = os.environ[env]
    return tags


def _find_file(name: str, root: Path | None) -> Path | None:
    for folder in ([root] if root else [project_root()]):
        if (folder / name).is_file():
            return folder / name
    return None

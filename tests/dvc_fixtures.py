"""A scratch copy of the project as a clone holds it (git + DVC, the real ``dvc`` from the venv), with params
changed for a test, and the helpers the DVC tests share to run commands in it and read what DVC did."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

import pytest
import yaml

from rosetta.params import PROJECT_ROOT

VENV_BIN = Path(sys.executable).parent
DVC = VENV_BIN / "dvc"
needs_dvc = pytest.mark.skipif(not DVC.exists(), reason="dvc is not installed in the venv")

# What the stages read besides their own code: src/ is hashed as deps (the code itself runs installed).
PROJECT_FILES = ("dvc.yaml", "params.yaml", ".gitignore")
PROJECT_FOLDERS = ("stages", "src", "packages")


def command_env(**extra: str) -> dict[str, str]:
    """The environment a user's shell has: the venv first on PATH, no MLflow URI (the params decide)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return {**env, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
            "GIT_CONFIG_NOSYSTEM": "1", **extra}


def run(repo: Path, *args: str, stdout_only: bool = False, timeout: float = 400,
        env: Mapping[str, str] | None = None) -> str:
    """``args`` in ``repo``; fails the test with both streams when it fails."""
    proc = subprocess.run(args, cwd=repo, env=dict(env or command_env()), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout if stdout_only else proc.stdout + proc.stderr


def dvc(repo: Path, *args: str, **kwargs: Any) -> str:
    return run(repo, str(DVC), *args, **kwargs)


def stages_run(output: str) -> list[str]:
    """The stages a ``dvc repro`` ran, in order."""
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


def always_changed(repo: Path) -> set[str]:
    """Stages dvc.yaml marks ``always_changed``: every ``dvc repro`` runs them (and nothing after them unless
    their outputs change)."""
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    return {name for name, stage in stages.items() if stage.get("always_changed")}


def set_params(repo: Path, changes: Mapping[str, Any]) -> None:
    """Set dotted keys (``data.synth.train_size``) in ``repo/params.yaml``."""
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = params
        for part in parents:
            node = node[part]
        node[last] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def project_copy(repo: Path, params: Mapping[str, Any] = (), files: tuple[str, ...] = (),
                 folders: tuple[str, ...] = (), commit: bool = False,
                 env: Mapping[str, str] | None = None) -> Path:
    """The project's pipeline copied to ``repo`` (plus ``files`` and ``folders``), ``params`` set, as a git
    and DVC repository; committed when ``commit``."""
    repo.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES + files:
        shutil.copy(PROJECT_ROOT / name, repo / name)
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for folder in PROJECT_FOLDERS + folders:
        shutil.copytree(PROJECT_ROOT / folder, repo / folder, ignore=skip)
    set_params(repo, dict(params))
    steps = [["git", "init", "-q"], [str(DVC), "init", "-q"]]
    if commit:
        steps += [["git", "add", "-A"], ["git", "commit", "-qm", "project"]]
    for step in steps:
        run(repo, *step, env=env)
    return repo


# Rendering, converting and validating in seconds: a few dozen words.
TINY_DATA = {"data.synth.train_size": 40, "data.synth.val_size": 10, "data.synth.test_size": 10,
             "data.synth.vocabulary_size": 2000, "data.workers": 1}

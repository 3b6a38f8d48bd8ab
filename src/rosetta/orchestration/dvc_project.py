"""The Prefect flow's hold on the DVC pipeline: ``dvc.yaml`` owns the sequence, the flow drives it.

A flow run writes its overrides into the project's ``params.yaml`` (as ``dvc exp run -S`` does), runs each
stage with ``dvc repro <stage>`` in the project folder, and records the result as a DVC experiment
(``dvc exp save``), so ``dvc.lock``, ``dvc status`` and ``dvc exp show`` know every flow run. What the
flow reports is ``rosetta.orchestration.report``'s.
"""
from __future__ import annotations

import collections
import os
import subprocess
import sys
from pathlib import Path

from rosetta.config import Config, load_config
from rosetta.errors import RosettaError
from rosetta.fsutil import environ, exclusive_lock
from rosetta.params import PROJECT_ROOT, ConfigError, apply_overrides, read_params, write_params
from rosetta.tracking.provenance import DVC_EXPERIMENT_ENV, FLOW_RUN_URL_ENV

PARAMS = "params.yaml"  # what dvc.yaml's stages read
# On a worker's host: the project folder its flow runs start in (the gpu deployment's pull step, ``enter_project``).
PROJECT_DIR_ENV = "ROSETTA_PROJECT_DIR"
LOCK = Path(".dvc") / "tmp" / "rosetta-flow.lock"


def flow_overrides(overrides: list[str] | None, gpus: int | None) -> list[str]:
    """The flow's overrides; ``gpus`` trains on that many CUDA devices (train.nproc)."""
    overrides = list(overrides or [])
    if gpus is not None:
        if gpus < 1:
            raise ConfigError(f"gpus: {gpus!r} must be at least 1 (leave it out to train on train.device)")
        overrides += [f"train.nproc={gpus}", "train.device=cuda"]
    return overrides


def project_folder(project_dir: Path | None = None) -> Path:
    """The DVC project the flow runs in: the working directory (the deployment's pull step sets it)."""
    project_dir = Path(project_dir or Path.cwd()).resolve()
    if not (project_dir / "dvc.yaml").is_file() or not (project_dir / PARAMS).is_file():
        raise RosettaError(f"{project_dir}: no dvc.yaml and params.yaml there; run the flow from the project folder "
                           "(deploy from it with `prefect deploy --all`)")
    return project_dir


def enter_project(directory: str | None = None) -> dict[str, str]:
    """The gpu deployment's pull step (prefect.yaml): a flow run starts in the project folder on the worker's own
    host, never in a path of the machine that deployed it. That folder is ``directory`` when the step names one,
    else ``$ROSETTA_PROJECT_DIR`` on the worker's host, else the checkout this ``rosetta`` is installed from: the
    worker's own clone, whose venv runs the stages' code."""
    folder = project_folder(Path(directory or os.environ.get(PROJECT_DIR_ENV) or PROJECT_ROOT))
    os.chdir(folder)
    return {"directory": str(folder)}


def enter_workspace() -> dict[str, str]:
    """The team deployment's pull step (prefect.yaml): a flow run starts in its worker's own clone of the project
    (``$ROSETTA_PROJECT_DIR``, which ``rosetta team up`` sets for each worker), brought to the latest commit of the
    clone's ``origin`` first: tracked files (params.yaml, dvc.lock) as committed there, so no run inherits an
    earlier run's overrides; data, runs and the DVC cache, untracked, stay for DVC to reuse."""
    folder = os.environ.get(PROJECT_DIR_ENV)
    if not folder:
        raise RosettaError(f"a worker of the team pool needs {PROJECT_DIR_ENV} naming its own clone of the project; "
                           "start the workers with `rosetta team up`, or set it before `prefect worker start`")
    folder = project_folder(Path(folder))
    for step in (["git", "fetch", "-q", "origin"], ["git", "reset", "-q", "--hard", "origin/HEAD"]):
        done = subprocess.run(step, cwd=folder, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RosettaError(f"{folder}: `{' '.join(step)}` failed ({' '.join(done.stderr.split())[:200]}); the "
                               "worker's clone must have the project as its git remote origin")
    return enter_project(str(folder))


def project_lock(project_dir: Path):
    """One flow run at a time in a project folder: two would write the same params and checkpoints."""
    return exclusive_lock(project_dir / LOCK, f"{project_dir}: another flow run is using this project folder "
                                              "({holder}); wait for it to end (the deployments' concurrency_limit "
                                              "queues runs) or run from another clone")


def recorded_as(experiment: str, flow_run_url: str | None):
    """Every dvc command started inside runs its stages for DVC experiment ``experiment`` and the Prefect flow run
    at ``flow_run_url``: the training run and the registered version are tagged with both
    (``rosetta.tracking.provenance``), as ``dvc exp run`` names its experiment to its stages."""
    values = {DVC_EXPERIMENT_ENV: experiment, FLOW_RUN_URL_ENV: flow_run_url}
    return environ({k: v for k, v in values.items() if v})


def apply_params(project_dir: Path, overrides: list[str]) -> Config:
    """Check ``overrides`` against the project's params.yaml, then write them into it, comments kept, so
    every DVC stage reads them; returns the configuration the stages will see."""
    path = project_dir / PARAMS
    cfg = load_config(path, overrides)  # a bad override stops here, before any file changes
    if overrides:
        write_params(path, apply_overrides(read_params(path), overrides))
    return cfg


def _dvc_command(*args: str) -> tuple[list[str], dict[str, str]]:
    """The venv's dvc (else the one on PATH), with the venv first on PATH so stages find its python."""
    bin_dir = Path(sys.executable).parent
    exe = bin_dir / "dvc"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1"}
    return [str(exe) if exe.exists() else "dvc", *args], env


def dvc(project_dir: Path, *args: str) -> str:
    """Run ``dvc args`` in ``project_dir``, echoing its output into the flow's log; a failure raises the stage
    script's own one sentence (its ``error: ...`` line) when it printed one."""
    cmd, env = _dvc_command(*args)
    proc = subprocess.Popen(cmd, cwd=project_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    tail: collections.deque[str] = collections.deque(maxlen=200)
    assert proc.stdout is not None
    for line in proc.stdout:
        print(line.rstrip(), flush=True)
        tail.append(line.strip())
    if proc.wait() != 0:
        ours = [line[len("error: "):] for line in tail if line.startswith("error: ")]
        raise RosettaError(ours[-1] if ours else f"`dvc {' '.join(args)}` failed in {project_dir}; see the log above")
    return "\n".join(tail)


def pull_data(project_dir: Path) -> None:
    """``dvc pull`` the data stages' outputs (with those they are made from) when the project has a default DVC
    remote; what it misses, repro rebuilds."""
    if _default_remote(project_dir):
        try:
            dvc(project_dir, "pull", "--with-deps", "validate")
        except RosettaError as exc:
            print(f"dvc pull did not bring everything ({exc}); dvc repro rebuilds the rest", flush=True)


def publish(project_dir: Path, experiment: str) -> str:
    """A flow run's results for the rest of the team: the DVC experiment to the clone's git remote ``origin`` and its
    outputs (data, checkpoints, model) to the default DVC remote (``dvc exp push``), so any clone lists it
    (``dvc exp list origin``) and gets it back (``dvc exp apply`` + ``dvc pull``). Returns what it did."""
    remote = _default_remote(project_dir)
    origin = subprocess.run(["git", "remote", "get-url", "origin"], cwd=project_dir, capture_output=True, text=True)
    if not remote or origin.returncode != 0:
        raise RosettaError(f"{project_dir}: publishing needs a default DVC remote and a git remote origin (the team's "
                           "workers' clones have both); add them, or run the flow with publish_to_team=false")
    dvc(project_dir, "exp", "push", "origin", experiment)
    return f"experiment {experiment} pushed to {origin.stdout.strip()}, its outputs to DVC remote {remote}"


def _default_remote(project_dir: Path) -> str | None:
    """The name of the project's default DVC remote (the one ``dvc pull`` and ``dvc exp push`` use), if any."""
    cmd, env = _dvc_command("remote", "default")
    done = subprocess.run(cmd, cwd=project_dir, env=env, capture_output=True, text=True)
    return done.stdout.strip() or None if done.returncode == 0 else None


def save_experiment(project_dir: Path, name: str) -> str:
    """Record the workspace as DVC experiment ``name`` for ``dvc exp show``: params and ``dvc.lock``, whose
    outputs (metrics, plots, models) ``dvc repro`` has put in the cache, so the experiment keeps them all."""
    dvc(project_dir, "exp", "save", "--force", "--name", name)
    return name

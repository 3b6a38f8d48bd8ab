"""``rosetta team seed``: what the project already has, put where the team finds it. The outputs ``dvc.lock``
records (the data stages' LMDBs, the models) go to the team's DVC remote, so a clone's first ``dvc pull`` gets
them; the production model of the project's own MLflow store goes to the team's registry
(``rosetta.registry.transfer``), so ``models:/rosetta@production`` answers on every machine.
"""
from __future__ import annotations

import contextlib
import subprocess

from rosetta.config import load_config
from rosetta.registry.transfer import copy_production
from rosetta.errors import RosettaError
from rosetta.orchestration.dvc_project import PARAMS, dvc
from rosetta.orchestration.team import Team, team_env, team_secrets
from rosetta.tracking.store import default_tracking_uri

COMMAND = "rosetta team seed"


def check_lock_committed(team: Team) -> None:
    """Another clone gets the committed dvc.lock: what is pushed must be what it records."""
    done = subprocess.run(["git", "status", "--porcelain", "--", "dvc.lock"], cwd=team.project, capture_output=True,
                          text=True, timeout=60)
    if done.returncode != 0 or done.stdout.strip():
        raise RosettaError(f"{team.project / 'dvc.lock'}: not committed as it is, so other clones would look for "
                           "other outputs than those pushed; commit it first (`git add dvc.lock && git commit`)")


def team_seed(team: Team) -> str | None:
    """Push the project's DVC outputs to the team's remote and copy its production model into the team's
    registry (where the team has none yet); returns the team's new version, if one was copied."""
    if not team.env_file.is_file():
        raise RosettaError(f"{team.folder}: the team is not up; run `rosetta team up` first")
    check_lock_committed(team)
    cfg = load_config(team.project / PARAMS)
    print(f"pushing the outputs dvc.lock records to the team's DVC remote {team.remote}", flush=True)
    dvc(team.project, "push")
    with contextlib.chdir(team.project):  # the project's own store: mlflow.tracking_uri, else its mlflow.db
        source = default_tracking_uri(cfg)
    # The team's MLflow server, and its Prefect server, where the registry lock is.
    destination = {k: v for k, v in team_env(team, team_secrets(team)).items()
                   if k.startswith(("MLFLOW_", "PREFECT_API_"))}
    return copy_production(cfg, source, destination, COMMAND)

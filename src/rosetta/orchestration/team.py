"""The team's servers on one machine, as processes: PostgreSQL (Debian's), an MLflow tracking server on it that
serves its own artifact store, a Prefect server on it with the project's work pools and two workers, and a
DVC remote folder. ``team_up`` starts what is not running and waits until each answers, ``team_down`` stops
everything it started; both keep their state (pid files, logs, ports, secrets) in one folder, ``.team/``.

The workers poll pool ``team`` (prefect.yaml's ``team`` deployment), one flow run at a time each, and each runs
its flows in a clone of its own (``<folder>/workspaces/<worker>``, ``ROSETTA_PROJECT_DIR`` in its environment):
two runs at once never share params.yaml, checkpoints or a DVC workspace. A clone's ``origin`` is the project, so
each run starts from the project's latest commit and pushes its DVC experiment back to it.

MLflow runs with its basic-auth app and Prefect with its API auth string. The settings a team member needs (the
three addresses and the two servers' credentials) are written to ``<folder>/env.sh`` (mode 600), sourceable by a
shell.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping

from rosetta.errors import RosettaError
from rosetta.fsutil import exclusive_lock, write_json, write_private
from rosetta.orchestration import processes
from rosetta.orchestration.dvc_project import PROJECT_DIR_ENV
from rosetta.orchestration.postgres import Cluster
from rosetta.prep.benchmarks import ORIGIN_ENV

PG_USER = "rosetta"  # the cluster's superuser, with a generated password
DATABASES = ("mlflow", "mlflow_auth", "prefect")  # runs and registry; MLflow's users; Prefect's state
MLFLOW_ADMIN = "admin"  # the MLflow user a team member signs in as (more users: docs/reference.md)
POOLS = ("local", "gpu", "team")  # prefect.yaml's work pools
WORKER_POOL = "team"  # the pool of the team's workers
WORKERS = 2  # workers on pool ``team``
SECRET_VARIABLES = ("MLFLOW_TRACKING_PASSWORD", "PREFECT_API_AUTH_STRING")  # never printed
BIN = Path(sys.executable).parent
DEFAULT_PORTS = {"postgres_port": 5433, "mlflow_port": 5010, "prefect_port": 4210}


@dataclass(frozen=True)
class Team:
    """Where the team's state lives and which ports its servers take; recorded in ``team.json`` by the first
    ``team up`` so that ``status`` and ``down`` find the same servers."""

    folder: Path
    project: Path  # the DVC project whose default remote is the team's
    postgres_port: int
    mlflow_port: int
    prefect_port: int

    @property
    def pg_data(self) -> Path:
        return self.folder / "pg"

    @property
    def postgres(self) -> Cluster:
        return Cluster(self.pg_data, self.postgres_port)

    @property
    def remote(self) -> Path:
        return self.folder / "dvc-remote"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def prefect_api(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"

    @property
    def env_file(self) -> Path:
        return self.folder / "env.sh"

    def workspace(self, worker: str) -> Path:
        """The worker's own clone of the project, where its flow runs run."""
        return self.folder / "workspaces" / worker

    def database_url(self, driver: str, database: str, password: str) -> str:
        return f"postgresql+{driver}://{PG_USER}:{password}@127.0.0.1:{self.postgres_port}/{database}"


def dvc_project(start: Path) -> Path:
    """The DVC project ``start`` is in: the nearest folder at or above it holding ``.dvc``, else ``start`` itself
    (which ``team_up`` then refuses in one sentence)."""
    start = start.resolve()
    return next((folder for folder in (start, *start.parents) if (folder / ".dvc").is_dir()), start)


def load_team(folder: Path, project: Path, **ports: int | None) -> Team:
    """The team whose state is in ``folder``: the ports its ``team.json`` recorded, else ``ports``, else the
    defaults. Asking for other ports than a running team's is refused rather than ignored."""
    folder = folder.resolve()
    recorded = json.loads((folder / "team.json").read_text()) if (folder / "team.json").is_file() else {}
    chosen = {}
    for key, default in DEFAULT_PORTS.items():
        asked = ports.get(key)
        if recorded and asked is not None and asked != recorded[key]:
            raise RosettaError(f"{folder}: the team there was set up with {key.replace('_', ' ')} "
                               f"{recorded[key]}, not {asked}; run `rosetta team down --folder {folder}` and remove "
                               f"{folder / 'team.json'} to change it, or leave the option out")
        chosen[key] = recorded.get(key) or asked or default
    project = Path(recorded.get("project") or project).resolve()
    return Team(folder=folder, project=project, **chosen)


def _save(team: Team) -> None:
    team.folder.mkdir(parents=True, exist_ok=True)
    record = {**asdict(team), "folder": str(team.folder), "project": str(team.project)}
    write_json(team.folder / "team.json", record)


def team_secrets(team: Team) -> dict[str, str]:
    """The PostgreSQL password, MLflow's admin password and CSRF key, Prefect's API credentials: generated once,
    kept in ``secrets.json`` (mode 600, inside the git-ignored team folder)."""
    path = team.folder / "secrets.json"
    values = json.loads(path.read_text()) if path.is_file() else {}
    wanted = {"postgres_password": lambda: secrets.token_urlsafe(24),
              "mlflow_admin_password": lambda: secrets.token_urlsafe(24),
              "mlflow_secret_key": lambda: secrets.token_urlsafe(32),
              "prefect_auth_string": lambda: f"team:{secrets.token_urlsafe(24)}"}
    if wanted.keys() - values.keys():
        values = {key: values.get(key) or make() for key, make in wanted.items()}
        team.folder.mkdir(parents=True, exist_ok=True)
        write_private(path, json.dumps(values, indent=2) + "\n")
    return values


def team_env(team: Team, values: dict[str, str]) -> dict[str, str]:
    """What a team member's shell sets: the tracking server, the Prefect API and its credentials, the remote."""
    return {"MLFLOW_TRACKING_URI": team.mlflow_url, "MLFLOW_TRACKING_USERNAME": MLFLOW_ADMIN,
            "MLFLOW_TRACKING_PASSWORD": values["mlflow_admin_password"], "PREFECT_API_URL": team.prefect_api,
            "PREFECT_API_AUTH_STRING": values["prefect_auth_string"], "ROSETTA_DVC_REMOTE": str(team.remote)}


# MLflow and Prefect --------------------------------------------------------------------------------------------

def _server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_"))}
    return {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", **extra}


def _mlflow_health(team: Team) -> str:
    return f"{team.mlflow_url}/health"


def _start_mlflow(team: Team, values: dict[str, str], timeout: float) -> None:
    if processes.port_in_use(team.mlflow_port):
        raise RosettaError(f"port {team.mlflow_port} on 127.0.0.1 is taken by another program; choose the MLflow "
                           "port with --mlflow-port")
    password = values["postgres_password"]
    # The basic-auth app keeps its users in their own database; its config names it, so it is private too.
    auth_config = team.folder / "mlflow-auth.ini"
    write_private(auth_config, f"[mlflow]\ndefault_permission = READ\nadmin_username = {MLFLOW_ADMIN}\n"
                               f"database_uri = {team.database_url('psycopg', 'mlflow_auth', password)}\n")
    # Passwords go by environment, not argument: a command line is visible to `ps`. MLflow's job runner (seven
    # huey consumers) serves GenAI features the pipeline does not use: not started.
    env = _server_env(MLFLOW_BACKEND_STORE_URI=team.database_url("psycopg", "mlflow", password),
                      MLFLOW_AUTH_CONFIG_PATH=str(auth_config),
                      MLFLOW_AUTH_ADMIN_PASSWORD=values["mlflow_admin_password"],
                      MLFLOW_FLASK_SERVER_SECRET_KEY=values["mlflow_secret_key"],
                      MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    artifacts = team.folder / "mlartifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    proc = processes.start("mlflow", [str(BIN / "mlflow"), "server", "--app-name", "basic-auth", "--host",
                                      "127.0.0.1", "--port", str(team.mlflow_port), "--artifacts-destination",
                                      str(artifacts), "--workers", "1"], team.folder, env, cwd=team.folder)
    processes.wait_until(lambda: processes.http_ok(_mlflow_health(team)), f"the MLflow server on port "
                         f"{team.mlflow_port}", team.folder / "mlflow.log", timeout, proc)


def _prefect_env(team: Team, values: dict[str, str]) -> dict[str, str]:
    """A Prefect client's environment (the CLI, the workers): the team's API, its credentials, its own home."""
    return _server_env(PREFECT_API_URL=team.prefect_api, PREFECT_API_AUTH_STRING=values["prefect_auth_string"],
                       PREFECT_HOME=str(team.folder / "prefect"))


def _start_prefect(team: Team, values: dict[str, str], timeout: float) -> None:
    if processes.port_in_use(team.prefect_port):
        raise RosettaError(f"port {team.prefect_port} on 127.0.0.1 is taken by another program; choose the Prefect "
                           "port with --prefect-port")
    env = _server_env(PREFECT_HOME=str(team.folder / "prefect"),
                      PREFECT_API_DATABASE_CONNECTION_URL=team.database_url("asyncpg", "prefect",
                                                                           values["postgres_password"]),
                      PREFECT_SERVER_API_AUTH_STRING=values["prefect_auth_string"],
                      PREFECT_SERVER_ANALYTICS_ENABLED="false",
                      # The UI asks /ui-settings which API to talk to; unset, Prefect answers its default port's
                      # (4200), another server's when `make prefect-up` runs beside the team.
                      PREFECT_SERVER_UI_API_URL=team.prefect_api)
    proc = processes.start("prefect-server", [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                                              "--port", str(team.prefect_port)], team.folder, env, cwd=team.folder)
    processes.wait_until(lambda: processes.http_ok(f"{team.prefect_api}/health"),
                         f"the Prefect server on port {team.prefect_port}", team.folder / "prefect-server.log",
                         timeout, proc)


def create_pools(env: Mapping[str, str]) -> None:
    """prefect.yaml's work pools (process type) on the server ``env``'s ``PREFECT_API_URL`` names, where missing."""
    for pool in POOLS:
        done = subprocess.run([str(BIN / "prefect"), "work-pool", "create", pool, "--type", "process"],
                              env=dict(env), capture_output=True, text=True, timeout=300)
        if done.returncode != 0 and "already exists" not in done.stdout + done.stderr:
            raise RosettaError(f"could not create the Prefect work pool {pool!r}: "
                               f"{(done.stdout + done.stderr).strip().splitlines()[-1:]}")


def online_workers(team: Team, values: dict[str, str]) -> set[str]:
    """The names of the workers pool ``team`` sees online."""
    import requests

    user, _, password = values["prefect_auth_string"].partition(":")
    try:
        response = requests.post(f"{team.prefect_api}/work_pools/{WORKER_POOL}/workers/filter", json={}, timeout=5,
                                 auth=(user, password))
    except requests.RequestException:
        return set()
    if response.status_code != 200:
        return set()
    return {w["name"] for w in response.json() if w.get("status") == "ONLINE"}


def _worker_names() -> list[str]:
    return [f"team-worker-{i}" for i in range(1, WORKERS + 1)]


def _start_workers(team: Team, values: dict[str, str], timeout: float) -> None:
    procs = {}
    for name in _worker_names():
        if processes.running(team.folder / f"{name}.pid"):
            continue
        workspace = _workspace(team, name)
        # The flow runs a worker starts inherit its environment: they track to the team's server, too, run in
        # the worker's clone (the team deployment's pull step, ``dvc_project.enter_workspace``) and read the sets
        # outside the repository where the project does (``rosetta.prep.benchmarks.sets_folder``).
        env = {**_prefect_env(team, values), **{k: v for k, v in team_env(team, values).items()
                                                 if k.startswith("MLFLOW_")},
               PROJECT_DIR_ENV: str(workspace), ORIGIN_ENV: str(team.project)}
        procs[name] = processes.start(name, [str(BIN / "prefect"), "worker", "start", "--pool", WORKER_POOL,
                                             "--name", name, "--limit", "1"], team.folder, env, cwd=workspace)
    for name, proc in procs.items():
        processes.wait_until(lambda: name in online_workers(team, values), f"the Prefect worker {name}",
                             team.folder / f"{name}.log", timeout, proc)


# DVC -----------------------------------------------------------------------------------------------------------

def _check_project(team: Team) -> None:
    if not (team.project / ".dvc").is_dir():
        raise RosettaError(f"{team.project}: not a DVC project (no .dvc folder); run `rosetta team up` from the "
                           "project folder or pass --project")
    head = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=team.project, capture_output=True,
                          text=True, timeout=60)
    if head.returncode != 0:
        raise RosettaError(f"{team.project}: no git commit yet; the team's workers run clones of the project, so "
                           "commit it first (`git add -A && git commit`)")


def _set_dvc_remote(team: Team, clone: Path) -> None:
    """The team's remote as the default of ``clone``, in ``.dvc/config.local`` (that clone only, not committed)."""
    team.remote.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([str(BIN / "dvc"), "remote", "add", "--local", "--default", "--force", "team",
                           str(team.remote)], cwd=clone, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RosettaError(f"could not set the DVC remote in {clone}: {done.stderr.strip()}")


def _workspace(team: Team, worker: str) -> Path:
    """The worker's clone of the project (made by the first ``team up``), with the team's DVC remote. Each flow run
    brings it to the project's latest commit first (``dvc_project.enter_workspace``)."""
    clone = team.workspace(worker)
    if not (clone / ".git").exists():
        clone.parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["git", "clone", "-q", str(team.project), str(clone)], capture_output=True, text=True,
                              timeout=300)
        if done.returncode != 0:
            raise RosettaError(f"could not clone {team.project} for worker {worker}: "
                               f"{done.stderr.strip().splitlines()[-1:]}")
    _set_dvc_remote(team, clone)
    return clone


# The team ------------------------------------------------------------------------------------------------------

def _services(team: Team) -> list[tuple[str, Path]]:
    """The processes ``team up`` starts besides PostgreSQL, in the order ``down`` stops them."""
    return ([(name, team.folder / f"{name}.pid") for name in _worker_names()]
            + [("prefect-server", team.folder / "prefect-server.pid"), ("mlflow", team.folder / "mlflow.pid")])


def _one_at_a_time(team: Team):
    """One ``team up`` or ``team down`` at a time in a team folder: two at once would both create the PostgreSQL
    cluster, and both start an MLflow server, one of them left running with no pid file to stop it by."""
    team.folder.mkdir(parents=True, exist_ok=True)
    return exclusive_lock(team.folder / ".team.lock", f"{team.folder}: another rosetta team command is starting or "
                                                      "stopping this team ({holder}); wait for it to end, then run "
                                                      "this one again", remove=True)


def team_up(team: Team, timeout: float = 300.0) -> dict[str, str]:
    """Start whichever of the team's servers is not running, wait until each answers, write ``env.sh``; returns
    the environment a team member sets. A server that does not come up ends in one sentence and stops what this
    call started. A second ``team up`` or ``team down`` meanwhile is one sentence (``_one_at_a_time``)."""
    _check_project(team)  # before anything starts
    with _one_at_a_time(team):
        return _up(team, timeout)


def _up(team: Team, timeout: float) -> dict[str, str]:
    _save(team)
    values = team_secrets(team)
    started: list[str] = []
    try:
        if team.postgres.running():
            print(f"PostgreSQL already runs on 127.0.0.1:{team.postgres_port}", flush=True)
        else:
            print(f"starting PostgreSQL on 127.0.0.1:{team.postgres_port}", flush=True)
            started.append("postgres")
            team.postgres.start(PG_USER, values["postgres_password"], timeout)
        team.postgres.create_databases(PG_USER, values["postgres_password"], DATABASES)
        if processes.running(team.folder / "mlflow.pid") and processes.http_ok(_mlflow_health(team)):
            print(f"MLflow already runs at {team.mlflow_url}", flush=True)
        else:
            print(f"starting MLflow at {team.mlflow_url} (store: PostgreSQL database mlflow, artifacts: "
                  f"{team.folder / 'mlartifacts'})", flush=True)
            started.append("mlflow")
            _start_mlflow(team, values, timeout)
        if processes.running(team.folder / "prefect-server.pid") and processes.http_ok(f"{team.prefect_api}/health"):
            print(f"Prefect already runs at {team.prefect_api}", flush=True)
        else:
            print(f"starting Prefect at {team.prefect_api} (database prefect)", flush=True)
            started.append("prefect-server")
            _start_prefect(team, values, timeout)
        create_pools(_prefect_env(team, values))
        missing = [n for n in _worker_names() if not processes.running(team.folder / f"{n}.pid")]
        if missing:
            print(f"starting {len(missing)} Prefect worker(s) on pool '{WORKER_POOL}', each in its clone under "
                  f"{team.folder / 'workspaces'}: {', '.join(missing)}", flush=True)
            started += missing
            _start_workers(team, values, timeout)
        else:
            print(f"{WORKERS} Prefect workers already run on pool '{WORKER_POOL}'", flush=True)
        _set_dvc_remote(team, team.project)
    except BaseException:
        _stop(team, started)
        raise
    env = team_env(team, values)
    write_private(team.env_file, "".join(f"export {k}={v}\n" for k, v in env.items()))
    print(f"\nthe team is up:\n  MLflow  {team.mlflow_url}\n  Prefect {team.prefect_api} (work pools "
          f"{', '.join(POOLS)}; {WORKERS} workers on {WORKER_POOL})\n  DVC remote {team.remote} (the default remote of "
          f"{team.project})\na team member sets (`source {team.env_file}`):\n"
          + "".join(f"  export {k}={'<in env.sh>' if k in SECRET_VARIABLES else v}\n" for k, v in env.items())
          + "and, in another clone: dvc remote add --local -d team \"$ROSETTA_DVC_REMOTE\"", flush=True)
    return env


def _stop(team: Team, names: list[str]) -> None:
    for name, pid_file in _services(team):
        if name in names and processes.stop(pid_file):
            print(f"stopped {name}", flush=True)
    if "postgres" in names and team.postgres.stop():
        print("stopped postgres", flush=True)


def team_down(team: Team) -> None:
    """Stop every server ``team up`` started (their data stays for the next ``team up``)."""
    with _one_at_a_time(team):
        _stop(team, [name for name, _ in _services(team)] + ["postgres"])
        team.env_file.unlink(missing_ok=True)  # its URLs no longer answer


def team_status(team: Team) -> dict[str, bool]:
    """Which of the team's servers run and answer."""
    values = team_secrets(team) if (team.folder / "secrets.json").is_file() else None
    workers = online_workers(team, values) if values else set()
    status = {"postgres": team.postgres.running(),
              "mlflow": processes.http_ok(_mlflow_health(team)),
              "prefect-server": processes.http_ok(f"{team.prefect_api}/health"),
              **{name: processes.running(team.folder / f"{name}.pid") and name in workers
                 for name in _worker_names()}}
    return status

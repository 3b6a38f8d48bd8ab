"""The team's servers, started for real by ``rosetta team up`` in a temporary folder on free ports (PostgreSQL,
``mlflow server``, a Prefect server and two workers, a DVC remote) once for this module: each answers; a tiny
training, its evaluation and its registered version reach the tracking server and its artifact store, not a
local store; ``dvc push`` / ``dvc pull`` move outputs to a second clone byte for byte; a second ``team up``
finds everything running; ``team down`` leaves no process."""
from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

import psycopg
import pytest
import requests

from dvc_fixtures import dvc, run
from rosetta.delivery.decisions import TAG_DECISION
from rosetta.orchestration.processes import free_port, group_alive, read_pid
from rosetta.orchestration.team import load_team, online_workers, team_secrets
from train_fixtures import DVC_LOCK, TINY

ROOT = Path(__file__).resolve().parents[1]
GIT = ("git", "-c", "user.name=test", "-c", "user.email=test@example.com")


def _env_file(path: Path) -> dict[str, str]:
    return dict(line.removeprefix("export ").split("=", 1) for line in path.read_text().splitlines())


@pytest.fixture(scope="session")
def team(rosetta_cli):
    """The team brought up once by ``rosetta team up`` as a user runs it, in a git + DVC project of its own.
    The folder is made by tempfile, not pytest: pytest's is closed to others, and PostgreSQL runs as postgres."""
    base = Path(tempfile.mkdtemp(prefix="rosetta-team-"))
    base.chmod(0o755)
    project = base / "project"
    project.mkdir()
    run(project, "git", "init", "-q")
    dvc(project, "init", "-q")
    args = ["team", "up", "--folder", str(base / "team"), "--project", str(project),
            "--postgres-port", str(free_port()), "--mlflow-port", str(free_port()), "--prefect-port", str(free_port())]
    up = rosetta_cli(*args, cwd=project, timeout=900)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        team = load_team(base / "team", project)
        yield {"team": team, "args": args, "up": up.stdout, "project": project, "base": base,
               "env": _env_file(team.env_file), "secrets": team_secrets(team)}
    finally:
        rosetta_cli("team", "down", "--folder", str(base / "team"), cwd=project, timeout=300)
        shutil.rmtree(base, ignore_errors=True)


def _auth(team) -> tuple[str, str]:
    user, _, password = team["secrets"]["prefect_auth_string"].partition(":")
    return user, password



@pytest.mark.slow
def test_up_prints_and_writes_the_variables_a_team_member_sets(team):
    t = team["team"]
    assert team["env"] == {"MLFLOW_TRACKING_URI": t.mlflow_url, "MLFLOW_TRACKING_USERNAME": "admin",
                           "MLFLOW_TRACKING_PASSWORD": team["secrets"]["mlflow_admin_password"],
                           "PREFECT_API_URL": t.prefect_api,
                           "PREFECT_API_AUTH_STRING": team["secrets"]["prefect_auth_string"],
                           "ROSETTA_DVC_REMOTE": str(t.remote)}
    for path in (t.env_file, t.folder / "secrets.json"):  # they hold credentials
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert f"export MLFLOW_TRACKING_URI={t.mlflow_url}" in team["up"]
    assert f"export PREFECT_API_URL={t.prefect_api}" in team["up"]
    for secret in team["secrets"].values():
        assert secret not in team["up"]
    assert (team["project"] / ".dvc" / "config.local").read_text().count(str(t.remote)) == 1


@pytest.mark.slow
def test_postgres_holds_a_database_for_mlflow_and_one_for_prefect(team):
    t = team["team"]
    with psycopg.connect(host="127.0.0.1", port=t.postgres_port, user="rosetta", dbname="postgres",
                         password=team["secrets"]["postgres_password"]) as conn:
        names = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
        assert {"mlflow", "mlflow_auth", "prefect"} <= names
        for db, query in (("mlflow", "SELECT count(*) FROM alembic_version"),  # each server made its schema
                          ("prefect", "SELECT count(*) FROM alembic_version"),
                          ("mlflow_auth", "SELECT count(*) FROM users WHERE username = 'admin'")):
            with psycopg.connect(host="127.0.0.1", port=t.postgres_port, user="rosetta", dbname=db,
                                 password=team["secrets"]["postgres_password"]) as c:
                assert c.execute(query).fetchone()[0] == 1, db
    with pytest.raises(psycopg.OperationalError):  # password authentication, no trust
        psycopg.connect(host="127.0.0.1", port=t.postgres_port, user="rosetta", dbname="postgres", password="x")


@pytest.mark.slow
def test_mlflow_and_prefect_answer_and_ask_for_credentials(team):
    t = team["team"]
    assert requests.get(f"{t.mlflow_url}/health", timeout=10).status_code == 200
    search = f"{t.mlflow_url}/api/2.0/mlflow/experiments/search"
    assert requests.get(search, params={"max_results": 1}, timeout=10).status_code == 401
    wrong = requests.get(search, params={"max_results": 1}, auth=("admin", "wrong"), timeout=10)
    assert wrong.status_code == 401
    assert requests.get(f"{t.prefect_api}/health", timeout=10).status_code == 200
    assert requests.get(f"{t.prefect_api}/work_pools/local", timeout=10).status_code == 401
    for pool in ("local", "gpu"):
        got = requests.get(f"{t.prefect_api}/work_pools/{pool}", auth=_auth(team), timeout=10)
        assert got.status_code == 200 and got.json()["type"] == "process"
    assert online_workers(t, team["secrets"]) == {"team-local-1", "team-local-2"}
    for worker in ("team-local-1", "team-local-2"):  # what the flow runs they start inherit
        environ = Path(f"/proc/{read_pid(t.folder / f'{worker}.pid')}/environ").read_bytes().split(b"\0")
        for key in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            assert f"{key}={team['env'][key]}".encode() in environ


@pytest.mark.slow
def test_a_second_up_finds_everything_running(team, rosetta_cli):
    t = team["team"]
    pids = {p.name: read_pid(p) for p in t.folder.glob("*.pid")}
    again = rosetta_cli(*team["args"], cwd=team["project"], timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    for line in ("PostgreSQL already runs", "MLflow already runs", "Prefect already runs",
                 "2 Prefect workers already run"):
        assert line in again.stdout
    assert {p.name: read_pid(p) for p in t.folder.glob("*.pid")} == pids


def _api(team, path: str, **params) -> dict:
    got = requests.get(f"{team['team'].mlflow_url}/api/2.0/mlflow/{path}", params=params, timeout=30,
                       auth=(team["env"]["MLFLOW_TRACKING_USERNAME"], team["env"]["MLFLOW_TRACKING_PASSWORD"]))
    assert got.status_code == 200, got.text
    return got.json()


@pytest.mark.slow
def test_train_evaluate_register_land_on_the_tracking_server(team, tiny_data, rosetta_cli, tmp_path):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")  # a project folder, as the pipeline's
    (tmp_path / "dvc.lock").write_text(DVC_LOCK)
    overrides = [*TINY, f"data.root={tiny_data}", "mlflow.experiment=team", "registry.model_name=rosetta-team",
                 "export.parity_samples=4", "export.batch_size=4"]
    env = rosetta_cli.env(**{k: v for k, v in team["env"].items() if k.startswith("MLFLOW_")})
    best = "runs/train/best.pt"
    for command in (["train"], ["evaluate", "--model", best, "--out", "runs/eval"], ["export", "--model", best],
                    ["register"]):
        done = rosetta_cli(*command, "-c", str(ROOT / "params.yaml"), *[a for o in overrides for a in ("-o", o)],
                           cwd=tmp_path, env=env, timeout=600)
        assert done.returncode == 0, f"rosetta {command[0]}: {done.stdout}{done.stderr}"

    run_id = json.loads((tmp_path / "runs" / "train" / "run.json").read_text())["run_id"]
    experiment = _api(team, "experiments/get-by-name", experiment_name="team")["experiment"]
    assert experiment["artifact_location"].startswith("mlflow-artifacts:")
    training = _api(team, "runs/get", run_id=run_id)["run"]
    metrics = {m["key"] for m in training["data"]["metrics"]}
    assert {"loss", "lr", "best_val_accuracy", "synth_test/accuracy"} <= metrics, sorted(metrics)
    assert len(_api(team, "metrics/get-history", run_id=run_id, metric_key="loss")["metrics"]) > 1
    versions = _api(team, "model-versions/search", filter="name='rosetta-team'")["model_versions"]
    assert [v["version"] for v in versions] == ["1"] and versions[0]["run_id"]
    tags = {t["key"]: t["value"] for t in versions[0]["tags"]}
    assert tags[TAG_DECISION] in ("promoted", "not promoted") and tags["metric.synth_test/accuracy"]
    assert f"rosetta-team v1 {tags[TAG_DECISION]}" in done.stdout  # register's own line, the same decision

    # The artifacts are in the server's store, not in any local one.
    stored = team["team"].folder / "mlartifacts" / experiment["experiment_id"]
    assert list(stored.glob(f"{run_id}/artifacts/**/*.pt")), f"no checkpoint under {stored / run_id}"
    assert list(stored.rglob("model.onnx"))
    for local in ("mlflow.db", "mlruns", "mlartifacts"):
        assert not (tmp_path / local).exists() and not (ROOT / "tests" / local).exists()


@pytest.mark.slow
def test_dvc_push_then_pull_in_a_second_clone_restores_the_outputs(team, tiny_data, tiny_run):
    project = team["project"]
    (project / "dvc.yaml").write_text(
        "stages:\n  outputs:\n    cmd: cp -r " + str(tiny_data / "lmdb") + " data/lmdb && mkdir -p runs/train && cp "
        + str(tiny_run.best) + " runs/train/best.pt\n    outs:\n    - data/lmdb\n    - runs/train/best.pt\n")
    (project / "data").mkdir(exist_ok=True)
    dvc(project, "repro")
    run(project, "git", "add", "-A")
    run(project, *GIT, "commit", "-qm", "outputs")
    pushed = dvc(project, "push")
    assert "pushed" in pushed

    clone = team["base"] / "clone"
    run(team["base"], "git", "clone", "-q", str(project), str(clone))
    dvc(clone, "remote", "add", "--local", "-d", "team", team["env"]["ROSETTA_DVC_REMOTE"])
    dvc(clone, "pull")
    files = sorted(p.relative_to(project) for p in [*(project / "data").rglob("*"), project / "runs/train/best.pt"]
                   if p.is_file())
    assert any(f.name == "data.mdb" for f in files)
    for f in files:
        assert (clone / f).read_bytes() == (project / f).read_bytes(), f


@pytest.mark.slow
def test_down_stops_every_process_it_started(team, rosetta_cli):
    t = team["team"]
    groups = [read_pid(p) for p in t.folder.glob("*.pid")]
    postmaster = int((t.pg_data / "postmaster.pid").read_text().split()[0])
    assert len(groups) == 4 and all(group_alive(g) for g in [*groups, postmaster])
    down = rosetta_cli("team", "down", "--folder", str(t.folder), cwd=team["project"], timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not any(group_alive(g) for g in [*groups, postmaster])
    assert not list(t.folder.glob("*.pid")) and not t.env_file.exists()
    folder = str(t.folder).encode()
    left = [p for p in Path("/proc").iterdir() if p.name.isdigit() and folder in _cmdline(p)]
    assert not left, [_cmdline(p) for p in left]
    status = rosetta_cli("team", "status", "--folder", str(t.folder), cwd=team["project"])
    assert status.returncode == 1 and "running" not in status.stdout


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def test_up_outside_a_dvc_project_says_so_and_starts_nothing(rosetta_cli, tmp_path):
    (tmp_path / "params.yaml").write_text("{}\n")  # a rosetta project folder, not a DVC one
    done = rosetta_cli("team", "up", "--folder", str(tmp_path / "team"), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"error: {tmp_path}: not a DVC project (no .dvc folder); run `rosetta team up` "
                                   "from the project folder or pass --project")
    assert not (tmp_path / "team").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="as root, PostgreSQL runs as the postgres user")
def test_a_team_folder_postgres_cannot_reach_is_refused_before_anything_starts(rosetta_cli, tmp_path):
    dvc(tmp_path, "init", "--no-scm", "-q")
    tmp_path.chmod(0o700)  # as pytest makes it: closed to others
    ports = [a for option in ("--postgres-port", "--mlflow-port", "--prefect-port") for a in (option, str(free_port()))]
    done = rosetta_cli("team", "up", "--folder", str(tmp_path / "team"), *ports, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"error: {tmp_path / 'team' / 'pg'}: the postgres user cannot reach this folder; "
                                   "let it through the folders above it (chmod o+x) or choose another place with "
                                   "--folder")
    assert not (tmp_path / "team" / "pg").exists() and not list((tmp_path / "team").glob("*.pid"))


def test_other_ports_than_the_recorded_ones_are_refused(tmp_path):
    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "team.json").write_text(json.dumps(
        {"project": str(tmp_path), "postgres_port": 6000, "mlflow_port": 6001, "prefect_port": 6002}))
    assert load_team(tmp_path / "team", tmp_path).mlflow_port == 6001
    with pytest.raises(Exception, match="set up with mlflow port 6001, not 7000"):
        load_team(tmp_path / "team", tmp_path, mlflow_port=7000)

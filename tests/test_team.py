"""The team's servers, started for real by ``rosetta team up`` in a temporary folder on free ports (PostgreSQL,
``mlflow server``, a Prefect server and two workers, a DVC remote) once for this module, for a committed copy of the
pipeline with tiny params where ``dvc repro`` ran (the demo's outputs): each server answers; a tiny training, its
evaluation and its registered version reach the tracking server and its artifact store, not a local store;
``dvc push`` / ``dvc pull`` move outputs to a second clone byte for byte; a second ``team up`` finds everything
running; the README's journey for a team (seed, deploy, two runs at once, a second machine that pulls, evaluates
and serves production) runs command for command; ``team down`` leaves no process."""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import psycopg
import pytest
import requests
from mlflow import MlflowClient

from dvc_fixtures import dvc, project_copy, run
from flow_fixtures import PARAMS, PREFECT, REAL_SETS, flow_env, wait_http
from model_fixtures import WORDS, png_bytes, word_image, write_gt_set
from rosetta.delivery.http_server import invocations_body, post
from rosetta.registry.decisions import TAG_DECISION
from rosetta.orchestration import processes
from rosetta.orchestration.processes import free_port, group_alive, read_pid
from rosetta.orchestration.team import load_team, online_workers, team_secrets
from train_fixtures import DVC_LOCK, TINY

pytestmark = pytest.mark.journey  # make test-journeys

ROOT = Path(__file__).resolve().parents[1]
GIT = ("git", "-c", "user.name=test", "-c", "user.email=test@example.com")


def _env_file(path: Path) -> dict[str, str]:
    return dict(line.removeprefix("export ").split("=", 1) for line in path.read_text().splitlines())


# The flows' registry decides on a score that tiny runs of other learning rates tell apart (six steps read no word
# whole).
TEAM_PARAMS = {**PARAMS, "registry.metric": "norm_edit_dis_real", "registry.margin": 0.0}


@pytest.fixture(scope="session")
def team(rosetta_cli):
    """The team brought up once by ``rosetta team up`` as a user runs it, for a committed copy of the pipeline (tiny
    params, two tiny real benchmark sets beside it, named relative to it as params.yaml names ../shared/benchmarks)
    where ``dvc repro`` ran, as after ``make demo``: its data, a tiny model and that model's production version in
    the project's own mlflow.db, dvc.lock committed. The folder is made by tempfile, not pytest: pytest's is closed to
    others, and PostgreSQL runs as postgres."""
    base = Path(tempfile.mkdtemp(prefix="rosetta-team-"))
    base.chmod(0o755)
    env = flow_env(base)
    for name, labels in REAL_SETS.items():
        write_gt_set(base / "real" / name, labels, seed=len(labels))
    project = project_copy(base / "project", {**TEAM_PARAMS, "data.real_benchmarks": "../real"},
                           files=("prefect.yaml",), folders=("flows",), commit=True, env=env)
    dvc(project, "repro", timeout=1200)
    run(project, "git", "add", "-A", env=env)
    run(project, "git", "commit", "-qm", "the demo's outputs", env=env)
    args = ["team", "up", "--folder", str(base / "team"), "--project", str(project),
            "--postgres-port", str(free_port()), "--mlflow-port", str(free_port()), "--prefect-port", str(free_port())]
    up = rosetta_cli(*args, cwd=project, timeout=900)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        team = load_team(base / "team", project)
        values = _env_file(team.env_file)
        yield {"team": team, "args": args, "up": up.stdout, "project": project, "base": base, "env": values,
               "secrets": team_secrets(team), "flow_env": {**env, **values}}
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
    assert online_workers(t, team["secrets"]) == {"team-worker-1", "team-worker-2"}
    for worker in ("team-worker-1", "team-worker-2"):  # what the flow runs they start inherit
        environ = Path(f"/proc/{read_pid(t.folder / f'{worker}.pid')}/environ").read_bytes().split(b"\0")
        for key in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            assert f"{key}={team['env'][key]}".encode() in environ
        assert f"ROSETTA_PROJECT_DIR={t.workspace(worker)}".encode() in environ  # a clone of its own
        assert (t.workspace(worker) / "dvc.yaml").read_bytes() == (team["project"] / "dvc.yaml").read_bytes()


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
    # The tracking server, and the Prefect server the registry lock is on: env.sh's variables.
    env = rosetta_cli.env(**{k: v for k, v in team["env"].items() if k.startswith(("MLFLOW_", "PREFECT_API_"))})
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
    """Any project on the team's remote (`dvc remote add -d team "$ROSETTA_DVC_REMOTE"`), outputs of every kind."""
    project = team["base"] / "outputs"
    project.mkdir()
    run(project, "git", "init", "-q")
    dvc(project, "init", "-q")
    dvc(project, "remote", "add", "--local", "-d", "team", team["env"]["ROSETTA_DVC_REMOTE"])
    (project / "dvc.yaml").write_text(
        "stages:\n  outputs:\n    cmd: cp -r " + str(tiny_data / "lmdb") + " data/lmdb && mkdir -p runs/train && cp "
        + str(tiny_run.best) + " runs/train/best.pt\n    outs:\n    - data/lmdb\n    - runs/train/best.pt\n")
    (project / "data").mkdir(exist_ok=True)
    dvc(project, "repro")
    run(project, "git", "add", "-A")
    run(project, *GIT, "commit", "-qm", "outputs")
    pushed = dvc(project, "push")
    assert "pushed" in pushed

    clone = team["base"] / "outputs-clone"
    run(team["base"], "git", "clone", "-q", str(project), str(clone))
    dvc(clone, "remote", "add", "--local", "-d", "team", team["env"]["ROSETTA_DVC_REMOTE"])
    dvc(clone, "pull")
    files = sorted(p.relative_to(project) for p in [*(project / "data").rglob("*"), project / "runs/train/best.pt"]
                   if p.is_file())
    assert any(f.name == "data.mdb" for f in files)
    for f in files:
        assert (clone / f).read_bytes() == (project / f).read_bytes(), f


def _deployment_run(team, *overrides: str) -> subprocess.Popen:
    """``prefect deployment run 'train-rosetta/team' --watch`` as a team member starts it, left running."""
    return subprocess.Popen([str(PREFECT), "deployment", "run", "train-rosetta/team", "--param",
                             f"overrides={json.dumps(list(overrides))}", "--watch", "--watch-timeout", "900"],
                            cwd=team["project"], env=team["flow_env"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)


def _prefect_api(team, path: str, body: dict | None = None):
    t = team["team"]
    call = requests.post if body is not None else requests.get
    got = call(f"{t.prefect_api}/{path}", json=body, auth=_auth(team), timeout=30)
    assert got.status_code == 200, got.text
    return got.json()


def _version_tags(team, version: str) -> dict[str, str]:
    mv = _api(team, "model-versions/get", name="rosetta", version=version)["model_version"]
    return {t["key"]: t["value"] for t in mv.get("tags", [])}


def _production(team) -> str:
    model = _api(team, "registered-models/get", name="rosetta")["registered_model"]
    return next(a["version"] for a in model.get("aliases", []) if a["alias"] == "production")


# The README's "For a team" commands, in its order: what the journey test below runs (the README is checked against
# this list by test_the_readme_for_a_team_lists_the_journey).
README_COMMANDS = ["make team-up", "source .team/env.sh", "rosetta team seed", "prefect deploy --all",
                   "prefect deployment run 'train-rosetta/team'", "prefect deployment run 'train-rosetta/team'",
                   "git clone", "source env.sh", "dvc remote add --local -d team", "dvc pull --with-deps validate",
                   "rosetta evaluate --model models:/rosetta@production", "rosetta serve", "make team-down"]


def test_the_readme_for_a_team_lists_the_journey():
    section = (ROOT / "README.md").read_text().split("## For a team", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    lines = [line.split("#", 1)[0].strip() for block in blocks for line in block.splitlines()]
    commands = [line for line in lines if line]
    assert len(commands) == len(README_COMMANDS), commands
    for command, expected in zip(commands, README_COMMANDS):
        assert command.startswith(expected), (command, expected)


@pytest.mark.slow
@pytest.mark.timeout(2400)  # a whole team's afternoon: seed, two trainings side by side, a second machine
def test_the_readme_journey_for_a_team(team, rosetta_cli):
    """README "For a team" as a team member runs it, after ``team up``: ``rosetta team seed`` puts the demo's data
    on the remote and its production model in the team's registry; ``prefect deploy --all``; two runs of the team
    deployment at once, side by side on the two workers, each in its clone, on the data it pulled and the project's
    real sets, scored on accuracy_real over the sets production was scored on, one production alias left on the best;
    a second machine's clone pulls the data byte for byte, evaluates and serves production without training.
    ``team down`` is the next test."""
    t, project = team["team"], team["project"]
    member = rosetta_cli.env(**team["env"])

    seeded = rosetta_cli("team", "seed", "--folder", str(t.folder), cwd=project, env=member, timeout=900)
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    store = f"sqlite:///{project / 'mlflow.db'}"  # both URIs: an earlier test may have set the process's registry
    local = MlflowClient(tracking_uri=store, registry_uri=store)
    demo = local.get_model_version_by_alias("rosetta", "production")
    assert _production(team) == "1"
    seed_tags = _version_tags(team, "1")
    for key in ("model.sha256", "model.files.sha256", "benchmark_set", "benchmark_set.real", "metric.accuracy_real"):
        assert seed_tags[key] == demo.tags[key], key
    assert "rosetta v1 promoted to production" in seeded.stdout

    deployed = subprocess.run([str(PREFECT), "--prompt", "deploy", "--all"], cwd=project, env=team["flow_env"],
                              capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    procs = [_deployment_run(team, f"train.lr={lr}") for lr in (5e-3, 2e-2)]
    outputs = [proc.communicate(timeout=1500)[0] for proc in procs]
    flows = []
    for out in outputs:
        match = re.search(r"UUID: ([0-9a-f-]{36})", out)
        assert match, out
        flows.append(_prefect_api(team, f"flow_runs/{match.group(1)}"))
    logs = {w: (t.folder / f"{w}.log").read_text(errors="replace") for w in ("team-worker-1", "team-worker-2")}
    assert all(f["state"]["type"] == "COMPLETED" for f in flows), (outputs, logs)
    first, second = sorted(flows, key=lambda r: r["start_time"])
    assert second["start_time"] < first["end_time"]  # the second started before the first ended: side by side
    run_ids = set()
    for worker, log in logs.items():  # each ran one, in its own clone, on what it pulled and the project's real sets
        record = json.loads((t.workspace(worker) / "runs" / "train" / "run.json").read_text())
        run_ids.add(record["run_id"])
        assert record["tracking_uri"] == t.mlflow_url
        assert "Running stage 'train'" in log and "Running stage 'download'" not in log, log[-3000:]
        assert "real benchmarks at ../real: REALA_12, REALB_8" in log
        metrics = {m["key"] for m in _api(team, "runs/get", run_id=record["run_id"])["run"]["data"]["metrics"]}
        assert "accuracy_real" in metrics, sorted(metrics)
    assert len(run_ids) == 2
    listed = dvc(project, "exp", "list", "--name-only")  # each pushed its experiment to the project
    assert {f"flow-{f['name']}" for f in flows} <= set(listed.split()), listed

    versions = [v["version"] for v in _api(team, "model-versions/search", filter="name='rosetta'")["model_versions"]]
    assert sorted(versions) == ["1", "2", "3"]
    tags = {v: _version_tags(team, v) for v in versions}
    assert {tag["benchmark_set.real"] for tag in tags.values()} == {seed_tags["benchmark_set.real"]}
    assert all("metric.accuracy_real" in tag for tag in tags.values())
    scores = {v: float(tag["metric.norm_edit_dis_real"]) for v, tag in tags.items()}
    production = _production(team)
    assert scores[production] == max(scores.values()), (scores, production)
    assert tags[production][TAG_DECISION] == "promoted"

    # A second machine: a clone, the team's variables, the remote, the data stages' outputs; nothing rebuilt.
    clone = team["base"] / "second-machine"
    run(team["base"], "git", "clone", "-q", str(project), str(clone))
    dvc(clone, "remote", "add", "--local", "-d", "team", team["env"]["ROSETTA_DVC_REMOTE"])
    dvc(clone, "pull", "--with-deps", "validate")
    status = json.loads(dvc(clone, "status", "--json", "validate", stdout_only=True))
    assert all(entries == ["always changed"] for entries in status.values()), status
    pulled = sorted(p.relative_to(clone) for p in (clone / "data").rglob("*") if p.is_file())
    assert any(f.name == "data.mdb" for f in pulled) and any(f.parts[:2] == ("data", "real") for f in pulled)
    for f in pulled:
        assert (clone / f).read_bytes() == (project / f).read_bytes(), f
    env = rosetta_cli.env(**{k: v for k, v in team["env"].items() if k.startswith("MLFLOW_")})
    done = rosetta_cli("evaluate", "--model", "models:/rosetta@production", "--json", cwd=clone, env=env, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    scored = json.loads(done.stdout)
    for metric in ("norm_edit_dis_real", "accuracy_real"):
        assert abs(scored[metric] - float(tags[production][f"metric.{metric}"])) < 1e-4, metric
    assert not (clone / "runs").exists() and not (clone / "mlflow.db").exists()
    port = str(free_port())
    server = subprocess.Popen(rosetta_cli.command("serve", "--port", port), cwd=clone, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        assert server.stdout.readline().strip() == (f"serving rosetta v{production} (alias production) on "
                                                    f"http://127.0.0.1:{port}")
        wait_http(f"http://127.0.0.1:{port}/ping", server)
        image = png_bytes(word_image(WORDS[0], np.random.default_rng(0)))
        status_code, answer = post(f"http://127.0.0.1:{port}", invocations_body([image]))
        assert status_code == 200, answer
        assert answer["predictions"][0]["model_version"] == production
    finally:
        processes.stop_group(server.pid)
        server.wait(timeout=60)

    # The Prefect UI the team opens talks to this server (not the default port's), and lists the two runs.
    ui = requests.get(f"http://127.0.0.1:{t.prefect_port}/ui-settings", timeout=10).json()
    assert ui["api_url"] == t.prefect_api
    shown = _prefect_ui_runs(t.prefect_port, team["secrets"]["prefect_auth_string"], [f["name"] for f in flows])
    assert all(f["name"] in shown for f in flows) and "Can't connect" not in shown, shown


def _prefect_ui_runs(port: int, auth: str, names: list[str]) -> str:
    """The text of the Prefect UI's runs page in headless Chromium, signed in with the team's auth string, once it
    shows ``names`` (or after a minute)."""
    from headless_chromium import chromium

    with chromium() as page:
        page.goto(f"http://127.0.0.1:{port}/runs")
        assert page.wait_for("!!document.querySelector('input[type=password]')", 60), page.text()
        page.js(SIGN_IN % json.dumps(auth))
        page.wait_for(" && ".join(f"document.body.innerText.includes({json.dumps(n)})" for n in names), 60)
        return page.text()


# Types the auth string into the UI's login field as a person does (the input event Vue listens to), then Login.
SIGN_IN = """
((auth) => {
  const field = document.querySelector('input[type=password]');
  Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set.call(field, auth);
  field.dispatchEvent(new Event('input', {bubbles: true}));
  [...document.querySelectorAll('button')].find(b => b.textContent.trim() === 'Login').click();
  return true;
})(%s)
"""


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
    run(tmp_path, "git", "init", "-q")
    dvc(tmp_path, "init", "-q")
    run(tmp_path, *GIT, "commit", "-qm", "project")
    tmp_path.chmod(0o700)  # as pytest makes it: closed to others
    ports = [a for option in ("--postgres-port", "--mlflow-port", "--prefect-port") for a in (option, str(free_port()))]
    done = rosetta_cli("team", "up", "--folder", str(tmp_path / "team"), *ports, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"error: {tmp_path / 'team' / 'pg'}: the postgres user cannot reach this folder; "
                                   "let it through the folders above it (chmod o+x) or choose another place with "
                                   "--folder")
    assert not (tmp_path / "team" / "pg").exists() and not list((tmp_path / "team").glob("*.pid"))


def test_up_in_a_project_without_a_commit_says_so_and_starts_nothing(rosetta_cli, tmp_path):
    run(tmp_path, "git", "init", "-q")
    dvc(tmp_path, "init", "-q")
    done = rosetta_cli("team", "up", "--folder", str(tmp_path / "team"), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"error: {tmp_path}: no git commit yet; the team's workers run clones of the "
                                   "project, so commit it first (`git add -A && git commit`)")
    assert not (tmp_path / "team").exists()


def test_other_ports_than_the_recorded_ones_are_refused(tmp_path):
    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "team.json").write_text(json.dumps(
        {"project": str(tmp_path), "postgres_port": 6000, "mlflow_port": 6001, "prefect_port": 6002}))
    assert load_team(tmp_path / "team", tmp_path).mlflow_port == 6001
    with pytest.raises(Exception, match="set up with mlflow port 6001, not 7000"):
        load_team(tmp_path / "team", tmp_path, mlflow_port=7000)


def test_a_second_team_command_meanwhile_is_one_sentence_and_starts_nothing(rosetta_cli, tmp_path):
    """`team up` while another `team up` (or `team down`) is starting or stopping the same team: one sentence naming
    the other, nothing started (two at once both ran initdb, and left an MLflow server no pid file named)."""
    run(tmp_path, "git", "init", "-q")
    dvc(tmp_path, "init", "-q")
    run(tmp_path, *GIT, "commit", "-qm", "project")
    folder = tmp_path / "team"
    other = subprocess.Popen([sys.executable, "-c", "\n".join((
        "import sys, time",
        "from pathlib import Path",
        "from rosetta.orchestration.team import _one_at_a_time, load_team",
        f"with _one_at_a_time(load_team(Path({str(folder)!r}), Path({str(tmp_path)!r}))):",
        "    print('starting', flush=True)",
        "    time.sleep(600)"))], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "starting"
        for command in ("up", "down"):
            done = rosetta_cli("team", command, "--folder", str(folder), cwd=tmp_path)
            assert done.returncode == 2, done.stdout + done.stderr
            assert done.stderr.startswith(f"error: {folder.resolve()}: another rosetta team command is starting or "
                                          f"stopping this team (pid {other.pid} on "), done.stderr
            assert done.stderr.count("\n") == 1
        assert sorted(p.name for p in folder.iterdir()) == [".team.lock"]  # no cluster, no pid file, no team.json
    finally:
        other.kill()
        other.wait()

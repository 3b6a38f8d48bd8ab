"""The registry behind servers, as a team has it: ``mlflow server`` with its basic-auth app and users, the registry
lock on a Prefect server. A user granted MANAGE on the project's registered model alone promotes and rolls back with
the rosetta CLI; the registry lists the project's model and nothing else; a holder of the lock ended by SIGTERM
releases it at once, one killed outright holds it until its lease ends; a store behind a server without a Prefect
server named is one sentence."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests
from mlflow import MlflowClient

from rosetta.registry.lock import LEASE_S
from server_fixtures import mlflow_server

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]  # servers, processes

SUMMARY = {"sets": {"synth_test": {"accuracy": 0.5, "norm_edit_dis": 0.5, "count": 12}}, "accuracy_total": 0.5,
           "accuracy_mean": 0.5, "norm_edit_dis_total": 0.5, "count_total": 12, "images_per_s": 1.0}


def _locker(store: str, env: dict, *then: str) -> subprocess.Popen:
    """A process holding (or waiting for) the registry lock of ``rosetta`` in ``store`` while ``then`` runs."""
    return subprocess.Popen([sys.executable, "-c", "\n".join((
        "import sys, time",
        "from rosetta.registry.lock import registry_lock",
        f"with registry_lock({store!r}, 'rosetta'):",
        "    print('held', flush=True)",
        *then))], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _env(tmp_path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    return {**env, "PREFECT_HOME": str(tmp_path / "prefect-home"), **extra}


def test_a_user_granted_manage_on_the_model_alone_promotes_and_rolls_back(tmp_path, prefect_api, tiny_data,
                                                                          untrained_model, rosetta_cli):
    with mlflow_server(tmp_path, auth=True) as server:
        admin = ("admin", server.admin_password)
        overrides = [f"data.root={tiny_data}", f"mlflow.tracking_uri={server.uri}", "registry.min_score=0.2"]
        args = [a for o in overrides for a in ("-o", o)]
        # The admin registers the model as a team member does, env.sh sourced: v1, production.
        metrics, run = tmp_path / "metrics.json", tmp_path / "run.json"
        metrics.write_text(json.dumps({**SUMMARY, "model": {"sha256": untrained_model.parity["onnx_sha256"]}}))
        run.write_text(json.dumps({"run_id": None}))
        registered = rosetta_cli("register", "--onnx", str(untrained_model.onnx), "--parity",
                                 str(untrained_model.onnx.parent / "parity.json"), "--metrics", str(metrics),
                                 "--run-json", str(run), *args, "-o", f"registry.out_dir={tmp_path / 'register'}",
                                 cwd=tmp_path, timeout=600,
                                 env=rosetta_cli.env(MLFLOW_TRACKING_USERNAME=admin[0],
                                                     MLFLOW_TRACKING_PASSWORD=admin[1], PREFECT_API_URL=prefect_api))
        assert registered.returncode == 0, registered.stderr
        assert "rosetta v1 promoted to production" in registered.stdout
        with pytest.MonkeyPatch.context() as mp:
            mp.delenv("MLFLOW_TRACKING_URI", raising=False)
            mp.setenv("MLFLOW_TRACKING_USERNAME", admin[0])
            mp.setenv("MLFLOW_TRACKING_PASSWORD", admin[1])
            client = MlflowClient(tracking_uri=server.uri, registry_uri=server.uri)
            first = client.get_model_version("rosetta", "1")
            client.create_model_version("rosetta", first.source, run_id=first.run_id, tags=first.tags,
                                        model_id=first.source.removeprefix("models:/"))  # v2, a twin
            experiment = client.get_run(first.run_id).info.experiment_id

        def api(path: str, version: int = 2, **body):
            answer = requests.post(f"{server.uri}/api/{version}.0/mlflow/{path}", json=body, auth=admin, timeout=30)
            assert answer.status_code == 200, answer.text
        api("users/create", username="ann", password="ann-secret-1")
        # The grants the reference names: MANAGE on the registered model and EDIT on the experiment its runs are in
        # (each decision is a file in the version's run); none on any other registered model.
        api("users/permissions/grant", version=3, username="ann", resource_type="registered_model",
            resource_id="rosetta", permission="MANAGE")
        api("users/permissions/grant", version=3, username="ann", resource_type="experiment",
            resource_id=experiment, permission="EDIT")
        ann = rosetta_cli.env(MLFLOW_TRACKING_USERNAME="ann", MLFLOW_TRACKING_PASSWORD="ann-secret-1",
                              PREFECT_API_URL=prefect_api)
        promoted = rosetta_cli("promote", "--version", "2", "--force", *args, cwd=tmp_path, env=ann)
        assert promoted.returncode == 0, promoted.stderr
        assert promoted.stdout.strip().startswith("rosetta v2 promoted to production: forced by hand over v1")
        rolled = rosetta_cli("rollback", *args, cwd=tmp_path, env=ann)
        assert rolled.returncode == 0, rolled.stderr
        assert rolled.stdout.strip().startswith("rosetta v1 restored to production")

        # MANAGE on the model without EDIT on the experiment: the decision's history cannot be written, so the
        # aliases the promotion moved go back, and the refusal is one sentence.
        api("users/create", username="bob", password="bob-secret-1")
        api("users/permissions/grant", version=3, username="bob", resource_type="registered_model",
            resource_id="rosetta", permission="MANAGE")
        refused = rosetta_cli("promote", "--version", "2", "--force", *args, cwd=tmp_path,
                              env=rosetta_cli.env(MLFLOW_TRACKING_USERNAME="bob", MLFLOW_TRACKING_PASSWORD="bob-secret-1",
                                                  PREFECT_API_URL=prefect_api))
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
        assert f"error: the MLflow server at {server.uri} refused this change to user 'bob' (permission denied)" \
            in refused.stderr

        found = requests.get(f"{server.uri}/api/2.0/mlflow/registered-models/search", auth=admin, timeout=30).json()
        assert [m["name"] for m in found["registered_models"]] == ["rosetta"]
        aliases = {a["alias"]: a["version"] for a in found["registered_models"][0]["aliases"]}
        assert aliases == {"production": "1"}


def test_a_lock_holder_on_a_team_ended_by_sigterm_frees_it_at_once_and_one_killed_outright_at_its_lease(
        tmp_path, prefect_api):
    store = "http://127.0.0.1:5010"  # the lock never asks the MLflow server: none needs to run
    env = _env(tmp_path, PREFECT_API_URL=prefect_api)
    holder = _locker(store, env, "    time.sleep(600)")
    assert holder.stdout.readline().strip() == "held"
    waiter = _locker(store, env)
    line = waiter.stderr.readline()
    assert line.startswith(f"waiting for the registry of rosetta: pid {holder.pid} on "), line
    holder.terminate()
    assert holder.wait(60) == 128 + signal.SIGTERM
    started = time.monotonic()
    assert waiter.stdout.readline().strip() == "held" and waiter.wait(60) == 0
    assert time.monotonic() - started < 20  # released on the way out, not at its lease's end

    killed = _locker(store, env, "    time.sleep(600)")
    assert killed.stdout.readline().strip() == "held"
    killed.kill()
    killed.wait()
    started = time.monotonic()
    after = _locker(store, env)
    assert after.stdout.readline().strip() == "held" and after.wait(60) == 0
    assert time.monotonic() - started < LEASE_S + 30  # the lease ran out; nobody waits for ever


def test_a_store_behind_a_server_without_prefect_is_one_sentence(tmp_path):
    done = subprocess.run([sys.executable, "-c", (
        "from rosetta.errors import run_guarded\n"
        "from rosetta.registry.lock import registry_lock\n"
        "def main():\n"
        "    with registry_lock('http://127.0.0.1:5010', 'rosetta'):\n"
        "        return 0\n"
        "raise SystemExit(run_guarded(main))\n")], env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr == (
        "error: the registry at http://127.0.0.1:5010 is shared through a server, and its lock is a concurrency "
        "limit on the team's Prefect server, but PREFECT_API_URL is not set; source the env.sh that `rosetta team "
        "up` wrote (it sets PREFECT_API_URL and its credential), or set PREFECT_API_URL to the team's Prefect API\n")

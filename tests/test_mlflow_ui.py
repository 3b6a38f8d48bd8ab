"""`mlflow ui` as a person opens it, in headless Chromium (Debian's chromium, `make install` with the dev extras),
on the store of the session's flow run and the `dvc exp run` beside it (two training runs; version 1 promoted,
version 2 registered and refused): the links the README and the flow's report give open MLflow's model-training
view with the benchmark scores as columns, a version's page shows its decision history, and the training run's
page lists the version registered from it."""
from __future__ import annotations

import json
import subprocess

import pytest
from mlflow import MlflowClient

from dvc_fixtures import VENV_BIN
from flow_fixtures import REAL_SETS, free_port, stop, wait_http
from rosetta.tracking.runs import ML_VIEW, runs_view_path

pytestmark = [pytest.mark.slow, pytest.mark.journey]  # make test-journeys: the runs the flow journey made


@pytest.fixture(scope="module")
def ui(flow_stack, flow_experiments):
    """`mlflow ui` on the flow's store, and a headless Chromium tab; both stopped after the module."""
    from headless_chromium import chromium

    port = free_port()
    server = subprocess.Popen([str(VENV_BIN / "mlflow"), "ui",
                               "--backend-store-uri", flow_stack.uri, "--host", "127.0.0.1", "--port", str(port),
                               "--workers", "1"], env=flow_stack.env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", server)
        with chromium(width=2600) as page:  # wide: the grid draws only the columns in view
            yield {"page": page, "url": f"http://127.0.0.1:{port}",
                   "client": MlflowClient(tracking_uri=flow_stack.uri, registry_uri=flow_stack.uri)}
    finally:
        stop(server)


def _training_runs(client: MlflowClient):
    exp = client.get_experiment_by_name("rosetta")
    return exp, client.search_runs([exp.experiment_id], "tags.backbone != ''", order_by=["attributes.start_time ASC"])


def test_the_runs_list_opens_in_the_model_training_view_with_the_scores(ui):
    exp, runs = _training_runs(ui["client"])
    assert len(runs) == 2
    page = ui["page"]
    page.goto(f"{ui['url']}/#{runs_view_path(exp.experiment_id)}")
    assert page.wait_text("Sort: accuracy_real"), page.text()[:2000]
    # The runs table with the scores as columns, not the GenAI overview.
    for shown in ("Run Name", "accuracy_real", *(f"{name}/accuracy" for name in REAL_SETS), "synth_test/accuracy",
                  "changed_params", *(run.info.run_name for run in runs)):
        assert page.wait_text(shown, 30), (shown, page.text()[:3000])
    assert "Detect Issues" not in page.text()


def test_a_version_page_shows_its_decision_history(ui):
    page, client = ui["page"], ui["client"]
    refused = client.get_model_version("rosetta", "2")
    assert refused.tags["promotion.decision"] == "not promoted"
    page.goto(f"{ui['url']}/#/models/rosetta/versions/2?{ML_VIEW}")
    assert page.wait_text("Decision history, newest first"), page.text()[:2000]
    text = page.text()
    assert "not promoted" in text and "does not beat production v1's" in text and "registry.margin 1" in text
    page.goto(f"{ui['url']}/#/models/rosetta/versions/1?{ML_VIEW}")
    assert page.wait_text("no production version yet"), page.text()[:2000]


def test_the_training_run_page_lists_its_registered_version(ui):
    exp, runs = _training_runs(ui["client"])
    version = ui["client"].get_model_version("rosetta", "1")
    assert version.run_id == runs[0].info.run_id
    page = ui["page"]
    page.goto(f"{ui['url']}/#/experiments/{exp.experiment_id}/runs/{version.run_id}?{ML_VIEW}")
    assert page.wait_text("Registered models"), page.text()[:2000]
    assert page.wait_for("document.body.innerText.split('Registered models')[1].includes('rosetta')", 30)
    assert "v1" in page.text().split("Registered models")[1]
    tags = json.dumps(runs[0].data.tags)
    assert "dvc_experiment" in tags and "prefect_flow_run" in tags

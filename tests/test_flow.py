"""The Prefect flow end to end, everything really started (``flow_fixtures``): the deployments asking nothing, the
session's deployment run (``flow_run``) completing with each stage a task, DVC recording it as an experiment
(metrics and plots cached with it), MLflow tagging it with its DVC experiment and flow run, the registry's
version, the report with its links, evaluation progress in the log, and a worker of the gpu pool finding the
project on its own host. The flow run is the one end-to-end `dvc repro` of the model stages in the suite."""
from __future__ import annotations

import json
import subprocess

import pytest
import yaml
from mlflow import MlflowClient

from flow_fixtures import PREFECT, REAL_SETS, SERVER_HOST, experiments, stop
from dvc_fixtures import DVC

pytestmark = [pytest.mark.slow, pytest.mark.journey,  # make test-journeys: the README's pipeline and experiments
              pytest.mark.skipif(not (PREFECT.exists() and DVC.exists()), reason="prefect and dvc must be in the venv")]


def _up_to_date(stack) -> None:
    """``dvc status``: nothing to rerun (stages marked always_changed are always listed, and only they may be)."""
    always = {name for name, stage in yaml.safe_load((stack.repo / "dvc.yaml").read_text())["stages"].items()
              if stage.get("always_changed")}
    status = json.loads(stack.dvc("status", "--json").stdout)
    assert all(name in always and entries == ["always changed"] for name, entries in status.items()), status


def _lock_params(stack, stage: str) -> dict:
    return yaml.safe_load((stack.repo / "dvc.lock").read_text())["stages"][stage]["params"]["params.yaml"]


def test_deploy_all_asks_nothing_on_a_fresh_server(flow_stack):
    up, done = flow_stack.up, flow_stack.deployed
    assert up.returncode == 0 and f"http://{SERVER_HOST}:" in up.stdout, up.stdout + up.stderr
    assert done.returncode == 0, done.stdout + done.stderr
    assert "train-rosetta/local" in done.stdout and "train-rosetta/gpu" in done.stdout
    deployment = flow_stack.api_get("deployments/name/train-rosetta/local")
    assert deployment["global_concurrency_limit"]["limit"] == 1 and deployment["schedules"] == []
    assert deployment["pull_steps"] == [{"prefect.deployments.steps.set_working_directory": {
        "directory": str(flow_stack.repo)}}]
    # A worker on a GPU host finds the project there: no path of the deploying machine travels with the gpu runs.
    gpu = flow_stack.api_get("deployments/name/train-rosetta/gpu")
    assert gpu["pull_steps"] == [{"rosetta.orchestration.dvc_project.enter_project": {}}]
    assert str(flow_stack.root) not in json.dumps(gpu)


def test_the_flow_run_completes(flow_stack, flow_run):
    done, run = flow_run["done"], flow_run["run"]
    assert done.returncode == 0 and run["state"]["type"] == "COMPLETED", done.stdout + flow_stack.worker_log()


def test_dvc_records_the_flow_run(flow_stack, flow_run, flow_experiments):
    """DVC ran every stage and knows it: nothing left to do, the params in dvc.lock, the run an experiment with its
    benchmark scores (cached outputs: an experiment keeps them)."""
    _up_to_date(flow_stack)
    assert _lock_params(flow_stack, "train")["train.max_steps"] == 5
    assert _lock_params(flow_stack, "download")["data.synth"]["train_size"] == 30
    params = yaml.safe_load((flow_stack.repo / "params.yaml").read_text())
    assert params["train"]["max_steps"] == 5 and params["data"]["synth"]["train_size"] == 30
    recorded = experiments(flow_stack.dvc("exp", "show", "--json").stdout)[flow_run["experiment"]]
    assert recorded["params"]["params.yaml"]["data"]["train"]["max_steps"] == 5
    assert set(recorded["metrics"]) == {"runs/eval/metrics.json"}  # the pipeline's one DVC metric
    scores = recorded["metrics"]["runs/eval/metrics.json"]["data"]
    assert list(scores)[:5] == ["accuracy_real", *REAL_SETS, "synth_test", "images_per_s"]  # then the whole summary
    assert scores["synth_test"] == scores["sets"]["synth_test"]["accuracy"]


def test_dvc_reads_the_runs_records_and_plots(flow_stack, flow_run):
    """The stages' records as DVC shows them, and the run record the later stages read."""
    run = json.loads((flow_stack.repo / "runs" / "train" / "run.json").read_text())
    assert run["tracking_uri"] == flow_stack.uri and run["steps"] == 5
    assert (flow_stack.root / "mlartifacts").is_dir()
    shown = json.JSONDecoder().raw_decode(flow_stack.dvc(
        "metrics", "show", "--json", "runs/eval/metrics.json", "runs/train/train_metrics.json",
        "data/reports/data_metrics.json").stdout)[0]
    files = next(iter(shown.values()))["data"]
    assert files["runs/eval/metrics.json"]["data"]["sets"]["synth_test"]["count"] == 10
    assert files["runs/train/train_metrics.json"]["data"]["steps"] == 5
    assert files["data/reports/data_metrics.json"]["data"]["real_benchmarks_REALA_12"]["passed"]
    plots = flow_stack.dvc("plots", "show", "--json").stdout
    for name in ("runs/train/plots/train_loss.csv", "runs/train/plots/val_accuracy.csv", "runs/eval/gallery.png"):
        assert name in plots


def test_the_data_docs_name_every_validated_lmdb(flow_stack, flow_run):
    """GX's Data Docs beside the JSON results, the real benchmark sets among the LMDBs checked."""
    index = flow_stack.repo / "data" / "reports" / "data_docs" / "index.html"
    html = index.read_text()
    checked = [p.stem for p in (flow_stack.repo / "data" / "reports" / "validation").glob("*.json")
               if p.stem != "overlap"]
    assert {f"real_benchmarks_{name}" for name in REAL_SETS} <= set(checked) and "synth_train" in checked
    assert all(name in html for name in checked), [name for name in checked if name not in html]


def test_the_flow_run_registers_and_reports(flow_stack, flow_run):
    client = MlflowClient(tracking_uri=flow_stack.uri, registry_uri=flow_stack.uri)
    mv = client.get_model_version("rosetta", "1")
    train_run = json.loads((flow_stack.repo / "runs" / "train" / "run.json").read_text())["run_id"]
    assert mv.tags["promotion.decision"] == "promoted" and mv.tags["backbone"] == "mobilenet_v3"
    assert mv.run_id == train_run and "accuracy_total" in client.get_run(train_run).data.metrics
    # What links the version and its run to DVC and Prefect; the flow's own writes (params, dvc.lock) keep the
    # commit clean.
    run = flow_run["run"]
    for tags in (mv.tags, client.get_run(train_run).data.tags):
        assert tags["dvc_experiment"] == flow_run["experiment"]
        assert tags["prefect_flow_run"].endswith(f"/flow-runs/flow-run/{run['id']}")
        assert tags["git_commit"] != "unknown" and not tags["git_commit"].endswith("-dirty")
    report = [a for a in flow_stack.of_flow_run("artifacts", run["id"]) if a["key"] == "train-rosetta-report"]
    assert report, "no report artifact"
    text = report[0]["data"]
    assert "| synth_test |" in text and f"runs/{train_run}?workflowType=machine_learning" in text
    assert "runs?viewStateShareKey=benchmarks&workflowType=machine_learning" in text
    assert f"mlflow ui --backend-store-uri {flow_stack.uri}" in text
    assert f"DVC experiment: `flow-{run['name']}`" in text
    docs = (flow_stack.repo / "data" / "reports" / "data_docs" / "index.html").resolve()
    assert f"[Data Docs]({docs.as_uri()})" in text


def test_each_stage_is_a_task(flow_stack, flow_run):
    tasks = {t["name"].rsplit("-", 1)[0]: t for t in flow_stack.of_flow_run("task_runs", flow_run["run"]["id"])}
    assert set(tasks) == {"params", "raw-data", "validated-data", "train", "benchmark-metrics", "onnx-model",
                          "registered-version", "dvc-experiment"}
    assert "gpu" in tasks["train"]["tags"] and "gpu" not in tasks["raw-data"]["tags"]
    assert all(t["state"]["type"] == "COMPLETED" for t in tasks.values())


def test_the_log_shows_training_and_evaluation_progress_without_a_loader_traceback(flow_stack, flow_run):
    log = flow_stack.worker_log()
    assert "Running stage 'train'" in log and "Exception ignored" not in log and "exited unexpectedly" not in log
    for name in (*REAL_SETS, "synth_test"):  # each set's count and elapsed<remaining as it is read
        assert any(line.count(f"evaluate {name}:") and "<" in line for line in log.splitlines()), name


def test_bad_params_fail_the_run_in_one_sentence(flow_stack):
    before = (flow_stack.repo / "params.yaml").read_text()
    done, run = flow_stack.run_deployment("train.lr=-1")
    assert done.returncode == 1 and run["state"]["type"] == "FAILED"
    assert run["state"]["message"] == "train.lr: -1.0 must be > 0"
    assert (flow_stack.repo / "params.yaml").read_text() == before


def test_a_gpu_worker_runs_in_the_project_on_its_own_host(flow_stack, tmp_path):
    """A worker of the gpu pool started elsewhere, reaching the server by its address (PREFECT_API_URL) and naming
    its clone with ROSETTA_PROJECT_DIR: its run enters that clone (it takes the project's flow lock there) and ends
    in the params' own sentence; no GPU is needed to get that far."""
    lock = flow_stack.repo / ".dvc" / "tmp" / "rosetta-flow.lock"
    lock.unlink(missing_ok=True)
    env = {**flow_stack.env, "ROSETTA_PROJECT_DIR": str(flow_stack.repo)}
    worker = subprocess.Popen([str(PREFECT), "worker", "start", "--pool", "gpu"], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        done, run = flow_stack.run_deployment("train.lr=-1", deployment="train-rosetta/gpu")
    finally:
        stop(worker)
    assert run["state"]["type"] == "FAILED" and run["state"]["message"] == "train.lr: -1.0 must be > 0", run["state"]
    assert lock.is_file()

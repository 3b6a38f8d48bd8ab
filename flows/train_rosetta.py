"""Prefect flow ``train-rosetta``: the DVC pipeline (dvc.yaml) stage by stage, recorded as a DVC experiment
(and, on the team's workers, pushed to the team's git and DVC remotes).

Each task runs its stage with ``dvc repro <stage>`` in the project folder and is named by what it produces;
Prefect adds the deployments, work pools, retries (data), the ``gpu`` tag (training) and the report artifact.
Deploy with ``prefect deploy --all`` (see prefect.yaml); run with
``prefect deployment run 'train-rosetta/local' --param overrides='["train.max_steps=100"]' --watch``.
"""
from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.states import Failed

from rosetta.errors import RosettaError
from rosetta.orchestration import dvc_project, report

# Training tasks carry this tag: `prefect concurrency-limit create gpu 1` keeps two trainings off one card.
GPU_TAG = "gpu"


@task(name="params", cache_policy=NO_CACHE)
def params(project: Path, overrides: list[str]):
    return dvc_project.apply_params(project, overrides)


@task(name="raw-data", cache_policy=NO_CACHE)
def raw_data(project: Path) -> None:
    # Downloads heal on retry (the network); the task's retries come from prefect.data_retries.
    dvc_project.pull_data(project)
    dvc_project.dvc(project, "repro", "download")


@task(name="validated-data", cache_policy=NO_CACHE)
def validated_data(project: Path) -> None:
    dvc_project.dvc(project, "repro", "validate")


@task(name="train", tags=[GPU_TAG], cache_policy=NO_CACHE)
def train(project: Path) -> None:
    dvc_project.dvc(project, "repro", "train")


@task(name="benchmark-metrics", cache_policy=NO_CACHE)
def evaluate(project: Path) -> None:
    dvc_project.dvc(project, "repro", "evaluate")


@task(name="onnx-model", cache_policy=NO_CACHE)
def export(project: Path) -> None:
    dvc_project.dvc(project, "repro", "export")


@task(name="registered-version", cache_policy=NO_CACHE)
def register(project: Path) -> None:
    dvc_project.dvc(project, "repro", "register")


@task(name="dvc-experiment", cache_policy=NO_CACHE)
def experiment(project: Path, name: str) -> str:
    return dvc_project.save_experiment(project, name)


@task(name="published", cache_policy=NO_CACHE)
def publish(project: Path, name: str) -> str:
    return dvc_project.publish(project, name)


@flow(name="train-rosetta", log_prints=True)
def train_rosetta(overrides: list[str] | None = None, gpus: int | None = None, publish_to_team: bool = False):
    """Run the DVC pipeline with ``overrides`` (``section.key=value``, any key, written into params.yaml);
    ``gpus`` trains on that many CUDA devices (train.nproc); ``publish_to_team`` pushes the run's DVC experiment
    to the clone's git remote and its outputs to the DVC remote (the team deployment's workers do)."""
    try:
        project = dvc_project.project_folder()
        name = f"flow-{flow_run.get_name()}"
        with dvc_project.project_lock(project), dvc_project.recorded_as(name, flow_run.ui_url):
            cfg = params(project, dvc_project.flow_overrides(overrides, gpus))
            raw_data.with_options(retries=cfg.prefect.data_retries,
                                  retry_delay_seconds=cfg.prefect.data_retry_delay_s)(project)
            validated_data(project)
            train(project)
            evaluate(project)
            export(project)
            register(project)
            experiment(project, name)
            if publish_to_team:
                print(publish(project, name))
            out = report.run_outputs(cfg)
    except RosettaError as exc:
        # The user's one sentence becomes the run's state message, not a traceback.
        get_run_logger().error(str(exc))
        return Failed(message=str(exc))
    links = report.mlflow_links(cfg, out["run"].get("run_id"), out["decision"]["version"])
    create_markdown_artifact(report.report_markdown(cfg, out["metrics"], out["parity"], out["decision"], out["run"],
                                                    links, name),
                             key="train-rosetta-report", description="benchmarks, ONNX parity, registry decision")
    return out["decision"]

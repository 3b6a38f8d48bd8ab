"""Prefect flow ``train-rosetta``: data -> train -> evaluate -> export (parity-gated) -> register/promote.

A thin layer over ``rosetta.pipeline``: each task is one pipeline step, named by what it produces. Deploy
with ``prefect deploy --all`` (see prefect.yaml); run with
``prefect deployment run 'train-rosetta/local' --param overrides='["train.max_steps=100"]' --watch``.
"""
from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed

from rosetta import pipeline
from rosetta.errors import RosettaError

# Training tasks carry this tag: `prefect concurrency-limit create gpu 1` keeps two trainings off one card.
GPU_TAG = "gpu"


def _is_download_failure(task, task_run, state) -> bool:
    # A download can heal on retry (the network); bad params, conversion or validation errors cannot.
    return isinstance(state.data, pipeline.DataStageError) and state.data.retryable


@task(name="data", cache_policy=NO_CACHE, retry_condition_fn=_is_download_failure)
def data(cfg) -> dict:
    return pipeline.ensure_data(cfg)


@task(name="train", tags=[GPU_TAG], cache_policy=NO_CACHE)
def train(cfg):
    return pipeline.train(cfg)


@task(name="benchmark-metrics", cache_policy=NO_CACHE)
def evaluate(cfg, trained) -> dict:
    return pipeline.evaluate(cfg, trained.best_checkpoint, trained.run_id)


@task(name="onnx-model", cache_policy=NO_CACHE)
def export(cfg, trained) -> dict:
    return pipeline.export(cfg, trained.best_checkpoint)


@task(name="registered-version", cache_policy=NO_CACHE)
def register(cfg, parity: dict, metrics: dict, trained):
    return pipeline.register(cfg, parity, metrics, trained.run_id)


@flow(name="train-rosetta", log_prints=True)
def train_rosetta(params: str = "params.yaml", overrides: list[str] | None = None, gpus: int | None = None):
    """Train, benchmark, export and register Rosetta per ``params`` with ``overrides`` (``section.key=value``);
    ``gpus`` trains on that many CUDA devices (train.nproc)."""
    try:
        cfg = pipeline.flow_config(params, overrides, gpus)
        data.with_options(retries=cfg.prefect.data_retries,
                          retry_delay_seconds=cfg.prefect.data_retry_delay_s)(cfg)
        trained = train(cfg)
        metrics = evaluate(cfg, trained)
        parity = export(cfg, trained)
        decision = register(cfg, parity, metrics, trained)
    except RosettaError as exc:
        # The user's one sentence becomes the run's state message, not a traceback.
        get_run_logger().error(str(exc))
        return Failed(message=str(exc))
    links = pipeline.mlflow_links(cfg, trained.run_id, decision.version)
    create_markdown_artifact(pipeline.report_markdown(cfg, metrics, parity, decision, trained.run_id, links),
                             key="train-rosetta-report", description="benchmarks, ONNX parity, registry decision")
    return decision.to_dict()

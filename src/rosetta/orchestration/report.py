"""The flow run's report for the Prefect UI: what the stages left (``RunLayout``) as a benchmark table, the
parity figures, the registry's decision, links into the MLflow UI and to the data check's Data Docs."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from rosetta.config import Config
from rosetta.errors import RosettaError
from rosetta.evaluation.report import markdown_table
from rosetta.layout import DataLayout, RunLayout
from rosetta.prep.validate import DOCS_DIR
from rosetta.tracking.runs import ML_VIEW, runs_view_path
from rosetta.tracking.store import tracking_uri


def read_json(path: Path, stage: str) -> dict:
    if not path.is_file():
        raise RosettaError(f"{path}: not written; run the {stage} stage (`dvc repro {stage}`)")
    return json.loads(path.read_text())


@dataclass(frozen=True)
class Links:
    run: str | None = None
    version: str | None = None
    runs: str | None = None  # the experiment's runs list, benchmark columns picked


def served_by_server(store: str | None) -> bool:
    """Whether the MLflow store is a tracking server (``mlflow server``, the team's), which serves its own UI."""
    return bool(store) and store.startswith(("http://", "https://"))


def mlflow_ui(cfg: Config, store: str) -> str | None:
    """The MLflow UI that shows ``store``: a tracking server's own address, else ``prefect.mlflow_ui_url`` (where
    `mlflow ui` serves a local store); None when neither."""
    ui = store if served_by_server(store) else cfg.prefect.mlflow_ui_url
    return ui.rstrip("/") if ui else None


def mlflow_links(cfg: Config, run_id: str | None, version: str | None) -> Links:
    """Addresses in the MLflow UI that shows the store (``mlflow_ui``) of the run, the registered version and the
    runs list, each in MLflow's model-training view."""
    store = tracking_uri(cfg)
    ui = mlflow_ui(cfg, store)
    if not ui:
        return Links()
    from mlflow import MlflowClient

    run = runs = None
    if run_id:
        exp_id = MlflowClient(tracking_uri=store).get_run(run_id).info.experiment_id
        run = f"{ui}/#/experiments/{exp_id}/runs/{run_id}?{ML_VIEW}"
        runs = f"{ui}/#{runs_view_path(exp_id)}"
    model = f"{ui}/#/models/{cfg.registry.model_name}/versions/{version}?{ML_VIEW}" if version else None
    return Links(run, model, runs)


def report_markdown(cfg: Config, metrics: Mapping[str, Any], parity: Mapping[str, Any],
                    decision: Mapping[str, Any], run: Mapping[str, Any], links: Links,
                    experiment: str | None = None) -> str:
    """The flow run's summary for the Prefect UI: benchmark table, parity, registry decision, MLflow links.
    ``decision`` and ``run`` are what the register and train stages write (decision.json, run.json)."""
    run_id = run.get("run_id")
    run_text = f"[{run_id}]({links.run})" if links.run else f"`{run_id}`"
    version = f"v{decision['version']}"
    version = f"[{version}]({links.version})" if links.version else version
    lines = [
        f"# train-rosetta: {cfg.model.backbone.key}",
        "",
        "## Benchmarks",
        "",
        markdown_table(metrics),
        "## ONNX parity (ONNX Runtime vs PyTorch, validation split)",
        "",
        f"{parity['samples']} images: max abs difference {parity['max_abs_diff']:.3g} "
        f"(limit {cfg.export.max_abs_diff:g}), same text {parity['same_text']:.2%} "
        f"(limit {cfg.export.min_same_text:.2%})",
        "",
        "## Registry",
        "",
        f"{decision['model_name']} {version}: **{'promoted' if decision['promoted'] else 'not promoted'}**: "
        f"{decision['reason']}",
        "",
        f"MLflow run: {run_text}",
        "",
    ]
    if links.runs:
        lines += [f"All runs, by benchmark score: [runs list]({links.runs})", ""]
    store = run.get("tracking_uri")
    if (links.run or links.version) and served_by_server(store):
        lines += [f"The links open in the tracking server's own UI, {store}, which stores the runs and models (sign "
                  "in with MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD; a team's are in `.team/env.sh`).",
                  ""]
    elif links.run or links.version:
        lines += [f"The links open while `mlflow ui --backend-store-uri {store}` serves {cfg.prefect.mlflow_ui_url}; "
                  f"the runs and models are stored in `{store}`.", ""]
    elif store:
        lines += [f"MLflow store: `{store}`", ""]
    if experiment:
        lines += [f"DVC experiment: `{experiment}` (`dvc exp show`)", ""]
    docs = DataLayout.from_config(cfg).reports / DOCS_DIR / "index.html"
    if docs.is_file():
        lines += [f"Data checks (Great Expectations): [Data Docs]({docs.resolve().as_uri()}), `{docs.resolve()}`", ""]
    return "\n".join(lines)


def run_outputs(cfg: Config) -> dict[str, dict]:
    """What the stages left for the report: the training run record, metrics, parity and decision."""
    layout = RunLayout.from_config(cfg)
    return {"run": read_json(layout.run_json, "train"), "metrics": read_json(layout.eval_metrics, "evaluate"),
            "parity": read_json(layout.parity, "export"), "decision": read_json(layout.decision, "register")}

"""What a training run records so two runs compare at a glance: a name saying what the run is, the params that
can change a result (``rosetta.config.result_params``; the rest go to the run's ``config/params.yaml``), which
differ from the defaults, and the descriptions at the top of a run's page; and the UI's view of the runs list
(``share_runs_view``), which shows the scores as columns.
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Mapping

from rosetta.config import Config, result_params, scale_keys

TAG_CHANGED = "changed_params"  # the params that differ from the defaults, one column in the runs table
TAG_BACKBONE = "backbone"


def changed_params(cfg: Config) -> dict[str, Any]:
    """The result params whose values differ from the defaults (``rosetta.config``'s, which params.yaml
    repeats), the backbone's own keys left out (the backbone is named on its own)."""
    defaults = result_params(Config())
    return {k: v for k, v in result_params(cfg).items()
            if not k.startswith("model.backbone.") and defaults.get(k, object()) != v}


def backbone_label(cfg: Config) -> str:
    """``mobilenet_v3 large x0.5`` or ``resnet34_vd``: the backbone and its size."""
    b = cfg.model.backbone
    return f"{b.key} {b.model_name} x{b.scale:g}" if hasattr(b, "model_name") else b.key


def _short(key: str, value: Any) -> str:
    return f"{key.rsplit('.', 1)[-1]}={value if not isinstance(value, list) else ','.join(map(str, value))}"


# A run name shows the model's and the recipe's changes before the data's; a path says little in a name.
_NAME_ORDER = ("model.", "train.", "seed", "charset.", "data.")


def _name_rank(key: str, scale: set[str]) -> tuple[bool, int]:
    """Recipe settings before the run's size (``rosetta.config.SCALE``), then the model's before the data's."""
    return key in scale, next(i for i, p in enumerate(_NAME_ORDER + ("",)) if key.startswith(p))


def run_name(cfg: Config, now: datetime | None = None, max_changes: int = 4) -> str:
    """``mlflow.run_name`` when set, else what the run is: backbone, the first changed params (the recipe's before
    the run's size: a smoke run's steps and data sizes never hide what it tries) and the local date and time, e.g.
    ``mobilenet_v3 large x0.5 augment=True lr=0.001 max_steps=600 11-27 23:40:05``."""
    if cfg.mlflow.run_name:
        return cfg.mlflow.run_name
    scale = scale_keys(cfg)
    changed = [(k, v) for k, v in changed_params(cfg).items() if not (isinstance(v, str) and "/" in v)]
    changed.sort(key=lambda kv: _name_rank(kv[0], scale))
    changes = [_short(k, v) for k, v in changed]
    shown = changes[:max_changes] + ([f"+{len(changes) - max_changes}"] if len(changes) > max_changes else [])
    return " ".join([backbone_label(cfg), *shown, (now or datetime.now()).strftime("%m-%d %H:%M:%S")])


def run_description(cfg: Config, tags: Mapping[str, str]) -> str:
    """The Markdown at the top of a training run's page: what it trained, on which data, and what differs."""
    changed = changed_params(cfg)
    lines = [f"**{backbone_label(cfg)}**, data version `{tags.get('data_version', 'unknown')}`, "
             f"git `{tags.get('git_commit', 'unknown')}`",
             "Params that differ from the defaults: " + (", ".join(f"`{k}={v}`" for k, v in changed.items())
                                                          if changed else "none")]
    return "\n\n".join(lines)


def benchmark_description(summary: Mapping[str, Any]) -> str:
    """One line of benchmark accuracies (fractions) for a run's description."""
    parts = [f"{name} {m['accuracy']:.4f}" for name, m in summary["sets"].items()]
    if "accuracy_real" in summary:
        parts.append(f"real total {summary['accuracy_real']:.4f}")
    parts.append(f"total {summary['accuracy_total']:.4f}")
    return "Benchmark accuracy: " + ", ".join(parts)


# The model-training view of MLflow 3's UI, in a link's query: an experiment (kind ``custom_model_development``,
# ``rosetta.tracking.store.EXPERIMENT_KIND``) still opens in the view its sidebar switch last chose.
ML_VIEW = "workflowType=machine_learning"
# A view of the runs list shared through the experiment (MLflow's "share view"): the benchmark scores as columns,
# best first. MLflow shows a few attribute columns only until a person picks metrics; this view has them picked.
RUNS_VIEW = "benchmarks"
_SHARED_VIEW_TAG = "mlflow.sharedViewState."


def runs_view_path(experiment_id: str) -> str:
    """The path (after the UI's ``#``) of the experiment's runs list in ``RUNS_VIEW``, in the model-training view."""
    return f"/experiments/{experiment_id}/runs?viewStateShareKey={RUNS_VIEW}&{ML_VIEW}"


def share_runs_view(client, experiment_id: str, metrics: list[str]) -> None:
    """Add ``metrics`` (the first one sorts, best first) to the columns of the experiment's ``RUNS_VIEW``, after
    those earlier runs added, beside the tags that say what a run changed."""
    key = _SHARED_VIEW_TAG + RUNS_VIEW
    try:
        earlier = json.loads(client.get_experiment(experiment_id).tags.get(key) or "{}").get("selectedColumns", [])
    except (ValueError, AttributeError):
        earlier = []
    columns = [f"metrics.`{m}`" for m in metrics] + [f"tags.`{t}`" for t in (TAG_CHANGED, TAG_BACKBONE)]
    columns = list(dict.fromkeys([*(c for c in earlier if c.startswith("metrics.")), *columns]))
    view = {"selectedColumns": columns, "orderByKey": f"metrics.`{metrics[0]}`", "orderByAsc": False}
    client.set_experiment_tag(experiment_id, key, json.dumps(view))

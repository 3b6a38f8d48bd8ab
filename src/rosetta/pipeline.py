"""The training pipeline as plain steps for the Prefect flow (``flows/train_rosetta.py``): make sure the
data is there, then train, evaluate, export and register with the same functions the DVC stages call.

Paths resolve against the working directory, which must be the project (the deployment's pull step
sets it), because ``dvc`` and the params' relative paths both assume it.
"""
from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from rosetta.config import Config, ConfigError, DataLayout, load_config, project_path
from rosetta.errors import RosettaError

# The params the DVC data stages read from params.yaml: the flow must see the same values.
DATA_SECTIONS = ("seed", "charset", "data")


class DataStageError(RosettaError):
    """A DVC data command failed; ``stage`` names the stage that did, when DVC says so."""

    def __init__(self, message: str, stage: str | None = None):
        super().__init__(message)
        self.stage = stage

    @property
    def retryable(self) -> bool:
        """Only a download can heal by itself (the network); conversion or validation fail again."""
        return self.stage == "download"


def flow_config(params: str | Path = "params.yaml", overrides: list[str] | None = None,
                gpus: int | None = None) -> Config:
    """The flow's configuration: ``params`` with ``overrides``; ``gpus`` sets train.nproc on CUDA."""
    overrides = list(overrides or [])
    if gpus is not None:
        if gpus < 1:
            raise ConfigError(f"gpus: {gpus!r} must be at least 1 (leave it out to train on train.device)")
        overrides += [f"train.nproc={gpus}", "train.device=cuda"]
    return load_config(params, overrides)


def _first_difference(a: Any, b: Any, key: str) -> str | None:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for k in sorted(set(a) | set(b)):
            found = _first_difference(a.get(k), b.get(k), f"{key}.{k}" if key else str(k))
            if found:
                return found
        return None
    return key if a != b else None


def check_data_params(cfg: Config, project_dir: Path) -> None:
    """``dvc repro`` reads ``project_dir/params.yaml``; data settings that differ from it would be ignored."""
    dvc_cfg = load_config(project_dir / "params.yaml").to_dict()
    mine = cfg.to_dict()
    for section in DATA_SECTIONS:
        key = _first_difference(mine[section], dvc_cfg[section], section)
        if key:
            raise ConfigError(f"{key}: the flow's value differs from params.yaml's, which the DVC data stages "
                              "read; change it in params.yaml instead of overriding it")


def _dvc_command(*args: str) -> tuple[list[str], dict[str, str]]:
    """The venv's dvc (else the one on PATH), with the venv first on PATH so stages find its python."""
    bin_dir = Path(sys.executable).parent
    exe = bin_dir / "dvc"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1"}
    return [str(exe) if exe.exists() else "dvc", *args], env


def _dvc(project_dir: Path, *args: str) -> None:
    """Run ``dvc args`` in ``project_dir``, echoing its output; a failure raises its own last error line."""
    cmd, env = _dvc_command(*args)
    proc = subprocess.Popen(cmd, cwd=project_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    tail: collections.deque[str] = collections.deque(maxlen=200)
    assert proc.stdout is not None
    for line in proc.stdout:
        print(line.rstrip(), flush=True)
        tail.append(line.strip())
    if proc.wait() != 0:
        # A stage script's own sentence ("error: ...") says more than DVC's wrapper line.
        ours = [line[len("error: "):] for line in tail if line.startswith("error: ")]
        theirs = [line[len("ERROR: "):] for line in tail if line.startswith("ERROR: ")]
        stage = next((m.group(1) for line in reversed(theirs)
                      if (m := re.search(r"failed to reproduce '([^']+)'", line))), None)
        if ours:
            raise DataStageError(ours[-1], stage)
        why = f" ({theirs[-1]})" if theirs else ""
        raise DataStageError(f"`dvc {' '.join(args)}` failed{why}; see the log above", stage)


def _has_remote(project_dir: Path) -> bool:
    cmd, env = _dvc_command("remote", "list")
    out = subprocess.run(cmd, cwd=project_dir, env=env, capture_output=True, text=True)
    return out.returncode == 0 and bool(out.stdout.strip())


def ensure_data(cfg: Config, project_dir: Path | None = None) -> dict[str, str]:
    """Pull (when a DVC remote is set) or rebuild the data with ``dvc repro validate``, then check that the
    training, validation and benchmark LMDBs exist; returns them by name."""
    from rosetta.data.lmdb_io import find_lmdbs

    project_dir = Path(project_dir or Path.cwd())
    if (project_dir / "dvc.yaml").is_file():
        check_data_params(cfg, project_dir)
        if _has_remote(project_dir):
            try:
                _dvc(project_dir, "pull", "validate")
            except DataStageError as exc:
                print(f"dvc pull did not bring everything ({exc}); rebuilding with dvc repro", flush=True)
        _dvc(project_dir, "repro", "validate")
    layout = DataLayout.from_config(cfg)
    found = {}
    for source in cfg.data.sources:
        for split in ("train", "val"):
            found[f"{source}/{split}"] = layout.lmdb(source) / split
    found["benchmarks"] = layout.benchmarks
    for name, path in found.items():
        if not path.is_dir() or not find_lmdbs(path):
            raise RosettaError(f"{path}: no {name} LMDB there; build the data with `dvc repro validate` in "
                               "the project folder")
    return {name: str(path) for name, path in found.items()}


def train(cfg: Config):
    """``rosetta.train.run_training``: in this process on one device, through torchrun for train.nproc > 1."""
    from rosetta.train import run_training

    return run_training(cfg)


def evaluate(cfg: Config, checkpoint: Path, run_id: str | None) -> dict:
    from rosetta.evaluate import evaluate_benchmarks

    return evaluate_benchmarks(Path(checkpoint), DataLayout.from_config(cfg).benchmarks, cfg,
                               project_path(cfg.eval.out_dir), run_id)


def export(cfg: Config, checkpoint: Path) -> dict:
    """The gated ONNX export to ``<export.out_dir>/model.onnx``; returns the parity report."""
    from rosetta.export import default_paths, export_checkpoint

    onnx, parity = default_paths(cfg)
    report = export_checkpoint(checkpoint, onnx, cfg, parity)
    print(report.summary(), flush=True)
    return report.to_dict()


def register(cfg: Config, parity: dict, metrics: dict, run_id: str | None):
    from rosetta.export import default_paths
    from rosetta.registry import default_decision_path, register_and_promote

    onnx, _ = default_paths(cfg)
    return register_and_promote(cfg, onnx, parity, metrics, run_id, default_decision_path(cfg))


@dataclass(frozen=True)
class Links:
    run: str | None = None
    version: str | None = None


def mlflow_links(cfg: Config, run_id: str | None, version: str | None) -> Links:
    """Addresses in the MLflow UI (``prefect.mlflow_ui_url``) of the run and the registered version."""
    ui = cfg.prefect.mlflow_ui_url
    if not ui:
        return Links()
    from rosetta.registry import registry_client

    ui = ui.rstrip("/")
    run = None
    if run_id:
        exp_id = registry_client(cfg).get_run(run_id).info.experiment_id
        run = f"{ui}/#/experiments/{exp_id}/runs/{run_id}"
    model = f"{ui}/#/models/{cfg.registry.model_name}/versions/{version}" if version else None
    return Links(run, model)


def report_markdown(cfg: Config, metrics: dict, parity: dict, decision, run_id: str | None, links: Links) -> str:
    """The flow run's summary for the Prefect UI: benchmark table, parity, registry decision, MLflow links."""
    from rosetta.evaluate import markdown_table

    run = f"[{run_id}]({links.run})" if links.run else f"`{run_id}`"
    version = f"v{decision.version}"
    version = f"[{version}]({links.version})" if links.version else version
    return "\n".join([
        f"# train-rosetta: {cfg.model.backbone}",
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
        f"{cfg.registry.model_name} {version}: **{'promoted' if decision.promoted else 'not promoted'}**: "
        f"{decision.reason}",
        "",
        f"MLflow run: {run}",
        "",
    ])

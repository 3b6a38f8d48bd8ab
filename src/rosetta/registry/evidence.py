"""A registration's evidence, from the files the export, evaluate and train stages write, and what binds it to the
file registered: the parity report names the ONNX file it gated, the checkpoint it came from and their training
run, the benchmark metrics name the file they scored, and the ONNX file names its run. Evidence of any other file
or run is refused before the registry is touched.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from rosetta.config import Config
from rosetta.fsutil import sha256_file
from rosetta.layout import RunLayout
from rosetta.registry.refs import RegistryError


class EvidenceError(RegistryError):
    """Scores, a parity report or a run record that are not about the file being registered."""


def _short(digest: object) -> str:
    return str(digest)[:12] if digest else "none recorded"


def check_evidence(onnx: Path, onnx_sha256: str, onnx_run_id: str | None, parity_path: Path,
                   parity: Mapping[str, Any], metrics_path: Path, metrics: Mapping[str, Any], run_path: Path,
                   run_id: str | None) -> None:
    """Refuse, in one sentence, a parity report of another file than ``onnx`` (sha256 ``onnx_sha256``),
    benchmark metrics of a model that is neither ``onnx`` nor the checkpoint it was exported from, and a
    training run record of another run than the one ``onnx`` names (``onnx_run_id``)."""
    if parity.get("onnx_sha256") != onnx_sha256:
        raise EvidenceError(
            f"{parity_path}: the parity report is about another ONNX file (sha256 {_short(parity.get('onnx_sha256'))}),"
            f" not {onnx} (sha256 {_short(onnx_sha256)}); export the model again (`rosetta export`) to gate this "
            "file, or give its own report with --parity")
    model = metrics.get("model") if isinstance(metrics.get("model"), Mapping) else {}
    scored = model.get("sha256")
    if scored not in (onnx_sha256, parity.get("checkpoint_sha256")):
        raise EvidenceError(
            f"{metrics_path}: the benchmark metrics score another model (sha256 {_short(scored)}), neither {onnx} "
            f"nor the checkpoint it was exported from (sha256 {_short(parity.get('checkpoint_sha256'))}); evaluate "
            "this model (`rosetta evaluate --out DIR`), or give its own metrics with --metrics")
    if run_id != onnx_run_id:
        raise EvidenceError(
            f"{run_path}: the run record names MLflow run {run_id}, but {onnx} was trained in run {onnx_run_id}; "
            "give that run's run.json with --run-json")


def read_json(path: Path, what: str, fix: str) -> dict:
    if not path.is_file():
        raise RegistryError(f"{path}: {what} not found; {fix}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise RegistryError(f"{path}: {what} is not valid JSON; {fix}") from None
    if not isinstance(data, dict):
        raise RegistryError(f"{path}: {what} is not a JSON object; {fix}")
    return data


def pipeline_inputs(cfg: Config, onnx: str | None = None, parity: str | None = None, metrics: str | None = None,
                    run_json: str | None = None) -> tuple[Path, dict, dict, str | None]:
    """(onnx, parity report, metrics, run id) from the files the export, evaluate and train stages write (or those
    named), each checked to be about that ONNX file and its run (``check_evidence``)."""
    from rosetta_infer.onnx_runtime import onnx_model_info

    runs = RunLayout.from_config(cfg)
    onnx_path = Path(onnx) if onnx else runs.onnx
    parity_path = Path(parity) if parity else runs.parity
    metrics_path = Path(metrics) if metrics else runs.eval_metrics
    run_path = Path(run_json) if run_json else runs.run_json
    run = read_json(run_path, "the training run record", "run the train stage (`dvc repro train`) first")
    report = read_json(parity_path, "the parity report", "run `rosetta export` (or `dvc repro export`) first")
    scores = read_json(metrics_path, "the benchmark metrics", "run the evaluate stage (`dvc repro evaluate`) first")
    if not onnx_path.is_file():
        raise RegistryError(f"{onnx_path}: ONNX model not found; run `rosetta export` (or `dvc repro export`) first")
    check_evidence(onnx_path, sha256_file(onnx_path), onnx_model_info(onnx_path).get("run_id"), parity_path, report,
                   metrics_path, scores, run_path, run.get("run_id"))
    return onnx_path, report, scores, run.get("run_id")

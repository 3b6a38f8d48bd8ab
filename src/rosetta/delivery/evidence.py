"""What binds a registration's evidence to the file registered: the parity report names the ONNX file it gated,
the checkpoint it came from and their training run, the benchmark metrics name the file they scored, and the
ONNX file names its run. Evidence of any other file or run is refused before the registry is touched.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from rosetta.errors import RosettaError


class EvidenceError(RosettaError):
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

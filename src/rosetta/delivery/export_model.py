"""The one door of the ``export`` stage and ``rosetta export``: a checkpoint to its gated ONNX file and, where
asked, its gated int8 model, with the pipeline's paths wherever the caller names none."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from rosetta.config import Config
from rosetta.delivery.export import GateReport, export_checkpoint
from rosetta.delivery.int8 import export_int8
from rosetta.layout import RunLayout
from rosetta_infer.onnx_runtime import int8_path


def export_model(cfg: Config, checkpoint: str | Path | None = None, out: Path | None = None,
                 parity_json: Path | None = None, data_dir: str | Path | None = None, int8: bool = False,
                 int8_json: Path | None = None,
                 benchmarks: Sequence[Path] | None = None) -> list[tuple[Path, GateReport]]:
    """``checkpoint`` (by default the pipeline's best.pt) exported to ``out`` (``runs/export/model.onnx``), gated
    on ``data_dir`` (the validation split) with the report in ``parity_json`` (``parity.json``); with ``int8`` or
    ``export.int8`` also its int8 model, gated on ``benchmarks`` (the scored sets), reported in ``int8_json``
    (``int8.json``). Returns each file written with its gate's report; a failed gate raises ``ExportError``."""
    runs = RunLayout.from_config(cfg)
    out = out or runs.onnx
    written: list[tuple[Path, GateReport]] = [
        (out, export_checkpoint(checkpoint or runs.best_checkpoint, out, cfg, parity_json or runs.parity, data_dir))]
    if int8 or cfg.export.int8:
        written.append((int8_path(out), export_int8(out, cfg, int8_json or runs.int8_report, data_dir, benchmarks)))
    return written

"""The int8 model (``rosetta export --int8``, ``export.int8``): the gated float ONNX file statically quantized
(QDQ, calibrated on validation images) into ``model.int8.onnx`` beside it, kept only when its own gate passes:
the same text as the float model on the validation images and at most ``export.int8_max_accuracy_drop`` lost on
every benchmark set the pipeline scores.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from rosetta.config import Config
from rosetta.delivery.export import (ExportError, GateReport, compare, parity_images, publish_gated,
                                     validation_dir)
from rosetta.evaluation.evaluate import set_accuracies
from rosetta.evaluation.sets import scored_sets
from rosetta_infer.onnx_runtime import INPUT_NAME, META_MODEL, int8_path, load_onnx_recognizer


@dataclass
class Int8Report(GateReport):
    samples: int = 0  # validation images whose texts are compared with the float model's
    calibration_images: int = 0
    same_text: float = float("nan")
    accuracy: dict = field(default_factory=dict)  # set -> {"fp32", "int8", "drop"} (fractions)
    limits: dict = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return self._json("same_text")

    def summary(self) -> str:
        drops = ", ".join(f"{name} {a['fp32']:.4f} -> {a['int8']:.4f}" for name, a in self.accuracy.items())
        head = (f"int8 on {self.samples} validation images: same text {self.same_text:.2%} as the float model; "
                f"accuracy {drops}")
        return head + ("" if self.passed else "; FAILED: " + "; ".join(self.failures))


def quantize_int8(fp32_path: Path, out: Path, batches: Sequence[np.ndarray]) -> Path:
    """Statically quantize ``fp32_path`` to ``out`` (QDQ: 8-bit weights per channel, 8-bit activations with
    ranges measured on ``batches``), keeping its metadata."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quant_pre_process, quantize_static)

    class Batches(CalibrationDataReader):
        def __init__(self):
            self._it = iter(batches)

        def get_next(self):
            batch = next(self._it, None)
            return None if batch is None else {INPUT_NAME: batch}

    with tempfile.TemporaryDirectory(prefix="rosetta-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared))  # folds and fuses first, so ranges are the fused ones'
        # reduce_range (7-bit weights): AVX2 without VNNI saturates the u8 x s8 products of full 8-bit weights,
        # which costs agreement with the float model; u8 weights do not saturate but run slower than the float
        # model on AVX2, where u8 x s8 keeps its speed (docs/performance.md).
        quantize_static(str(prepared), str(out), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    source = onnx.load(str(fp32_path), load_external_data=False)
    proto = onnx.load(str(out))
    del proto.metadata_props[:]
    for entry in source.metadata_props:
        value = entry.value
        if entry.key == META_MODEL:
            value = json.dumps({**json.loads(value), "precision": "int8"})
        proto.metadata_props.add(key=entry.key, value=value)
    onnx.save(proto, str(out))
    return out


def int8_gate(fp32_path: Path, int8_file: Path, images: Sequence[Image.Image], benchmarks: Sequence[Path],
              cfg: Config) -> Int8Report:
    """Compare ``int8_file`` with the float model ``fp32_path``: the same text on ``images`` (validation) and the
    accuracy of each benchmark set below ``benchmarks``."""
    report = Int8Report(limits={"min_same_text": cfg.export.int8_min_same_text,
                                "max_accuracy_drop": cfg.export.int8_max_accuracy_drop})
    fp32 = load_onnx_recognizer(fp32_path, cfg.export.batch_size, cfg.eval.threads)
    int8 = load_onnx_recognizer(int8_file, cfg.export.batch_size, cfg.eval.threads)
    report.samples = len(images)
    _, report.same_text, _ = compare(fp32.probs_fn, int8.probs_fn, fp32, images)
    if report.same_text < cfg.export.int8_min_same_text:
        report.failures.append(f"same text as the float model on {report.same_text:.2%} of the validation images, "
                               f"below export.int8_min_same_text {cfg.export.int8_min_same_text:g}")
    accuracy = set_accuracies({"fp32": fp32, "int8": int8}, list(benchmarks), cfg.data.workers)
    for name, before in accuracy["fp32"].items():
        after = accuracy["int8"][name]
        report.accuracy[name] = {"fp32": before, "int8": after, "drop": before - after}
        if before - after > cfg.export.int8_max_accuracy_drop + 1e-12:
            report.failures.append(f"{name} accuracy falls from {before:.4f} to {after:.4f}, more than "
                                   f"export.int8_max_accuracy_drop {cfg.export.int8_max_accuracy_drop:g}")
    return report


def int8_benchmarks(cfg: Config) -> list[Path]:
    """The sets the pipeline scores (``scored_sets``), those that exist."""
    sets = scored_sets(cfg)
    folders = sets.folders  # found by walking the benchmark folders
    if not folders:
        raise ExportError(f"{sets.benchmarks}: no benchmark set to check the int8 model on; run `dvc repro "
                          "evaluate` first or pass --benchmarks")
    return folders


def export_int8(fp32_path: str | Path, cfg: Config, report_json: str | Path | None = None,
                data_dir: str | Path | None = None, benchmarks: Sequence[Path] | None = None,
                calibration: Sequence[Image.Image] | None = None) -> Int8Report:
    """Quantize the gated float model ``fp32_path`` to ``int8_path(fp32_path)`` and gate it (``int8_gate``);
    calibrated on ``calibration``, by default the first ``export.parity_samples`` validation images. Raises
    ``ExportError`` when the gate fails, leaving an earlier int8 file of the same float model as it was."""
    fp32_path = Path(fp32_path)
    out = int8_path(fp32_path)
    recognizer = load_onnx_recognizer(fp32_path, cfg.export.batch_size)
    images = parity_images(Path(data_dir) if data_dir else validation_dir(cfg), recognizer.charset)
    calibration = list(calibration) if calibration is not None else images[:cfg.export.parity_samples]
    benchmarks = list(benchmarks) if benchmarks is not None else int8_benchmarks(cfg)
    batches = [recognizer.batch_tensor(calibration[s:s + cfg.export.batch_size])
               for s in range(0, len(calibration), cfg.export.batch_size)]

    def gate(tmp: Path) -> Int8Report:
        report = int8_gate(fp32_path, tmp, images, benchmarks, cfg)
        report.calibration_images = len(calibration)
        return report

    return publish_gated(out, lambda tmp: quantize_int8(fp32_path, tmp, batches), gate, report_json,
                          "the int8 model failed its gate")

"""ONNX export of a checkpoint and the parity gate that must pass before the file is used.

The exported contract is PaddleOCR's: input ``x`` [batch, 3, 32, width] with dynamic batch and width,
output probabilities [batch, T, classes]. The gate checks the file (checker, opset, contract,
metadata) and runs it through ONNX Runtime against PyTorch on validation images; a file that fails
is never written, so an ``.onnx`` at the output path has always passed (an earlier one stays). The int8 model (``rosetta.delivery.int8``)
passes a gate of its own through the same steps (``publish_gated``).
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import numpy as np
import torch
from PIL import Image

from rosetta.config import Config, ExportConfig, ModelConfig
from rosetta.errors import RosettaError
from rosetta.fsutil import sha256_file, write_json
from rosetta.layout import DataLayout
from rosetta.recognition.checkpoint import load_for_inference
from rosetta_infer.charset import Charset
from rosetta_infer.onnx_runtime import (INPUT_NAME, META_CHARSET, META_MODEL, META_PREPROCESS, OUTPUT_NAME,
                                              int8_path, onnx_session, ort_probs_fn, session_metadata)
from rosetta_infer.postprocess import CTCLabelDecode
from rosetta_infer.preprocess import preprocess_spec
from rosetta_infer.recognizer import ProbsFn, Recognizer, torch_recognizer

MIN_OPSET = 17


class ExportError(RosettaError):
    """An export refused by the parity gate, or one that cannot start; the message says why."""


class GateReport:
    """A gate's report: it passed when it lists no failure; JSON-ready with NaN figures as null."""

    failures: list[str]

    @property
    def passed(self) -> bool:
        return not self.failures

    def _json(self, *figures: str) -> dict:
        d = {**asdict(self), "passed": self.passed}
        for k in figures:
            d[k] = d[k] if np.isfinite(d[k]) else None
        return d


_R = TypeVar("_R", bound=GateReport)


@dataclass
class ParityReport(GateReport):
    samples: int = 0
    max_abs_diff: float = float("nan")
    same_text: float = float("nan")
    batch_widths: list[int] = field(default_factory=list)
    opset: int | None = None
    provider: str | None = None  # the ONNX Runtime execution provider that ran the file
    limits: dict = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    # What the report is about: registration refuses it beside any other file (rosetta.registry.evidence).
    onnx_sha256: str | None = None
    checkpoint_sha256: str | None = None
    run_id: str | None = None

    def to_dict(self) -> dict:
        """JSON-ready: a figure never computed (NaN) or unbounded (a shape mismatch) becomes null."""
        return self._json("max_abs_diff", "same_text")

    def summary(self) -> str:
        head = (f"parity on {self.samples} images: max |p_onnx - p_torch| = {self.max_abs_diff:.3g}, "
                f"same text {self.same_text:.2%}")
        return head + ("" if self.passed else "; FAILED: " + "; ".join(self.failures))


def metadata_props(charset: Charset, model_cfg: ModelConfig, source: str = "",
                   run_id: str | None = None) -> dict[str, str]:
    """What a runtime needs besides the graph: the charset, the preprocessing and the model's outline, with
    the MLflow training run (``run_id``) that results about the file nest under."""
    model = {"algorithm": "Rosetta", "backbone": model_cfg.backbone.key, "neck": model_cfg.neck,
             "head": model_cfg.head, "num_classes": charset.num_classes, "blank": 0,
             "output": "softmax probabilities [batch, T, classes]",
             "postprocess": "greedy CTC: argmax, merge repeats, drop blank; confidence = mean kept max prob",
             "source": source, "run_id": run_id}
    return {META_CHARSET: json.dumps(charset.to_dict()),
            META_PREPROCESS: json.dumps(preprocess_spec(model_cfg.image_height, model_cfg.image_width)),
            META_MODEL: json.dumps(model)}


def write_onnx(model: torch.nn.Module, metadata: dict[str, str], path: Path, opset: int,
               height: int = 32, width: int = 100) -> Path:
    """Export ``model`` (eval mode: probabilities) to ``path`` with dynamic batch and width."""
    import onnx

    model = model.eval().cpu()
    dummy = torch.zeros(2, 3, height, width)
    # The TorchScript exporter, not dynamo: it writes exactly the requested opset (dynamo cannot take
    # MobileNetV3 down to 17 and silently keeps 18), names the time axis, and is much faster.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "legacy exporter": chosen on purpose, above
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the neck's height check; height is fixed
        torch.onnx.export(model, (dummy,), str(path), dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], do_constant_folding=True,
                          dynamic_axes={INPUT_NAME: {0: "batch", 3: "width"},
                                        OUTPUT_NAME: {0: "batch", 1: "time"}})
    proto = onnx.load(str(path))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    return path


def check_file(path: Path, charset: Charset, min_opset: int) -> tuple[int | None, list[str]]:
    """(opset, failures) of the structural checks: checker, opset, input/output contract, metadata."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # checker raises ValidationError, shape inference others
        return None, [f"onnx.checker rejects the file ({str(exc).strip().splitlines()[0]})"]
    proto = onnx.load(str(path), load_external_data=False)
    failures: list[str] = []
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or opset < min_opset:
        failures.append(f"opset {opset} is below {min_opset}")

    def dims(value_info) -> list:
        return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]

    inputs = {i.name: dims(i) for i in proto.graph.input}
    x = inputs.get(INPUT_NAME)
    if x is None or len(x) != 4 or x[1:3] != [3, 32] or not all(isinstance(d, str) for d in (x[0], x[3])):
        failures.append(f"input {INPUT_NAME!r} is {x}, not [dynamic batch, 3, 32, dynamic width]")
    outputs = {o.name: dims(o) for o in proto.graph.output}
    y = outputs.get(OUTPUT_NAME)
    if y is None or len(y) != 3 or y[2] != charset.num_classes:
        failures.append(f"output {OUTPUT_NAME!r} is {y}, not [batch, T, {charset.num_classes}]")
    props = {p.key: p.value for p in proto.metadata_props}
    if props.get(META_CHARSET) != json.dumps(charset.to_dict()):
        failures.append(f"metadata {META_CHARSET!r} does not hold the checkpoint's charset")
    return opset, failures


def parity_images(data_dir: Path, charset: Charset, limit: int | None = None) -> list[Image.Image]:
    """The first ``limit`` images (None: all) of the validation LMDB(s) at ``data_dir``."""
    from rosetta.data.dataset import LmdbDataset

    dataset = LmdbDataset(data_dir, charset)
    if len(dataset) == 0:
        raise ExportError(f"{data_dir}: the validation split holds no usable sample; the parity gate needs "
                          "images (run `dvc repro validate`)")
    return [dataset[i][0] for i in range(len(dataset) if limit is None else min(limit, len(dataset)))]


def compare(torch_fn: ProbsFn, onnx_fn: ProbsFn, recognizer: Recognizer,
            images: Sequence[Image.Image]) -> tuple[float, float, list[int]]:
    """(max abs difference of probabilities, share of identical decoded texts, batch widths)."""
    max_diff, same, widths = 0.0, 0, []
    for s in range(0, len(images), recognizer.batch_size):
        batch = recognizer.batch_tensor(images[s:s + recognizer.batch_size])
        p_torch, p_onnx = torch_fn(batch), onnx_fn(batch)
        if p_torch.shape != p_onnx.shape:
            return float("inf"), 0.0, widths + [batch.shape[3]]
        widths.append(int(batch.shape[3]))
        max_diff = max(max_diff, float(np.abs(p_torch - p_onnx).max()))
        decode = CTCLabelDecode(recognizer.charset)
        texts_torch, texts_onnx = decode(p_torch), decode(p_onnx)
        same += sum(a[0] == b[0] for a, b in zip(texts_torch, texts_onnx))
    return max_diff, same / max(1, len(images)), widths


def parity_gate(onnx_path: Path, model: torch.nn.Module, charset: Charset, model_cfg: ModelConfig,
                images: Sequence[Image.Image], export_cfg: ExportConfig) -> ParityReport:
    """Check ``onnx_path`` against ``model`` (eval mode) on ``images``; never raises for a bad file."""
    report = ParityReport(limits={"max_abs_diff": export_cfg.max_abs_diff,
                                  "min_same_text": export_cfg.min_same_text,
                                  "min_opset": max(MIN_OPSET, export_cfg.opset)})
    report.opset, report.failures = check_file(onnx_path, charset, report.limits["min_opset"])
    if report.failures:
        return report
    try:
        session = onnx_session(onnx_path)
        session_metadata(session, onnx_path)
        report.provider = session.get_providers()[0]
    except RosettaError as exc:
        report.failures.append(str(exc))
        return report
    recognizer = torch_recognizer(model, charset, model_cfg.image_height, model_cfg.image_width,
                                  export_cfg.batch_size)
    report.samples = len(images)
    report.max_abs_diff, report.same_text, report.batch_widths = compare(
        recognizer.probs_fn, ort_probs_fn(session), recognizer, images)
    if not report.max_abs_diff <= export_cfg.max_abs_diff:  # also catches NaN
        report.failures.append(f"max abs difference {report.max_abs_diff:.3g} exceeds export.max_abs_diff "
                               f"{export_cfg.max_abs_diff:g}")
    if report.same_text < export_cfg.min_same_text:
        report.failures.append(f"same-text share {report.same_text:.4f} is below export.min_same_text "
                               f"{export_cfg.min_same_text:g}")
    return report


def publish_gated(out: Path, write: Callable[[Path], object], gate: Callable[[Path], _R],
                   report_json: str | Path | None, failure: str,
                   on_report: Callable[[_R], None] | None = None,
                   on_publish: Callable[[], None] | None = None) -> _R:
    """Write ``out``'s temporary, gate it, hand the report to ``on_report``; ``out`` and ``report_json`` are
    replaced only when the gate passed (``on_publish`` runs just before), and no temporary stays behind either
    way. A gate that fails leaves an earlier ``out`` and its report as they were, a pair that still belongs
    together: the sentence says so."""
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        write(tmp)
        report = gate(tmp)
        if on_report is not None:
            on_report(report)
        if not report.passed:
            kept = f"; the earlier {out.name} there was kept as it was" if out.exists() else ""
            raise ExportError(f"{out}: {failure} ({'; '.join(report.failures)}); nothing was written{kept}")
        if on_publish is not None:
            on_publish()
        if report_json is not None:
            write_json(Path(report_json), report.to_dict())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return report


def validation_dir(cfg: Config) -> Path:
    """The validation split of the first training source that has one."""
    layout = DataLayout.from_config(cfg)
    splits = layout.validation_splits(cfg.data.sources)
    if splits:
        return splits[0]
    raise ExportError(f"{layout.lmdb(cfg.data.sources[0]) / 'val'}: no validation split for the parity gate; "
                      "run `dvc repro validate` first")


def _log_export(cfg: Config, checkpoint: str | Path, named_run: str | None, report: ParityReport, out: Path) -> None:
    """The gate's figures and report as a run ``export`` nested under the checkpoint's training run, failed
    when the gate failed; nothing when the checkpoint names no run the store holds."""
    from rosetta.tracking.store import Tracker, parent_run

    parent = parent_run(cfg, checkpoint, None, named_run)
    if parent is None:
        return
    run = Tracker(cfg, name="export", parent_id=parent, tags={"onnx_file": str(out)})
    run.log_metrics({f"parity/{k}": v for k, v in (("max_abs_diff", report.max_abs_diff),
                                                    ("same_text", report.same_text)) if np.isfinite(v)})
    run.client.log_dict(run.run_id, report.to_dict(), "export/parity.json")
    run.end("FINISHED" if report.passed else "FAILED")


def export_checkpoint(checkpoint: str | Path, out: str | Path, cfg: Config, parity_json: str | Path | None = None,
                      data_dir: str | Path | None = None) -> ParityReport:
    """Export ``checkpoint`` to ``out`` and gate it; the report goes to ``parity_json``. When it passes, an int8
    model left beside ``out`` by an earlier export is removed: it belongs to another model (``export_int8`` makes
    one).

    The model, charset and image size come from the checkpoint; the gate's settings and the
    validation data from ``cfg``. Raises ``ExportError`` when the gate fails, leaving an earlier ``out`` (and
    its int8 model and report) as they were. The report names the file it measured, the checkpoint and its
    training run (registration refuses it beside another file); the file names the run too, and the gate is
    logged as a run nested under it.
    """
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise ExportError(f"{out}: the output file must end in .onnx")
    loaded = load_for_inference(checkpoint)
    model, charset, architecture = loaded.model, loaded.charset, loaded.architecture
    images = parity_images(Path(data_dir) if data_dir else validation_dir(cfg), charset,
                           cfg.export.parity_samples)
    out.parent.mkdir(parents=True, exist_ok=True)
    metadata = metadata_props(charset, architecture, Path(checkpoint).name, loaded.run_id)
    source_sha256 = sha256_file(Path(checkpoint))

    def gate(tmp: Path) -> ParityReport:
        report = parity_gate(tmp, model, charset, architecture, images, cfg.export)
        report.onnx_sha256, report.checkpoint_sha256, report.run_id = sha256_file(tmp), source_sha256, loaded.run_id
        return report

    return publish_gated(
        out, lambda tmp: write_onnx(model, metadata, tmp, cfg.export.opset, architecture.image_height,
                                    architecture.image_width),
        gate, parity_json,
        "the ONNX export failed the parity gate",
        lambda report: _log_export(cfg, checkpoint, loaded.run_id, report, out),
        lambda: int8_path(out).unlink(missing_ok=True))  # an int8 model of the file this one replaces

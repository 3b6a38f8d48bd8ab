"""The int8 model: quantized from a gated float export, kept only when its own gate passes (same text as the
float model on the validation images, accuracy kept on every benchmark set), refused with one sentence and
no file otherwise."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from model_fixtures import config
from rosetta.delivery.export import ExportError, export_checkpoint
from rosetta.delivery.int8 import export_int8
from rosetta.registry.refs import RegistryError
from rosetta.registry.versions import register_model
from rosetta.errors import RosettaError
from rosetta_infer.onnx_runtime import int8_path, load_onnx_recognizer, onnx_model_info
from rosetta_infer.pyfunc import ONNX_ARTIFACT, ONNX_INT8_ARTIFACT, OnnxRecognizerModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def fp32(tmp_path_factory, tiny_data, untrained_model):
    """The session's untrained model and its export, copied: a test here exports it again in place."""
    tmp = tmp_path_factory.mktemp("int8")
    cfg = config(f"data.root={tiny_data}", "export.parity_samples=12", "export.batch_size=4", "data.real_benchmarks=",
                 "eval.threads=1")
    shutil.copy(untrained_model.best, tmp / "best.pt")
    shutil.copy(untrained_model.onnx, tmp / "model.onnx")
    return cfg, tmp / "model.onnx"


def test_int8_refused_when_calibration_breaks_it(fp32, tmp_path):
    cfg, onnx_path = fp32
    blank = [Image.new("RGB", (100, 32), (255, 255, 255))]  # one blank image: every activation range collapses
    with pytest.raises(ExportError) as err:
        export_int8(onnx_path, cfg, tmp_path / "int8.json", calibration=blank)
    message = str(err.value)
    assert message.startswith(f"{int8_path(onnx_path)}: the int8 model failed its gate (")
    assert "export.int8_min_same_text" in message and message.endswith("nothing was written")
    assert "\n" not in message
    assert not int8_path(onnx_path).exists()
    assert [p.name for p in onnx_path.parent.iterdir() if "int8" in p.name] == []  # no temporary left either
    assert not (tmp_path / "int8.json").exists()  # a report is written with the model it is about, or not at all


def test_int8_written_beside_the_float_model_when_its_gate_passes(fp32, tmp_path):
    # An untrained model's texts hang on margins far below int8's rounding (0 % same text), and a model
    # trained in seconds is no better: the limits are opened here, the gate's figures still checked.
    cfg, onnx_path = fp32
    cfg = replace(cfg, export=replace(cfg.export, int8_min_same_text=0.0, int8_max_accuracy_drop=1.0))
    report = export_int8(onnx_path, cfg, tmp_path / "int8.json")
    out = int8_path(onnx_path)
    assert report.passed and out.is_file() and out.name == "model.int8.onnx"
    assert report.calibration_images == 12 and report.samples == 12 and set(report.accuracy) == {"synth_test"}
    assert 0 <= report.same_text <= 1 and json.loads((tmp_path / "int8.json").read_text())["passed"]
    assert onnx_model_info(out)["precision"] == "int8"
    # int8 weights, not float ones: a quarter of the bytes, plus the scales and what stays float (the head's bias,
    # the first layers of a small model), well under two thirds of the float file for any backbone
    assert out.stat().st_size < onnx_path.stat().st_size * 2 / 3
    # Serving runs the int8 file when serve.precision (the registered model's model_config) asks for it.
    served = OnnxRecognizerModel()
    served.load_context(SimpleNamespace(artifacts={ONNX_ARTIFACT: str(onnx_path), ONNX_INT8_ARTIFACT: str(out)},
                                        model_config={"precision": "int8"}))
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 32, 100)).astype(np.float32)
    np.testing.assert_array_equal(served._recognizer.probs_fn(x), load_onnx_recognizer(out).probs_fn(x))
    assert not np.array_equal(served._recognizer.probs_fn(x), load_onnx_recognizer(onnx_path).probs_fn(x))
    # A new float export makes the old int8 model stale: it goes.
    export_checkpoint(Path(onnx_path).parent / "best.pt", onnx_path, cfg)
    assert not out.exists()


def test_int8_serving_without_an_int8_file_is_refused(fp32):
    cfg, onnx_path = fp32
    int8_cfg = replace(cfg, serve=replace(cfg.serve, precision="int8"))
    # Without an int8 model beside the float one, registering for int8 serving stops before anything is logged.
    with pytest.raises(RegistryError, match=r"serve.precision is int8 but there is no int8 model"):
        register_model(int8_cfg, onnx_path, {"passed": True}, {"accuracy_total": 0.5}, None, [])
    model = OnnxRecognizerModel()
    with pytest.raises(RosettaError, match="holds no int8 ONNX file"):
        model.load_context(SimpleNamespace(artifacts={ONNX_ARTIFACT: str(onnx_path)},
                                           model_config={"precision": "int8"}))

"""ONNX export: the dynamic-shape contract, the metadata, the parity gate (passing and refusing) and
prediction through ONNX Runtime matching PyTorch."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from model_fixtures import config, png_bytes, untrained_checkpoint, word_image
from rosetta.config import ConfigError
from rosetta.delivery import export as export_mod
from rosetta.delivery.export import ExportError, export_checkpoint
from rosetta.fsutil import sha256_file
from rosetta.recognition.checkpoint import load_for_inference
from rosetta.recognition.model_file import load_recognizer
from rosetta_infer.onnx_runtime import load_onnx_recognizer, onnx_session

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")

def _cfg(tiny_data: Path, *overrides: str):
    return config(f"data.root={tiny_data}", "export.parity_samples=12", "export.batch_size=4", *overrides)


@pytest.fixture(scope="module")
def exported(untrained_model):
    """An untrained MobileNetV3 checkpoint and its export (the session's), for the tests that only read them."""
    return untrained_model.best, untrained_model.onnx


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


@pytest.mark.parametrize("backbone", ["mobilenet_v3", "resnet34_vd"])
def test_export_is_dynamic_checked_and_within_parity(tmp_path, tiny_data, backbone):
    cfg = _cfg(tiny_data, f"model.backbone={backbone}")
    ckpt = untrained_checkpoint(tmp_path / "best.pt", cfg)
    report = export_checkpoint(ckpt, tmp_path / "model.onnx", cfg, tmp_path / "parity.json")

    proto = onnx.load(str(tmp_path / "model.onnx"))
    onnx.checker.check_model(proto, full_check=True)
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]
    (x,), (y,) = proto.graph.input, proto.graph.output
    assert x.name == "x" and _dims(x) == ["batch", 3, 32, "width"]
    assert _dims(y) == ["batch", "time", 37]

    parity = json.loads((tmp_path / "parity.json").read_text())
    assert parity["passed"] and report.passed
    assert parity["samples"] == 12
    assert parity["max_abs_diff"] <= cfg.export.max_abs_diff
    assert parity["same_text"] == 1.0
    assert set(parity["batch_widths"]) == {100}  # the inference contract's one width, whatever the images
    # what it is about: the file written and the checkpoint it came from (registration reads them)
    assert parity["onnx_sha256"] == sha256_file(tmp_path / "model.onnx")
    assert parity["checkpoint_sha256"] == sha256_file(ckpt)

    session = onnx_session(tmp_path / "model.onnx")
    model = load_for_inference(ckpt).model
    for shape, steps in [((1, 3, 32, 100), 25), ((2, 3, 32, 320), 80), ((3, 3, 32, 57), None)]:
        x = np.random.default_rng(0).uniform(-1, 1, size=shape).astype(np.float32)  # the preprocessed range
        probs = session.run(None, {"x": x})[0]
        with torch.inference_mode():
            expected = model(torch.from_numpy(x)).numpy()
        assert probs.shape == expected.shape == (shape[0], steps or expected.shape[1], 37)
        np.testing.assert_allclose(probs, expected, rtol=0, atol=cfg.export.max_abs_diff)
        np.testing.assert_allclose(probs.sum(axis=2), 1.0, atol=1e-5)  # probabilities, not logits


def test_metadata_alone_runs_the_file_like_pytorch(tmp_path, exported):
    ckpt, onnx_path = exported
    alone = tmp_path / "elsewhere" / "rosetta.onnx"
    alone.parent.mkdir()
    shutil.copy(onnx_path, alone)  # no checkpoint, no params next to it

    meta = onnx_session(alone).get_modelmeta().custom_metadata_map
    assert json.loads(meta["rosetta.charset"])["characters"] == "0123456789abcdefghijklmnopqrstuvwxyz"
    assert json.loads(meta["rosetta.preprocess"])["mean"] == 0.5
    assert json.loads(meta["rosetta.model"])["backbone"] == "mobilenet_v3"

    rng = np.random.default_rng(7)
    images = [word_image(w, rng) for w in ["joint", "a", "benchmark", "42", "street"]]
    by_onnx = load_recognizer(alone, batch_size=2).recognize(images)
    by_torch = load_recognizer(ckpt, batch_size=2).recognize(images)
    assert [t for t, _ in by_onnx] == [t for t, _ in by_torch]
    assert [c for _, c in by_onnx] == pytest.approx([c for _, c in by_torch], abs=1e-6)
    assert load_onnx_recognizer(alone).charset.num_classes == 37


def _tamper_weights(path: Path) -> None:
    """Perturb the head's weight (the last MatMul's initializer), as a corrupted file would be."""
    proto = onnx.load(str(path))
    inits = {t.name: t for t in proto.graph.initializer}
    head = next(n for n in reversed(proto.graph.node) if n.op_type in ("MatMul", "Gemm"))
    weight = inits[next(i for i in head.input if i in inits)]
    arr = onnx.numpy_helper.to_array(weight).copy()
    arr += np.random.default_rng(0).normal(0, 1.0, arr.shape).astype(arr.dtype)
    weight.CopyFrom(onnx.numpy_helper.from_array(arr, weight.name))
    onnx.save(proto, str(path))


@pytest.mark.parametrize("breakage, expected", [
    ("weights", "max abs difference"),
    ("opset", "opset 16 is below 17"),
])
def test_gate_refuses_a_broken_export_and_keeps_the_earlier_file(tmp_path, tiny_data, monkeypatch, exported, breakage,
                                                                 expected):
    """A failed export writes no model and no report: the file an earlier export left and its parity.json stay as
    they were (the sentence says so), a pair registration still accepts; the failure is in the sentence."""
    ckpt = exported[0]
    cfg = _cfg(tiny_data)
    real_write = export_mod.write_onnx

    def broken_write(model, metadata, path, opset, height=32, width=100):
        if breakage == "opset":
            return real_write(model, metadata, path, 16, height, width)
        real_write(model, metadata, path, opset, height, width)
        _tamper_weights(path)
        return path

    monkeypatch.setattr(export_mod, "write_onnx", broken_write)
    out = tmp_path / "out" / "model.onnx"
    out.parent.mkdir()
    out.write_bytes(b"an older export")
    with pytest.raises(ExportError, match=expected) as failed:
        export_checkpoint(ckpt, out, cfg, tmp_path / "out" / "parity.json")
    assert str(failed.value).endswith("nothing was written; the earlier model.onnx there was kept as it was")
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.onnx"]
    assert out.read_bytes() == b"an older export"


def test_opset_below_17_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^export\.opset: 16 must be at least 17$"):
        config("export.opset=16")


def test_cli_export_then_predict_onnx_matches_pytorch(tmp_path, tiny_data, exported, rosetta_cli):
    ckpt = exported[0]
    out = tmp_path / "cli.onnx"
    done = rosetta_cli("export", "--model", str(ckpt), "--out", str(out), "--parity", str(tmp_path / "p.json"),
                    "-c", str(ROOT / "params.yaml"), "-o", f"data.root={tiny_data}", "-o", "export.parity_samples=8")
    assert done.returncode == 0, done.stderr
    assert "parity on 8 images" in done.stdout and out.is_file()

    rng = np.random.default_rng(3)
    for i, word in enumerate(["joint", "hotel", "b52"]):
        (tmp_path / f"word_{i}.png").write_bytes(png_bytes(word_image(word, rng)))
    images = [str(tmp_path / f"word_{i}.png") for i in range(3)]
    by_onnx = rosetta_cli("predict", "--model", str(out), *images, "--json")
    by_torch = rosetta_cli("predict", "--model", str(ckpt), *images, "--json")
    assert by_onnx.returncode == 0 and by_torch.returncode == 0, by_onnx.stderr + by_torch.stderr

    def parse(stdout: str) -> list[tuple[str, str, float]]:
        return [(row["image"], row["text"], row["confidence"]) for row in map(json.loads, stdout.splitlines())]

    onnx_rows, torch_rows = parse(by_onnx.stdout), parse(by_torch.stdout)
    assert [r[:2] for r in onnx_rows] == [r[:2] for r in torch_rows]
    assert [r[2] for r in onnx_rows] == pytest.approx([r[2] for r in torch_rows], abs=1e-4)


def test_cli_export_without_validation_data_is_one_sentence(tmp_path, exported, rosetta_cli):
    done = rosetta_cli("export", "--model", str(exported[0]), "--out", str(tmp_path / "m.onnx"),
                    "-c", str(ROOT / "params.yaml"), "-o", f"data.root={tmp_path / 'nowhere'}")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "no validation split for the parity gate" in done.stderr and not (tmp_path / "m.onnx").exists()

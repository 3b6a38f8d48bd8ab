"""What ships a model loads without the training schema: a checkpoint carries its weights, architecture, charset
and preprocessing, so renaming a training setting never orphans a model. ``fixtures/mv3_small_x035_9c82e05.pt``
is an untrained MobileNetV3 small x0.35 written by commit 9c82e05's own code (``config`` holding its whole params,
``train.mj_st_ratio`` and ``train.augment: false`` among them, and no ``architecture``); evaluation, prediction
and export must still read it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from model_fixtures import config, untrained_checkpoint
from rosetta.config import ConfigError, config_from_dict
from rosetta.delivery.export import export_checkpoint
from rosetta.errors import RosettaError
from rosetta.evaluation.evaluate import evaluate_benchmarks
from rosetta.recognition.checkpoint import (ARCHITECTURE_KEYS, load_checkpoint, load_for_inference,
                                            save_checkpoint)
from rosetta.recognition.model_file import load_recognizer
from rosetta.recognition.predict import predict_files
from rosetta_infer.onnx_runtime import load_onnx_recognizer

OLD = Path(__file__).parent / "fixtures" / "mv3_small_x035_9c82e05.pt"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_old_checkpoint_no_longer_fits_the_training_schema():
    # The point of the format: its params name settings that are gone, so building a Config from them fails.
    old = load_checkpoint(OLD)
    assert "architecture" not in old and old["config"]["train"]["mj_st_ratio"] == [0.5, 0.5]
    with pytest.raises(ConfigError, match="mj_st_ratio"):
        config_from_dict(old["config"])


def test_an_old_checkpoint_loads_for_inference():
    loaded = load_for_inference(OLD)
    assert (loaded.architecture.backbone.model_name, loaded.architecture.backbone.scale) == ("small", 0.35)
    assert loaded.charset.num_classes == 37 and loaded.run_id is None
    probs = loaded.model(torch.zeros(1, 3, 32, 100))
    assert probs.shape == (1, 25, 37)


def test_an_old_checkpoint_is_evaluated_predicted_and_exported(tmp_path, tiny_data, capsys):
    cfg = config(f"data.root={tiny_data}", f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
                 "export.parity_samples=12", "export.batch_size=4", "eval.batch_size=8")
    summary = evaluate_benchmarks(OLD, tiny_data / "lmdb" / "benchmarks", cfg)
    assert summary["count_total"] == 12

    _image().save(tmp_path / "word.png")
    assert predict_files(OLD, [str(tmp_path / "word.png")], batch_size=4) == 0
    assert capsys.readouterr().out.startswith(f"{tmp_path / 'word.png'}\t")

    report = export_checkpoint(OLD, tmp_path / "model.onnx", cfg, tmp_path / "parity.json")
    assert report.passed
    [(onnx_text, _)] = load_onnx_recognizer(tmp_path / "model.onnx", batch_size=4).recognize([_image()])
    [(torch_text, _)] = load_recognizer(OLD, batch_size=4).recognize([_image()])
    assert onnx_text == torch_text


def _image():
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (90, 30), "white")
    ImageDraw.Draw(img).text((4, 8), "exit", fill="black")
    return img


def test_a_checkpoint_carries_what_inference_needs_and_nothing_else_is_read(tmp_path):
    cfg = config("model.backbone.model_name=small", "model.backbone.scale=0.35")
    path = untrained_checkpoint(tmp_path / "best.pt", cfg)
    ckpt = load_checkpoint(path)
    assert set(ckpt) == {"format", "model", "architecture", "charset", "preprocess"}
    assert tuple(ckpt["architecture"]) == ARCHITECTURE_KEYS
    assert ckpt["preprocess"]["height"] == 32 and ckpt["preprocess"]["width"] == 100
    # A training extra that no longer parses (a renamed setting) changes nothing.
    save_checkpoint(path, {**{k: v for k, v in ckpt.items() if k != "format"}, "config": {"train": {"gone": 1}}})
    assert load_for_inference(path).architecture == load_for_inference(OLD).architecture


def test_a_checkpoint_asking_for_other_preprocessing_is_refused(tmp_path):
    ckpt = load_checkpoint(OLD)
    spec = json.loads(json.dumps(load_checkpoint(untrained_checkpoint(tmp_path / "new.pt", config()))["preprocess"]))
    spec["resize"] = "nearest"
    save_checkpoint(tmp_path / "odd.pt", {**{k: v for k, v in ckpt.items() if k != "format"}, "preprocess": spec})
    with pytest.raises(RosettaError, match="resize differ"):
        load_for_inference(tmp_path / "odd.pt")

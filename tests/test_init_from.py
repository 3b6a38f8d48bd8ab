"""``train.init_from``: training starts from the weights of a checkpoint or of a registered version (its training
run's best.pt), never its optimizer or data position; another backbone or charset is one sentence."""
from __future__ import annotations

import shutil

import pytest
import torch

from rosetta.errors import RosettaError
from rosetta.recognition.checkpoint import load_checkpoint
from rosetta.training.optim import build_trainable
from rosetta.training.pretrained import apply_pretrained, load_pretrained
from rosetta.training.trainer import run_training
from train_fixtures import tiny_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _same_weights(model: torch.nn.Module, state: dict) -> bool:
    return all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


@pytest.fixture
def trained(tmp_path, monkeypatch, tiny_data, tiny_run):
    """The params of a finished tiny run (``tiny_run``) and its best.pt copied out of the run folder, as a user
    keeps yesterday's model."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = tiny_config(tmp_path / "first", f"data.root={tiny_data}")
    kept = tmp_path / "kept" / "best.pt"
    kept.parent.mkdir()
    shutil.copy(tiny_run.best, kept)
    return cfg, kept


@pytest.mark.slow
def test_a_checkpoint_gives_its_weights_to_a_new_run(tmp_path, capsys, trained, tiny_data):
    _, kept = trained
    cfg = tiny_config(tmp_path / "second", f"data.root={tiny_data}", f"train.init_from={kept}", "train.max_steps=3")
    pretrained = load_pretrained(cfg)
    parts = build_trainable(cfg, 37, torch.device("cpu"), init=lambda m: apply_pretrained(m, pretrained))
    assert _same_weights(parts.model, load_checkpoint(kept)["model"])
    assert parts.optimizer.state_dict()["state"] == {}  # the optimizer starts fresh
    run_training(cfg)
    assert f"starting from the weights of {kept} (train.init_from)" in capsys.readouterr().out
    last = load_checkpoint(tmp_path / "second" / "runs" / "train" / "checkpoints" / "last.pt")
    assert last["fingerprint"]["init_sha256"] == pretrained.sha256 and last["step"] == 3


@pytest.mark.parametrize("override, message", [
    ("model.backbone.model_name=large", "is a {'name': 'MobileNetV3', 'model_name': 'small', 'scale': 0.35} model, "
                                        "not the configured {'name': 'MobileNetV3', 'model_name': 'large'"),
    ("model.backbone=resnet34_vd", "not the configured {'name': 'ResNet', 'layers': 34}; set model.backbone"),
    ("charset.use_space=true", "reads the charset '0123456789abcdefghijklmnopqrstuvwxyz', not the configured "
                               "'0123456789abcdefghijklmnopqrstuvwxyz '; set charset to match it"),
])
def test_a_model_of_another_backbone_or_charset_is_refused_in_one_sentence(tmp_path, trained, tiny_data,
                                                                           override, message):
    _, kept = trained
    cfg = tiny_config(tmp_path, f"data.root={tiny_data}", f"train.init_from={kept}", override)
    with pytest.raises(RosettaError) as exc:
        load_pretrained(cfg)
    assert message in str(exc.value) and str(exc.value).startswith(f"train.init_from: {kept} ")
    assert "\n" not in str(exc.value)


def test_a_missing_file_or_one_inside_the_run_folder_is_refused(tmp_path, trained, tiny_data):
    first, _ = trained
    with pytest.raises(RosettaError, match="train.init_from: nowhere.pt not found; give a checkpoint file"):
        load_pretrained(tiny_config(tmp_path, "train.init_from=nowhere.pt"))
    inside = first.train.out_dir + "/best.pt"
    with pytest.raises(RosettaError, match="is inside train.out_dir .*, which a new run clears"):
        load_pretrained(tiny_config(tmp_path / "first", f"data.root={tiny_data}", f"train.init_from={inside}"))


def test_the_registered_production_model_gives_its_training_checkpoint(tmp_path, monkeypatch, tiny_data, tiny_run):
    from rosetta.delivery.registry import register_and_promote
    from rosetta.tracking.store import Tracker

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    cfg = tiny_config(tmp_path, f"data.root={tiny_data}", "registry.min_score=0.1")
    ckpt, parity = tiny_run.best, tiny_run.parity
    shutil.copy(tiny_run.onnx, tmp_path / "model.onnx")
    tracker = Tracker(cfg, tags={"mlflow.runName": "trained"})
    tracker.log_artifact(ckpt, "checkpoints")
    tracker.end()
    summary = {"sets": {"synth_test": {"accuracy": 0.5, "norm_edit_dis": 0.5, "count": 12}}, "accuracy_total": 0.5,
               "accuracy_mean": 0.5, "norm_edit_dis_total": 0.5, "count_total": 12, "images_per_s": 1.0}
    assert register_and_promote(cfg, tmp_path / "model.onnx", parity, summary, tracker.run_id).promoted
    for uri in ("models:/rosetta@production", "models:/rosetta/1"):
        pretrained = load_pretrained(tiny_config(tmp_path, f"data.root={tiny_data}", f"train.init_from={uri}"))
        assert pretrained.description.startswith(f"{uri} (v1, training run {tracker.run_id})")
        assert all(torch.equal(v, load_checkpoint(ckpt)["model"][k]) for k, v in pretrained.checkpoint["model"].items())
    with pytest.raises(RosettaError, match=r"train.init_from: rosetta has no alias 'staging' \(its aliases: "
                                           r"production \(v1\)\); use one of those"):
        load_pretrained(tiny_config(tmp_path, "train.init_from=models:/rosetta@staging"))

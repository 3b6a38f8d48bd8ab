"""``train.init_from``: training starts from the weights of a checkpoint or of a registered version (its training
run's best.pt, checked against the version's ONNX file), never its optimizer or data position; another backbone is
one sentence, another charset is adapted row by row, reading every old word as the parent did before the first
step."""
from __future__ import annotations

import shutil
import string

import pytest
import torch

from rosetta.data.dataset import LmdbDataset
from rosetta.errors import RosettaError
from rosetta.recognition.checkpoint import load_checkpoint, save_checkpoint
from rosetta.recognition.model_file import load_recognizer
from rosetta.training.optim import build_trainable
from rosetta.training.pretrained import apply_pretrained, load_pretrained
from rosetta.training.trainer import run_training
from rosetta_infer.charset import Charset
from rosetta_infer.recognizer import torch_recognizer
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
    parts = build_trainable(cfg, 37, torch.device("cpu"), init=lambda m: apply_pretrained(m, pretrained, Charset()))
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
])
def test_a_model_of_another_backbone_is_refused_in_one_sentence(tmp_path, trained, tiny_data,
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
    from rosetta.registry.versions import register_and_promote
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


PRINTABLE_94 = string.digits + string.ascii_letters + string.punctuation


def _adapted(tmp_path, kept, tiny_data, characters: str):
    """A model of the configured charset ``characters`` (a PaddleOCR dictionary file) started from ``kept``."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    dict_file = tmp_path / "dict.txt"
    dict_file.write_text("\n".join(characters) + "\n")
    cfg = tiny_config(tmp_path, f"data.root={tiny_data}", f"train.init_from={kept}", f"charset.dict_path={dict_file}")
    charset = Charset.from_config(cfg.charset)
    notes = []
    parts = build_trainable(cfg, charset.num_classes, torch.device("cpu"),
                            init=lambda m: notes.append(apply_pretrained(m, load_pretrained(cfg), charset)))
    return parts.model, charset, notes[0]


def _readings(model_or_file, charset: Charset | None, images) -> list[str]:
    recognizer = (load_recognizer(model_or_file) if charset is None
                  else torch_recognizer(model_or_file, charset, 32, 100, 16))
    return [text for text, _ in recognizer.recognize(images)]


@pytest.fixture
def test_images(tiny_data):
    dataset = LmdbDataset(tiny_data / "lmdb" / "benchmarks" / "synth_test", Charset())
    return [dataset[i][0] for i in range(len(dataset))]


@pytest.mark.parametrize("parent, child", [
    (Charset(), Charset(PRINTABLE_94, lowercase=False)),  # folded 0-9a-z to case and punctuation
    (Charset(), Charset(Charset().characters[::-1])),  # reordered
    (Charset(PRINTABLE_94, lowercase=False), Charset("€" + PRINTABLE_94 + "äöü", lowercase=False)),  # appended
])
def test_an_adapted_head_reads_every_frame_as_its_parent_did(parent, child):
    """On random features and a random parent head (varied readings), the adapted head's greedy CTC text is the
    parent's: a new row never wins a frame."""
    from rosetta.training.pretrained import adapt_head, head_mapping
    from rosetta_infer.postprocess import CTCLabelDecode

    gen = torch.Generator().manual_seed(0)
    features = torch.randn(64, 25, 48, generator=gen)
    state = {"head.fc.weight": torch.randn(parent.num_classes, 48, generator=gen),
             "head.fc.bias": torch.randn(parent.num_classes, generator=gen)}
    adapted = adapt_head(state, head_mapping(parent, child))
    assert adapted["head.fc.weight"].shape == (child.num_classes, 48)

    def read(charset, head):
        probs = torch.softmax(features @ head["head.fc.weight"].T + head["head.fc.bias"], dim=2).numpy()
        return [text for text, _ in CTCLabelDecode(charset)(probs)]

    theirs = read(parent, state)
    assert sum(len(t) for t in theirs) > 300 and len(set(theirs)) == 64  # readings worth comparing
    assert read(child, adapted) == theirs


def test_a_charset_extended_to_94_characters_reads_every_word_as_its_parent_did(tmp_path, trained, tiny_data,
                                                                                test_images):
    _, kept = trained
    model, charset, note = _adapted(tmp_path, kept, tiny_data, PRINTABLE_94)
    assert _readings(model, charset, test_images) == _readings(kept, None, test_images)
    assert note == (f"train.init_from: {kept} reads 36 characters, the configured charset 94: 36 kept, 58 added "
                    "('ABCDEFGHIJKLMNOPQRST...', starting from their other case or the mean row), 0 dropped")
    parent_head = load_checkpoint(kept)["model"]["head.fc.weight"]
    head = model.state_dict()["head.fc.weight"]
    assert torch.equal(head[0], parent_head[0])  # the blank
    assert torch.equal(head[1 + PRINTABLE_94.index("q")], parent_head[1 + Charset().characters.index("q")])
    assert torch.equal(head[1 + PRINTABLE_94.index("Q")], parent_head[1 + Charset().characters.index("q")])


def test_a_head_reordered_reads_the_same_and_one_shrunk_keeps_its_rows(tmp_path, trained, tiny_data, test_images):
    _, kept = trained
    parent_chars = Charset().characters
    model, charset, note = _adapted(tmp_path / "reordered", kept, tiny_data, parent_chars[::-1])
    assert _readings(model, charset, test_images) == _readings(kept, None, test_images)
    assert note.endswith("36 kept, 0 added, 0 dropped")
    model, charset, note = _adapted(tmp_path / "shrunk", kept, tiny_data, string.ascii_lowercase)
    assert note.endswith("26 kept, 0 added, 10 dropped ('0123456789')")
    parent_head = load_checkpoint(kept)["model"]["head.fc.weight"]
    head = model.state_dict()["head.fc.weight"]
    assert head.shape[0] == 27
    assert all(torch.equal(head[1 + i], parent_head[1 + parent_chars.index(c)])
               for i, c in enumerate(string.ascii_lowercase))


def test_a_registered_checkpoint_changed_in_the_store_is_refused(tmp_path, monkeypatch, tiny_data, tiny_run):
    """The training run's best.pt must compute what the registered (digest-checked) ONNX file computes."""
    from rosetta.registry.versions import register_and_promote
    from rosetta.tracking.store import Tracker

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    cfg = tiny_config(tmp_path, f"data.root={tiny_data}", "registry.min_score=0.1")
    shutil.copy(tiny_run.onnx, tmp_path / "model.onnx")
    tracker = Tracker(cfg, tags={"mlflow.runName": "trained"})
    tracker.log_artifact(tiny_run.best, "checkpoints")
    tracker.end()
    summary = {"sets": {"synth_test": {"accuracy": 0.5, "norm_edit_dis": 0.5, "count": 12}}, "accuracy_total": 0.5,
               "accuracy_mean": 0.5, "norm_edit_dis_total": 0.5, "count_total": 12, "images_per_s": 1.0}
    assert register_and_promote(cfg, tmp_path / "model.onnx", parity_of(tiny_run), summary, tracker.run_id).promoted
    stored = next(tmp_path.rglob("checkpoints/best.pt"))
    edited = load_checkpoint(stored)
    head = edited["model"]["head.fc.weight"]  # as a few more steps of training would leave it
    edited["model"]["head.fc.weight"] = head + 0.05 * torch.randn(head.shape, generator=torch.Generator().manual_seed(0))
    save_checkpoint(stored, edited)
    with pytest.raises(RosettaError) as exc:
        load_pretrained(tiny_config(tmp_path, f"data.root={tiny_data}", "train.init_from=models:/rosetta@production"))
    assert str(exc.value).startswith("train.init_from: the checkpoints/best.pt of models:/rosetta@production (v1, "
                                     "training run ") and "does not compute what its registered ONNX file" in str(exc.value)


def parity_of(run) -> dict:
    return run.parity

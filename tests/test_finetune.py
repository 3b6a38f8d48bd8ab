"""The fine-tune journey's guards: the recipe's profile written into params.yaml, every character a label holds and
the charset lacks named with its count, and a run whose data cannot reach a batch refused in one sentence before
any training process starts."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import yaml

from model_fixtures import BytesSample, png_bytes, word_image, write_word_lmdb
from rosetta_infer.charset import Charset
from rosetta.config import load_config
from rosetta.data.splits import training_sets
from rosetta.params import PROJECT_ROOT
from rosetta.prep.lmdb_writer import write_lmdb
from train_fixtures import tiny_config, write_params


def _real_lmdb(root, labels: list[str]) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    write_lmdb(root / "realtrain" / "lmdb" / "train" / "MINE", [BytesSample(f"{i}.png", label, png_bytes(word_image(
        label, rng))) for i, label in enumerate(labels)], workers=1)
    (root / "realtrain" / "lmdb" / "manifest.json").write_text('{"real_train": "x", "sets": {"MINE": {}}}')


def test_a_label_with_a_character_the_charset_lacks_is_named_with_its_count(tmp_path):
    root = tmp_path / "data"
    write_word_lmdb(root / "lmdb" / "synth" / "train", 12)
    _real_lmdb(root, ["€20", "Sign-up", "€5", "café", "plain"])
    dict_file = tmp_path / "dict.txt"
    dict_file.write_text("\n".join("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-") + "\n")
    cfg = tiny_config(tmp_path, f"data.root={root}", "data.sources=[synth, real]",
                      "train.batch_ratio={synth: 0.5, real: 0.5}", f"charset.dict_path={dict_file}",
                      f"data.real_train={tmp_path / 'realtrain'}")
    notes = training_sets(cfg, Charset.from_config(cfg.charset)).notes
    assert f"training set real: 3 of 5 labels hold characters the charset lacks, which are left out of them: " \
           f"'€' 2, 'é' 1 (e.g. '€20'); to read them, add them to {dict_file} (one per line)" in notes
    assert not any(n.startswith("training set synth") for n in notes)  # its words are all in the charset


def test_the_default_charset_names_what_it_folds_away(tmp_path):
    root = tmp_path / "data"
    write_word_lmdb(root / "lmdb" / "synth" / "train", 12)
    _real_lmdb(root, ["EXIT!", "Joe's", "ok"])
    cfg = tiny_config(tmp_path, f"data.root={root}", "data.sources=[synth, real]",
                      "train.batch_ratio={synth: 0.5, real: 0.5}", f"data.real_train={tmp_path / 'realtrain'}")
    notes = training_sets(cfg, Charset.from_config(cfg.charset)).notes
    assert ("training set real: 2 of 3 labels hold characters the charset lacks (after lower-casing), which are left "
            "out of them: '!' 1, \"'\" 1 (e.g. 'EXIT!'); to read them, set charset.dict_path to a dictionary file that "
            "holds them") in "\n".join(notes)


def _rosetta_train(tmp_path, cfg, *extra: str) -> subprocess.CompletedProcess:
    params = write_params(cfg, tmp_path / "params.yaml")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "rosetta", "train", "-c", str(params), *extra], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=300)


def test_data_too_small_for_a_batch_or_joining_after_the_last_step_is_one_sentence_before_torchrun(tmp_path,
                                                                                                   tiny_data):
    too_small = tiny_config(tmp_path, f"data.root={tiny_data}", "train.nproc=2", "train.batch_size=32")
    done = _rosetta_train(tmp_path, too_small)
    assert done.returncode == 2 and "launching" not in done.stdout and "Traceback" not in done.stderr
    assert done.stderr.strip() == ("error: training set synth has 40 samples, fewer than the 64 one batch takes from "
                                   "it; lower train.batch_size or add data")
    root = tmp_path / "data"
    shutil.copytree(tiny_data, root)
    _real_lmdb(root, ["mine"] * 20)
    late = tiny_config(tmp_path, f"data.root={root}", "train.nproc=2", "train.batch_size=4", "train.max_steps=30",
                       "data.sources=[synth, real]", "train.batch_ratio={synth: 0.5, real: 0.5}",
                       f"data.real_train={tmp_path / 'realtrain'}")
    done = _rosetta_train(tmp_path, late)
    assert done.returncode == 2 and "launching" not in done.stdout and "Traceback" not in done.stderr
    assert done.stderr.strip() == ("error: train.source_start_step: real joins the batches at step 300, but the run "
                                   "ends at step 30, so none of its 20 samples would be trained on; set "
                                   "train.source_start_step.real below 30 (e.g. 0), or train more steps")


def test_params_apply_writes_the_fine_tune_profile_into_params_yaml_keeping_its_comments(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "profiles" / "dicts").mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "params.yaml", project / "params.yaml")
    shutil.copy(PROJECT_ROOT / "profiles" / "finetune.yaml", project / "profiles" / "finetune.yaml")
    shutil.copy(PROJECT_ROOT / "profiles" / "dicts" / "printable_94.txt", project / "profiles" / "dicts")
    monkeypatch.chdir(project)
    from rosetta.cli import main

    assert main(["params", "apply", "profiles/finetune.yaml", "-o", "data.real_train=/data/my_crops"]) == 0
    text = (project / "params.yaml").read_text()
    assert "# Rosetta (CNN + CTC) parameters" in text and "# PaddleOCR dictionary file" in text
    applied = yaml.safe_load(text)
    assert applied["train"]["init_from"] == "models:/rosetta@production"
    assert applied["charset"]["dict_path"] == "profiles/dicts/printable_94.txt"
    assert applied["data"]["real_train"] == "/data/my_crops"
    cfg = load_config(project / "params.yaml")
    assert cfg.train.batch_ratio == {"synth": 0.4, "real": 0.6} and Charset.from_config(cfg.charset).num_classes == 95
    assert main(["params", "apply", "profiles/finetune.yaml", "-o", "data.real_train=/data/my_crops"]) == 0
    assert (project / "params.yaml").read_text() == text  # applied twice: nothing changes

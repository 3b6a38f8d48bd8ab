"""Every setting that allocates, starts threads or processes, or names a folder to clear has a range in the schema:
a slip of the keyboard is one sentence naming the key, before anything runs; today's params.yaml and the
profiles stay inside the ranges."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rosetta.config import load_config
from rosetta.orchestration.dvc_project import apply_params
from rosetta.params import PROJECT_ROOT, ConfigError


@pytest.mark.parametrize("override, message", [
    ("train.threads=100000", "train.threads: 100000 must be between 0 and 256 (threads per process; 0 = torch's "
                             "default)"),
    ("charset.max_text_length=100000000", "charset.max_text_length: 100000000 must be between 1 and 1000 "
                                          "(characters a label may hold)"),
    ("model.image_width=1000000", "model.image_width: 1000000 must be between 8 and 4096 (pixels of the training "
                                  "width)"),
    ("train.out_dir=/", "train.out_dir: '/' must name a folder of its own, not the project folder or a folder "
                        "above it"),
    ("train.out_dir=.", "train.out_dir: '.' must name a folder of its own"),
    ("eval.out_dir=..", "eval.out_dir: '..' must name a folder of its own"),
    ("eval.threads=5000", "eval.threads: 5000 must be between 0 and 256"),
    ("data.workers=100000", "data.workers: 100000 must be between 0 and 256"),
    ("train.nproc=100000", "train.nproc: 100000 must be between 1 and 256"),
    ("train.num_workers=100000", "train.num_workers: 100000 must be between 0 and 256"),
    ("train.batch_size=10000000", "train.batch_size: 10000000 must be between 1 and 65536"),
    ("eval.batch_size=10000000", "eval.batch_size: 10000000 must be between 1 and 65536"),
    ("export.batch_size=10000000", "export.batch_size: 10000000 must be between 1 and 65536"),
    ("data.synth.max_word_len=100000", "data.synth.max_word_len: 100000 must be between 1 and 100"),
    ("serve.max_image_side=1000000", "serve.max_image_side: 1000000 must be between 1 and 65535"),
    ("serve.max_request_mb=100000", "serve.max_request_mb: 100000 must be between 1 and 4096"),
    ("serve.max_request_pixels=1000", "serve.max_request_pixels: 1000 must be between 16000000 and 10000000000 "
                                      "(pixels; at least serve.max_image_pixels"),
])
def test_a_setting_out_of_its_range_is_one_sentence(override, message):
    with pytest.raises(ConfigError) as refused:
        load_config(PROJECT_ROOT / "params.yaml", [override])
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)


@pytest.mark.parametrize("params", ["params.yaml", *sorted(p.relative_to(PROJECT_ROOT).as_posix()
                                                     for p in (PROJECT_ROOT / "profiles").glob("*.yaml"))])
def test_the_project_params_and_profiles_are_inside_the_ranges(params):
    load_config(PROJECT_ROOT / params)


def test_the_flow_refuses_an_out_dir_that_would_clear_the_machine(tmp_path, monkeypatch):
    shutil.copy(PROJECT_ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    before = (tmp_path / "params.yaml").read_text()
    for override in ("train.out_dir=/", f"train.out_dir={tmp_path}", f"export.out_dir={Path(tmp_path).parent}"):
        with pytest.raises(ConfigError, match="must name a folder of its own"):
            apply_params(tmp_path, [override])
    assert (tmp_path / "params.yaml").read_text() == before  # refused before anything was written


def test_the_cli_says_it_in_one_line(rosetta_cli):
    done = rosetta_cli("train", "-o", "train.threads=100000")
    assert done.returncode == 2
    assert done.stderr == ("error: train.threads: 100000 must be between 0 and 256 (threads per process; 0 = torch's "
                           "default)\n")

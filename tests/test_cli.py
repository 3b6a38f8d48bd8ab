"""The ``rosetta`` command line: every command and flag the README documents parses to its library call,
and ``main`` is the one place a ``RosettaError`` becomes a one-line message and exit status 2."""
from __future__ import annotations

import tomllib

import pytest

from rosetta.cli import build_parser, main
from rosetta.errors import RosettaError
from rosetta.params import PROJECT_ROOT

DOCUMENTED = [
    "summary", "summary --json -c params.yaml -o model.backbone.scale=0.35",
    "data synth OUT", "data download URL OUT --sha256 HEX", "data convert --format gt-file INPUT OUTPUT",
    "data validate LMDB_DIR", "data stats LMDB_DIR --json",
    "train -c params.yaml -o train.max_steps=3000", "train --no-resume",
    "evaluate --model runs/train/best.pt --data data/lmdb/benchmarks --json",
    "predict --model runs/train/best.pt word_1.png more/", "bench train",
    "bench train --backbones mobilenet_v3 resnet34_vd --modes synthetic loader --json",
    "export --model runs/train/best.pt --out FILE.onnx", "register",
    "promote --version 2 --force", "rollback", "serve -o registry.alias=previous --port 5002", "bench serve",
    "bench infer --json", "export --model runs/train/best.pt --int8", "tracking sync runs/train",
    "params apply profiles/finetune.yaml -o data.real_train=/data/my_crops",
]


@pytest.mark.parametrize("argv", DOCUMENTED)
def test_documented_commands_parse(argv):
    args = build_parser().parse_args(argv.split())
    assert callable(args.func) and args.func.__module__.startswith("rosetta.cli.")


def test_entry_point_is_cli_main():
    scripts = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"rosetta": "rosetta.cli:main"}


def test_main_turns_a_rosetta_error_into_one_line_and_status_2(monkeypatch, capsys):
    def fail(args):
        raise RosettaError("data.lmdb.url is empty; set it in params.yaml")

    monkeypatch.setattr("rosetta.cli.summary._summary", fail)
    assert main(["summary"]) == 2
    assert capsys.readouterr().err == "error: data.lmdb.url is empty; set it in params.yaml\n"

"""Fixtures shared by the test modules: one torch thread, the tiny data set, and ``rosetta`` run as a
user runs it. Test modules use these; nothing else in tests/ builds data or starts the CLI its own way."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model_fixtures import write_word_lmdb
from rosetta.params import PROJECT_ROOT

# The maintainer scripts' modules the tests share (import_graph: the reader of rosetta's imports).
sys.path.insert(0, str(PROJECT_ROOT / "scripts"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tests share two cores with subprocesses; several torch threads then spin against each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A ``data.root`` laid out as ``DataLayout`` expects for the synth source: ``lmdb/synth/train`` (40 word
    images), ``lmdb/synth/val`` (12) and ``lmdb/benchmarks/synth_test`` (12). Built once; tests only read it."""
    root = tmp_path_factory.mktemp("tiny_data")
    write_word_lmdb(root / "lmdb" / "synth" / "train", 40, seed=0)
    write_word_lmdb(root / "lmdb" / "synth" / "val", 12, seed=1)
    write_word_lmdb(root / "lmdb" / "benchmarks" / "synth_test", 12, seed=2)
    return root


@pytest.fixture(scope="session")
def tiny_mixed_data(tmp_path_factory) -> Path:
    """A ``data.root`` with the synth source of ``tiny_data`` and the ``real`` source: two gt-file sets (36 and 24
    words) converted as the ``convert_real_train`` stage does, a quarter held out. Built once; tests only read it."""
    from model_fixtures import WORDS, write_gt_set
    from rosetta.charset import Charset
    from rosetta.data.real_train import convert_real_train, write_real_train_manifest
    from rosetta.layout import DataLayout

    base = tmp_path_factory.mktemp("tiny_mixed")
    layout = DataLayout(base / "data")
    write_word_lmdb(layout.lmdb("synth") / "train", 40, seed=0)
    write_word_lmdb(layout.lmdb("synth") / "val", 12, seed=1)
    write_word_lmdb(layout.benchmarks / "synth_test", 12, seed=2)
    write_gt_set(base / "realtrain" / "A_train", WORDS * 3, seed=3)
    write_gt_set(base / "realtrain" / "B_train", WORDS * 2, seed=4)
    write_real_train_manifest(str(base / "realtrain"), layout.real_train_manifest)
    convert_real_train(layout.real_train_manifest, layout.real_train, Charset(), 0.25, 0, [layout.benchmarks],
                       workers=1)
    return layout.root


class RosettaCLI:
    """``rosetta ARGS`` as a user runs it: ``python -m rosetta`` in a subprocess, with MLFLOW_TRACKING_URI
    unset (the params decide where runs go), unbuffered output and one OpenMP thread."""

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        return {**env, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **extra}

    @staticmethod
    def command(*args: str) -> list[str]:
        return [sys.executable, "-m", "rosetta", *args]

    def __call__(self, *args: str, cwd: Path | None = None, timeout: float = 300,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*args), cwd=cwd, env=env or self.env(), capture_output=True, text=True,
                              timeout=timeout)


@pytest.fixture(scope="session")
def rosetta_cli() -> RosettaCLI:
    return RosettaCLI()

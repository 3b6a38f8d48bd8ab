"""Tiny real inputs for the training, evaluation and tracking tests: a DataLayout of word-image LMDBs,
params files that train in seconds, and ``rosetta`` run as a subprocess."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from model_fixtures import write_word_lmdb
from rosetta.config import PROJECT_ROOT, Config, load_config

TINY = [
    "model.mobilenet_v3.model_name=small", "model.mobilenet_v3.scale=0.35",
    "train.optimizer=adamw", "train.lr=2e-3", "train.scheduler=cosine", "train.warmup_steps=2",
    "train.batch_size=8", "train.max_steps=12", "train.eval_every=6", "train.checkpoint_every=3",
    "train.log_every=3", "train.num_workers=0", "train.threads=1", "train.grad_clip=5", "train.augment=true",
    "train.log_model=false", "train.device=cpu", "eval.batch_size=16", "eval.gallery_size=4",
]


def tiny_data(root: Path) -> Path:
    """``root`` laid out as ``DataLayout`` expects for the synth source, with a benchmark folder."""
    write_word_lmdb(root / "lmdb" / "synth" / "train", 40, seed=0)
    write_word_lmdb(root / "lmdb" / "synth" / "val", 12, seed=1)
    write_word_lmdb(root / "lmdb" / "benchmarks" / "synth_test", 12, seed=2)
    return root


def tiny_config(tmp_path: Path, *overrides: str) -> Config:
    """Params training in seconds on ``tmp_path/data``, writing below ``tmp_path/runs``, tracking into
    ``tmp_path/mlflow.db``."""
    return load_config(PROJECT_ROOT / "params.yaml", [
        *TINY, f"data.root={tmp_path / 'data'}", f"train.out_dir={tmp_path / 'runs' / 'train'}",
        f"eval.out_dir={tmp_path / 'runs' / 'eval'}", f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        *overrides])


def write_params(cfg: Config, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return path


def rosetta_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def rosetta(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rosetta", *args], cwd=cwd, env=rosetta_env(), capture_output=True,
                          text=True, timeout=timeout)


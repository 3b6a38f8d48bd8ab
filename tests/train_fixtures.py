"""Params for the training, evaluation and tracking tests that train in seconds on the ``tiny_data``
fixture (conftest.py)."""
from __future__ import annotations

from pathlib import Path

import yaml

from rosetta.config import Config, load_config
from rosetta.params import PROJECT_ROOT

TINY = [
    "model.backbone.model_name=small", "model.backbone.scale=0.35",
    "train.optimizer=adamw", "train.lr=2e-3", "train.scheduler=cosine", "train.warmup_steps=2",
    "train.batch_size=8", "train.max_steps=12", "train.eval_every=6", "train.checkpoint_every=3",
    "train.log_every=3", "train.num_workers=0", "train.threads=1", "train.nproc=1", "train.grad_clip=5",
    "train.augment=true", "data.sources=[synth]",
    "train.log_model=false", "train.device=cpu", "eval.batch_size=16", "eval.gallery_size=4",
]


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


# A project folder's dvc.lock, as the pipeline writes it: the data version a training run records (its md5s).
DVC_LOCK = """schema: '2.0'
stages:
  convert:
    cmd: python stages/convert.py
    outs:
    - path: data/lmdb
      hash: md5
      md5: 0123456789abcdef0123456789abcdef.dir
      size: 1000
      nfiles: 4
  validate:
    cmd: python stages/validate.py
    outs:
    - path: data/reports/validation
      hash: md5
      md5: fedcba9876543210fedcba9876543210.dir
"""

"""``rosetta train``: train the configured model, resuming from the last checkpoint."""
from __future__ import annotations

import argparse

from rosetta.cli.common import add_config_args, config_from_args


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train the configured model (resumes from the last checkpoint)",
        description="Train per params.yaml's train section (PaddleOCR's recipe in the profiles). Rerunning the "
                    "same command after a crash resumes from <train.out_dir>/checkpoints/last.pt. "
                    "train.nproc > 1 (or torchrun) trains with DistributedDataParallel.")
    add_config_args(p)
    p.add_argument("--no-resume", action="store_true", help="start a new run even when a checkpoint exists")
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from rosetta.training.trainer import run_training

    run_training(config_from_args(args), resume=not args.no_resume)
    return 0

"""``rosetta tracking sync FOLDER``: send what a training kept while its MLflow server was away
(``rosetta.tracking.journal``)."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser(
        "tracking", help="send the MLflow records a training kept while its server was away",
        description="A training whose MLflow server stops answering goes on and keeps its metrics, params, tags, "
                    "artifacts and end status, in order, in <train.out_dir>/mlflow_pending/<run id>/; it sends them "
                    "itself when the server answers again before it ends. `sync` sends what is left, to the run and "
                    "store each journal names, exactly once, and removes it.")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    sync = sub.add_parser("sync", help="send a run folder's waiting MLflow records",
                          description="Send the MLflow records waiting in FOLDER/mlflow_pending to their runs.")
    sync.add_argument("folder", type=Path, metavar="FOLDER", help="the training's folder (train.out_dir, e.g. "
                                                                 "runs/train)")
    sync.set_defaults(func=_sync)


def _sync(args: argparse.Namespace) -> int:
    from rosetta.tracking.journal import sync_folder
    from rosetta.training.outputs import log_checkpoint_model

    sync_folder(args.folder, log_checkpoint_model)
    return 0

"""``rosetta bench train``: training throughput per backbone, with and without the data loader."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from rosetta.bench import MODES
from rosetta.cli.common import add_config_args, config_from_args
from rosetta.config import BACKBONE_PRESETS
from rosetta.errors import RosettaError


def register(subparsers) -> None:
    bench = subparsers.add_parser("bench", help="throughput benchmarks",
                                  description="Throughput benchmarks of the configured pipeline.")
    sub = bench.add_subparsers(dest="bench_command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "train", help="training images/s per backbone, with and without the data loader",
        description="Training throughput (forward, CTC loss, backward, optimizer step) for each backbone: fed by "
                    "synthetic tensors, by the LMDB loader (train.num_workers workers, train.threads threads), and "
                    "the loader alone; with ms/image and peak RSS.")
    p.add_argument("--backbones", nargs="+", default=list(BACKBONE_PRESETS), choices=list(BACKBONE_PRESETS))
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--data", metavar="DIR", default=None,
                   help="training LMDB(s) for the loader rows (default: the first source's train split)")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--json", action="store_true", help="print the rows as JSON at the end")
    add_config_args(p)
    p.set_defaults(func=_bench_train)


def _bench_train(args: argparse.Namespace) -> int:
    from rosetta.bench import bench_train

    if args.steps < 1 or args.batch_size < 1:
        raise RosettaError("--steps and --batch-size must be at least 1")
    rows = bench_train(config_from_args(args), args.backbones, args.batch_size, args.steps, args.warmup,
                       Path(args.data) if args.data else None, tuple(args.modes))
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0

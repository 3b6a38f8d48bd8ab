"""Pieces every ``rosetta`` subcommand shares: ``-c FILE``, ``-o key=value`` and error handling."""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from rosetta.config import Config, load_config
from rosetta.errors import RosettaError


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", metavar="FILE", default=None,
                        help="params file (default: ./params.yaml, else the project's)")
    parser.add_argument("-o", "--override", metavar="KEY=VALUE", action="append", default=[],
                        help="override a param, PaddleOCR style: -o train.lr=1e-3 (repeatable)")


def config_from_args(args: argparse.Namespace) -> Config:
    return load_config(args.config, args.override)


def run_guarded(fn: Callable[[], int | None]) -> int:
    """Run a command body; a ``RosettaError`` becomes one line on stderr and exit status 2."""
    try:
        return int(fn() or 0)
    except RosettaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

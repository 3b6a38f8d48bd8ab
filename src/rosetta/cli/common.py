"""Arguments every ``rosetta`` subcommand shares: ``-c FILE`` and PaddleOCR-style ``-o key=value``."""
from __future__ import annotations

import argparse

from rosetta.config import Config, load_config


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", metavar="FILE", default=None,
                        help="params file, or a profile overlaid on params.yaml (default: the params.yaml of the project "
                             "the working directory is in)")
    parser.add_argument("-o", "--override", metavar="KEY=VALUE", action="append", default=[],
                        help="override a param, PaddleOCR style: -o train.lr=1e-3 (repeatable)")


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (a batch size, a count), else argparse's one-line usage error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def config_from_args(args: argparse.Namespace) -> Config:
    return load_config(args.config, args.override)

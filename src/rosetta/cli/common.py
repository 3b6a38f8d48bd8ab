"""Arguments every ``rosetta`` subcommand shares: ``-c FILE`` and PaddleOCR-style ``-o key=value``."""
from __future__ import annotations

import argparse

from rosetta.config import Config, load_config


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", metavar="FILE", default=None,
                        help="params file, or a profile overlaid on params.yaml (default: ./params.yaml, "
                             "else the project's)")
    parser.add_argument("-o", "--override", metavar="KEY=VALUE", action="append", default=[],
                        help="override a param, PaddleOCR style: -o train.lr=1e-3 (repeatable)")


def config_from_args(args: argparse.Namespace) -> Config:
    return load_config(args.config, args.override)

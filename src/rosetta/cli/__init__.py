"""The ``rosetta`` command: one subcommand group per module of this package, each a thin layer of
argparse over the library, which itself never parses arguments.

``main`` is the one place where a ``RosettaError`` becomes a one-line message and exit status 2.
"""
from __future__ import annotations

import argparse
import sys

from rosetta.cli import (bench, data, evaluate, export, params, predict, registry, serve, summary, team, tracking,
                         train)
from rosetta.errors import run_guarded

# In the order ``rosetta --help`` lists them.
GROUPS = (summary, params, data, export, registry, train, tracking, evaluate, predict, serve, bench, team)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rosetta", description="Rosetta scene-text recognition: data, training, evaluation, export, registry.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_guarded(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())

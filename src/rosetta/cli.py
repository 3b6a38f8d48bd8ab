"""The ``rosetta`` command: one subcommand per capability, each a thin layer over ``src``."""
from __future__ import annotations

import argparse
import json
import sys

from rosetta.cliutil import add_config_args, config_from_args, run_guarded


def _summary(args: argparse.Namespace) -> int:
    from rosetta.summary import format_summary, model_summary

    def body() -> int:
        s = model_summary(config_from_args(args))
        print(json.dumps(s) if args.json else format_summary(s))
        return 0

    return run_guarded(body)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rosetta", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("summary", help="parameters, FLOPs and output shape of the configured model")
    add_config_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_summary)

    from rosetta.data import cli as data_cli

    data_cli.register(sub)
    from rosetta import export, registry

    export.register(sub)
    registry.register(sub)
    from rosetta import bench, evaluate, predict, train

    train.register(sub)
    evaluate.register(sub)
    predict.register(sub)
    bench.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

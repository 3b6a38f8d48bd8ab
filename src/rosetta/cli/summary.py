"""``rosetta summary``: parameters, FLOPs and output shape of the configured model."""
from __future__ import annotations

import argparse
import json

from rosetta.cli.common import add_config_args, config_from_args


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser("summary", help="parameters, FLOPs and output shape of the configured model")
    add_config_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_summary)


def _summary(args: argparse.Namespace) -> int:
    from rosetta.modeling.summary import format_summary, model_summary

    s = model_summary(config_from_args(args))
    print(json.dumps(s) if args.json else format_summary(s))
    return 0

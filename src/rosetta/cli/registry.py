"""``rosetta register``, ``promote`` and ``rollback``: the MLflow Model Registry and its aliases."""
from __future__ import annotations

import argparse

from rosetta.cli.common import add_config_args, config_from_args


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser(
        "register", help="register the exported model in MLflow and decide its promotion",
        description="Log the gated ONNX file as a pyfunc model in the training run, register it as a version of "
                    "registry.model_name tagged with its evidence, and give it alias registry.alias when it beats "
                    "production. Inputs default to the pipeline's files under runs/.")
    add_config_args(p)
    p.add_argument("--onnx", metavar="FILE", help="exported model (default: <export.out_dir>/model.onnx)")
    p.add_argument("--parity", metavar="FILE", help="parity report (default: <export.out_dir>/parity.json)")
    p.add_argument("--metrics", metavar="FILE", help="benchmark metrics (default: <eval.out_dir>/metrics.json)")
    p.add_argument("--run-json", metavar="FILE", help="training run record (default: <train.out_dir>/run.json)")
    p.set_defaults(func=_register)

    p = subparsers.add_parser(
        "promote", help="give a registered version the production alias (if it beats production)",
        description="Compare a version's benchmark score with production's (registry.metric, registry.margin) and "
                    "move the alias when it wins; the replaced version gets registry.previous_alias. The decision "
                    "is tagged on the version and printed. Exit status 1 when not promoted.")
    add_config_args(p)
    p.add_argument("--version", metavar="N", type=int, default=None, help="the version (default: the newest)")
    p.add_argument("--force", action="store_true", help="promote without comparing scores (parity must have passed)")
    p.set_defaults(func=_promote)

    p = subparsers.add_parser(
        "rollback", help="give the production alias back to the previous version",
        description="Move registry.alias to the version holding registry.previous_alias; repeatable.")
    add_config_args(p)
    p.set_defaults(func=_rollback)


def _register(args: argparse.Namespace) -> int:
    from rosetta.registry.versions import register

    register(config_from_args(args), args.onnx, args.parity, args.metrics, args.run_json)
    return 0


def _promote(args: argparse.Namespace) -> int:
    from rosetta.registry.promotion import promote

    return 0 if promote(config_from_args(args), args.version, args.force).promoted else 1


def _rollback(args: argparse.Namespace) -> int:
    from rosetta.registry.promotion import rollback

    rollback(config_from_args(args))
    return 0

"""``rosetta serve``: ``mlflow models serve`` for the registered model, with the environment it needs."""
from __future__ import annotations

import argparse

from rosetta.cli.common import add_config_args, config_from_args


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="serve the production model over HTTP (mlflow models serve)",
        description="Serves the version of registry.model_name holding registry.alias (or --alias, or --version): "
                    "downloads it from the configured store, checks its files against the digests the registry "
                    "recorded, and runs `mlflow models serve --env-manager local` on that copy with this "
                    "environment's bin on PATH; POST images to /invocations as the README shows. Each answer names "
                    "the model, version and alias it came from. The copy is removed when the server ends.")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--alias", default=None, help="serve the version holding this alias (default: registry.alias)")
    which.add_argument("--version", type=int, default=None, help="serve this version")
    which.add_argument("--model-uri", default=None,
                       help="models:/<name>@<alias> or models:/<name>/<version> of the configured registry, or a "
                            "local model folder holding an MLmodel file")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5001)
    add_config_args(p)
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from rosetta.delivery.http_server import serve, served_model

    cfg = config_from_args(args)
    if args.model_uri:
        return serve(cfg, args.model_uri, args.host, args.port)
    return serve(cfg, served_model(cfg, args.alias, args.version), args.host, args.port, "rosetta serve")

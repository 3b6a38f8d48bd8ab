"""``rosetta serve``: ``mlflow models serve`` for the registered model, with the environment it needs."""
from __future__ import annotations

import argparse
import os

from rosetta.cli.common import add_config_args, config_from_args


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="serve the production model over HTTP (mlflow models serve)",
        description="Runs `mlflow models serve -m models:/<registry.model_name>@<registry.alias> --env-manager "
                    "local` with MLFLOW_TRACKING_URI set to the configured store and this environment's bin on "
                    "PATH; POST images to /invocations as the README shows.")
    p.add_argument("--model-uri", default=None, help="default: models:/<registry.model_name>@<registry.alias>")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5001)
    add_config_args(p)
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from rosetta.delivery.http_server import production_uri, serve_command, serve_env

    cfg = config_from_args(args)
    command = serve_command(args.model_uri or production_uri(cfg), args.host, args.port)
    os.execve(command[0], command, serve_env(cfg))  # the server replaces this process: signals reach it
    return 0

"""``rosetta serve``: ``mlflow models serve`` for the registered model, with the environment it needs."""
from __future__ import annotations

import argparse
import os

from rosetta.cli.common import add_config_args, config_from_args


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="serve the production model over HTTP (mlflow models serve)",
        description="Runs `mlflow models serve -m models:/<registry.model_name>/<version> --env-manager local` for "
                    "the version holding registry.alias (or --alias, or --version), with MLFLOW_TRACKING_URI set to "
                    "the configured store and this environment's bin on PATH; POST images to /invocations as the "
                    "README shows. Each answer names the model, version and alias it came from.")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--alias", default=None, help="serve the version holding this alias (default: registry.alias)")
    which.add_argument("--version", type=int, default=None, help="serve this version")
    which.add_argument("--model-uri", default=None, help="serve any MLflow model URI as it is")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5001)
    add_config_args(p)
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from rosetta.delivery.http_server import serve_command, serve_env, served_model

    cfg = config_from_args(args)
    served = None if args.model_uri else served_model(cfg, args.alias, args.version)
    command = serve_command(args.model_uri or served.uri, args.host, args.port)
    print(f"serving {served or args.model_uri} on http://{args.host}:{args.port}", flush=True)
    os.execve(command[0], command, serve_env(cfg, served))  # the server replaces this process: signals reach it
    return 0

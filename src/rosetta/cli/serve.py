"""``rosetta serve``: ``mlflow models serve`` for the registered model, with the environment it needs."""
from __future__ import annotations

import argparse

from rosetta.cli.common import add_config_args, config_from_args


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="serve the production model over HTTP (mlflow models serve)",
        description="Downloads models:/<registry.model_name>@<registry.alias> from the configured store, checks its "
                    "files against the digests the registry recorded, and runs `mlflow models serve --env-manager "
                    "local` on that copy with this environment's bin on PATH; POST images to /invocations as the "
                    "README shows. The copy is removed when the server ends.")
    p.add_argument("--model-uri", default=None,
                   help="models:/<name>@<alias> or models:/<name>/<version> of the configured registry, or a local "
                        "model folder holding an MLmodel file (default: models:/<registry.model_name>@<registry.alias>)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5001)
    add_config_args(p)
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from rosetta.delivery.http_server import serve

    return serve(config_from_args(args), args.model_uri, args.host, args.port)

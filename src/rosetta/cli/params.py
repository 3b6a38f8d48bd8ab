"""``rosetta params apply``: write a profile (an overlay such as profiles/finetune.yaml) and ``-o`` overrides into
the project's params.yaml, so that ``dvc repro`` and ``dvc exp run`` run that recipe."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser("params", help="write a profile into params.yaml")
    sub = p.add_subparsers(dest="params_command", required=True, metavar="COMMAND")
    a = sub.add_parser("apply", help="write a profile's keys (and -o overrides) into params.yaml",
                       description="Merge PROFILE (an overlay with base:) and the -o overrides into the project's "
                                   "params.yaml, keeping its comments, and print each changed key; the result is "
                                   "checked as any params file is before anything is written. Then `dvc exp run` "
                                   "(or `dvc repro`) runs that recipe; `git checkout params.yaml` goes back.")
    a.add_argument("profile", metavar="PROFILE", help="the overlay, e.g. profiles/finetune.yaml")
    a.add_argument("-o", "--override", metavar="KEY=VALUE", action="append", default=[],
                   help="a key to set as well, PaddleOCR style: -o data.real_train=/data/my_crops (repeatable)")
    a.set_defaults(func=_apply)


def _apply(args: argparse.Namespace) -> int:
    from rosetta.config import config_from_dict
    from rosetta.params import apply_overrides, project_root, read_params, write_params

    target = project_root() / "params.yaml"
    data = apply_overrides(read_params(Path(args.profile)), args.override)
    config_from_dict(data)  # one sentence naming a bad key, before params.yaml is touched
    changes = write_params(target, data)
    for change in changes:
        print(f"{target.name}: {change}")
    print(f"{target}: {len(changes)} setting(s) changed" if changes else f"{target}: already holds {args.profile}")
    return 0

"""``rosetta predict``: recognize word images, one line per image."""
from __future__ import annotations

import argparse
import typing

from rosetta.cli.common import add_config_args, positive_int
from rosetta_infer.settings import ConfidenceRule


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help="recognize word images",
        description="Recognize word images with the production model (default), a registered version "
                    "(models:/<name>@<alias>, checked against the registry), a checkpoint (.pt) or an exported model "
                    "(.onnx); prints `word_1.png<TAB>joint<TAB>0.98` per image (the confidence by serve.confidence), "
                    "or with --json one JSON object per line. A reading less confident than serve.abstain_below is "
                    "answered with no text and flagged `abstained` (its text stays in the JSON's `reading`). Files "
                    "are read under the server's limits (serve.max_image_side, max_image_pixels, max_request_mb). "
                    "Exit status 1 when any file could not be read.")
    p.add_argument("--model", metavar="MODEL", default=None,
                   help="checkpoint (.pt), exported model (.onnx) or models:/<name>@<alias> (default: "
                        "models:/<registry.model_name>@<registry.alias>, the production version)")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files or folders of images")
    p.add_argument("--json", action="store_true",
                   help='print {"image", "text", "confidence", "abstained", "reading"} per line, for programs')
    p.add_argument("--confidence", metavar="RULE", choices=typing.get_args(ConfidenceRule), default=None,
                   help="how a word's confidence is made of its characters': " + ", ".join(typing.get_args(
                       ConfidenceRule)) + " (default: serve.confidence)")
    p.add_argument("--abstain-below", metavar="X", default=None,
                   help="answer no text, flagged abstained, below this confidence (default: serve.abstain_below)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (PyTorch checkpoints)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per forward pass (default 64)")
    add_config_args(p)
    p.set_defaults(func=_predict)


def _predict(args: argparse.Namespace) -> int:
    from rosetta.recognition.model_file import model_file
    from rosetta.recognition.predict import predict_files
    from rosetta_infer.preprocess import ImageLimits

    # A model file carries what reading needs; outside a project (an installed package, no params.yaml) the
    # settings are the schema's defaults. The flags are the serve settings they stand for, checked as those are.
    from rosetta.config import config_from_dict, load_config
    from rosetta.params import project_root

    overrides = [*args.override, *([f"serve.confidence={args.confidence}"] if args.confidence else []),
                 *([f"serve.abstain_below={args.abstain_below}"] if args.abstain_below is not None else [])]
    found = args.config or (project_root() / "params.yaml").is_file()
    cfg = load_config(args.config, overrides) if found else config_from_dict({}, overrides)
    model = args.model or f"models:/{cfg.registry.model_name}@{cfg.registry.alias}"
    with model_file(cfg, model) as path:
        failed = predict_files(path, args.images, args.device, args.batch_size, ImageLimits.from_config(cfg.serve),
                               cfg.serve.confidence, cfg.serve.abstain_below, args.json)
    return 1 if failed else 0

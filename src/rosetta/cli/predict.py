"""``rosetta predict``: recognize word images, one line per image."""
from __future__ import annotations

import argparse

from rosetta.cli.common import add_config_args, config_from_args, positive_int


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help="recognize word images",
        description="Recognize word images with a checkpoint (.pt), an exported model (.onnx) or a registered version "
                    "(models:/<name>@<alias>, checked against the registry); prints `word_1.png: ('joint', 0.9999)` "
                    "per image. Files are read under the server's limits (serve.max_image_side, max_image_pixels, "
                    "max_request_mb). Exit status 1 when any file could not be read.")
    p.add_argument("--model", metavar="CHECKPOINT_OR_ONNX", required=True)
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files or folders of images")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (PyTorch checkpoints)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per forward pass (default 64)")
    add_config_args(p)
    p.set_defaults(func=_predict)


def _predict(args: argparse.Namespace) -> int:
    from rosetta.data.preprocess import ImageLimits
    from rosetta.recognition.model_file import model_file
    from rosetta.recognition.predict import predict_files

    # A model file carries what reading needs; outside a project (an installed package, no params.yaml) the
    # image limits are the schema's defaults.
    from rosetta.config import config_from_dict
    from rosetta.params import project_root

    found = args.config or (project_root() / "params.yaml").is_file()
    cfg = config_from_args(args) if found else config_from_dict({}, args.override)
    with model_file(cfg, args.model) as model:
        failed = predict_files(model, args.images, args.device, args.batch_size, ImageLimits.from_config(cfg.serve))
    return 1 if failed else 0

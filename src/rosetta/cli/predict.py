"""``rosetta predict``: recognize word images, one line per image."""
from __future__ import annotations

import argparse

from rosetta.cli.common import positive_int


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help="recognize word images",
        description="Recognize word images with a checkpoint (.pt) or an exported model (.onnx); prints "
                    "`word_1.png: ('joint', 0.9999)` per image. Exit status 1 when any file could not be read.")
    p.add_argument("--model", metavar="CHECKPOINT_OR_ONNX", required=True)
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files or folders of images")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (PyTorch checkpoints)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per forward pass (default 64)")
    p.set_defaults(func=_predict)


def _predict(args: argparse.Namespace) -> int:
    from rosetta.recognition.predict import predict_files

    return 1 if predict_files(args.model, args.images, args.device, args.batch_size) else 0

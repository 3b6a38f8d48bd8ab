"""``rosetta export``: a checkpoint to ONNX, gated against PyTorch."""
from __future__ import annotations

import argparse
from pathlib import Path

from rosetta.cli.common import add_config_args, config_from_args


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="export a checkpoint to ONNX and gate it against PyTorch",
        description="Write an ONNX file (input x [batch, 3, 32, width], dynamic batch and width; output "
                    "probabilities [batch, T, classes]; opset export.opset) with the charset and preprocessing "
                    "in its metadata, then compare it with PyTorch on the validation split. Below "
                    "export.max_abs_diff / export.min_same_text nothing is written and the exit status is 2.")
    add_config_args(p)
    p.add_argument("--model", metavar="CHECKPOINT", required=True, help="PyTorch checkpoint (e.g. runs/train/best.pt)")
    p.add_argument("--out", metavar="FILE.onnx", default=None, help="output (default: <export.out_dir>/model.onnx)")
    p.add_argument("--parity", metavar="FILE.json", default=None,
                   help="parity report (default: <export.out_dir>/parity.json)")
    p.add_argument("--data", metavar="LMDB_DIR", default=None,
                   help="validation images for the gate (default: data/lmdb/<first source>/val)")
    p.add_argument("--int8", action="store_true",
                   help="also write <out>.int8.onnx, statically quantized on validation images and gated (same text "
                        "on export.int8_min_same_text of them, at most export.int8_max_accuracy_drop accuracy lost "
                        "on every benchmark set); on by default with export.int8: true")
    p.add_argument("--benchmarks", metavar="DIR", default=None,
                   help="benchmark sets for the int8 gate (default: data.benchmarks and the converted real sets)")
    p.add_argument("--int8-report", metavar="FILE.json", default=None,
                   help="int8 gate report (default: <export.out_dir>/int8.json)")
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from rosetta.delivery.export_model import export_model

    def path(value: str | None) -> Path | None:
        return Path(value) if value else None

    for written, report in export_model(config_from_args(args), args.model, path(args.out), path(args.parity),
                                        args.data, args.int8, path(args.int8_report),
                                        [Path(args.benchmarks)] if args.benchmarks else None):
        print(report.summary())
        print(f"wrote {written}")
    return 0

"""``rosetta bench train``: training throughput per backbone, with and without the data loader;
``rosetta bench serve``: the served model's throughput over HTTP; ``rosetta bench infer``: recognition speed per
backend, end to end and of the model alone."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from rosetta.bench.common import MODES
from rosetta.cli.common import add_config_args, config_from_args, positive_int
from rosetta.config import BACKBONE_PRESETS
from rosetta.errors import RosettaError


def add_parsers(subparsers) -> None:
    bench = subparsers.add_parser("bench", help="throughput benchmarks",
                                  description="Throughput benchmarks of the configured pipeline.")
    sub = bench.add_subparsers(dest="bench_command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "train", help="training images/s per backbone, with and without the data loader",
        description="Training throughput (forward, CTC loss, backward, optimizer step) for each backbone: fed by "
                    "synthetic tensors, by the LMDB loader (train.num_workers workers, train.threads threads), and "
                    "the loader alone; with ms/image and peak RSS.")
    p.add_argument("--backbones", nargs="+", default=list(BACKBONE_PRESETS), choices=list(BACKBONE_PRESETS))
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--steps", type=positive_int, default=10, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--data", metavar="DIR", default=None,
                   help="training LMDB(s) for the loader rows (default: the first source's train split)")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--processes", type=positive_int, default=1,
                   help="processes measured at once as one DDP group (train.nproc trains so); "
                        "--batch-size is per process")
    _finish(p, _bench_train)
    p = sub.add_parser(
        "serve", help="requests/s and ms/image of the served model over HTTP on loopback",
        description="Starts `mlflow models serve` for the registered model (default: the production alias) on "
                    "127.0.0.1, posts word images in batches of each --batch-sizes and prints requests/s and "
                    "ms/image, timed end to end (JSON, base64, decoding, ONNX Runtime, the answer).")
    p.add_argument("--model-uri", default=None, help="default: models:/<registry.model_name>@<registry.alias>")
    p.add_argument("--batch-sizes", nargs="+", type=positive_int, default=[1, 32])
    p.add_argument("--requests", type=positive_int, default=20, help="timed requests per batch size")
    _finish(p, _bench_serve)
    p = sub.add_parser(
        "infer", help="recognition ms/image per backbone and backend, end to end and model only",
        description="Recognition speed of each backbone (untrained weights: speed does not depend on training) "
                    "with PyTorch eager, ONNX Runtime fp32 and ONNX Runtime int8 (statically quantized here): end to "
                    "end (encoded image bytes in, text out: decoding, resizing, the model, CTC decoding) and the "
                    "model alone, at each batch size, with eval.threads threads (0 = all cores); ms/image, "
                    "images/s and peak RSS, each measured in a fresh process.")
    p.add_argument("--backbones", nargs="+", default=list(BACKBONE_PRESETS), choices=list(BACKBONE_PRESETS))
    p.add_argument("--batch-sizes", nargs="+", type=positive_int, default=[1, 64])
    p.add_argument("--min-seconds", type=float, default=2.0,
                   help="timed seconds per measurement, at least (and at least 3 batches)")
    p.add_argument("--data", metavar="DIR", default=None,
                   help="LMDB(s) whose images are recognized (default: the first source's validation split)")
    _finish(p, _bench_infer)


def _finish(p: argparse.ArgumentParser, func) -> None:
    """What every bench command ends with: --json, the params options and the function it runs."""
    p.add_argument("--json", action="store_true", help="print the rows as JSON at the end")
    add_config_args(p)
    p.set_defaults(func=func)


def _bench_train(args: argparse.Namespace) -> int:
    from rosetta.bench.train import bench_train

    rows = bench_train(config_from_args(args), args.backbones, args.batch_size, args.steps, args.warmup,
                       Path(args.data) if args.data else None, tuple(args.modes), args.processes)
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


def _bench_serve(args: argparse.Namespace) -> int:
    from rosetta.bench.serve import bench_serve
    from rosetta.delivery.http_server import running_server

    with running_server(config_from_args(args), args.model_uri) as url:
        rows = bench_serve(url, args.batch_sizes, args.requests)
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


def _bench_infer(args: argparse.Namespace) -> int:
    import tempfile

    from rosetta.bench.infer import bench_infer
    from rosetta.delivery.export import validation_dir

    if args.min_seconds < 0:
        raise RosettaError("--min-seconds must be at least 0")
    cfg = config_from_args(args)
    with tempfile.TemporaryDirectory(prefix="rosetta-bench-infer-") as tmp:
        rows = bench_infer(cfg, args.backbones, args.batch_sizes, Path(args.data) if args.data else validation_dir(cfg),
                           Path(tmp), args.min_seconds)
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0

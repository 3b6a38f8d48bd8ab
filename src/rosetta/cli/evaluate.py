"""``rosetta evaluate``: score a checkpoint or an exported model on benchmark sets (LMDBs or gt-file sets)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from rosetta.cli.common import add_config_args, config_from_args

EVAL_MARKER = ".rosetta-eval"  # in a folder `evaluate --out` wrote: the next one may write over its files


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="score a model on benchmark sets",
        description="Score a checkpoint (.pt) or an exported model (.onnx) on every benchmark set below DIR, each "
                    "an LMDB or a DTRB gt-file set (<SET>/gt.txt listing images/x.png<TAB>label, converted on the "
                    "way) named by its folder: accuracy and norm_edit_dis per set (PaddleOCR's RecMetric: case and "
                    "characters outside 0-9a-z ignored), the sample-weighted total, the mean of the sets and, with "
                    "all of DTRB's seven sets, their total. Without --data: what the pipeline scores, the "
                    "data.benchmarks LMDBs and the converted data.real_benchmarks sets (their total: "
                    "accuracy_real).")
    p.add_argument("--model", metavar="CHECKPOINT", default=None,
                   help="checkpoint or .onnx file, or a registered version models:/<name>@<alias> (checked against "
                        "the registry) (default: <train.out_dir>/best.pt)")
    p.add_argument("--data", metavar="DIR", default=None,
                   help="folder of benchmark sets, LMDBs or gt-file sets, e.g. ../shared/benchmarks (default: "
                        "<data.root>/lmdb/benchmarks and <data.root>/real/lmdb)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="also write metrics.json, metrics.md and gallery.png there")
    p.add_argument("--run-id", default=None,
                   help="the MLflow training run to log under (default: the run the model file names); the "
                        "results go to a nested run 'evaluate <sets>' with the gallery, each set's metrics to the "
                        "training run too")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    add_config_args(p)
    p.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from rosetta.evaluation.evaluate import evaluate_benchmarks
    from rosetta.fsutil import claim_folder
    from rosetta.evaluation.report import markdown_table
    from rosetta.evaluation.sets import scored_sets
    from rosetta.layout import RunLayout
    from rosetta.recognition.model_file import model_file

    cfg = config_from_args(args)
    sets = scored_sets(cfg)
    data, real = (Path(args.data), None) if args.data else (sets.benchmarks, sets.real)
    if args.out:  # never over a metrics.json of someone else's: the folder is new, empty, or an earlier --out
        claim_folder(Path(args.out), EVAL_MARKER, "give --out a new or empty folder")
    with model_file(cfg, args.model or RunLayout.from_config(cfg).best_checkpoint) as model:
        summary = evaluate_benchmarks(model, data, cfg, Path(args.out) if args.out else None, args.run_id, real)
    print(json.dumps(summary, indent=2) if args.json else markdown_table(summary), end="\n" if args.json else "")
    return 0

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
                    "accuracy_real). The pipeline's best.pt (the default --model) also gets the validation accuracies "
                    "it was chosen on and the calibration of its confidence on that split, as the evaluate stage "
                    "does: the stage is `rosetta evaluate --out runs/eval --run-id <the run of runs/train/run.json>`.")
    p.add_argument("--model", metavar="CHECKPOINT", default=None,
                   help="checkpoint or .onnx file, or a registered version models:/<name>@<alias> (checked against "
                        "the registry) (default: <train.out_dir>/best.pt)")
    p.add_argument("--data", metavar="DIR", default=None,
                   help="folder of benchmark sets, LMDBs or gt-file sets, e.g. ../shared/benchmarks (default: "
                        "<data.root>/lmdb/benchmarks and <data.root>/real/lmdb)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="also write metrics.json, metrics.md and gallery.png there (and reliability.png for the "
                        "pipeline's best.pt)")
    p.add_argument("--run-id", default=None,
                   help="the MLflow training run to log under (default: the run the model file names); the "
                        "results go to a nested run 'evaluate <sets>' with the gallery, each set's metrics to the "
                        "training run too")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    add_config_args(p)
    p.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from rosetta.evaluation.evaluate import evaluate_model
    from rosetta.evaluation.report import markdown_table
    from rosetta.fsutil import claim_folder

    cfg = config_from_args(args)
    out = Path(args.out) if args.out else None
    if out:  # never over a metrics.json of someone else's: the folder is new, empty, or an earlier --out
        claim_folder(out, EVAL_MARKER, "give --out a new or empty folder")
    summary = evaluate_model(cfg, args.model, Path(args.data) if args.data else None, out, args.run_id)
    print(json.dumps(summary, indent=2) if args.json else markdown_table(summary), end="\n" if args.json else "")
    return 0

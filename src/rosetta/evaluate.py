"""Benchmark evaluation: every LMDB below a folder is one set, scored with PaddleOCR's RecMetric; the
results go to a JSON (DVC metrics), a Markdown table, a gallery of the worst mistakes and, given a run
id, into that MLflow run. The metric arithmetic lives in ``rosetta.metrics``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rosetta.charset import Charset
from rosetta.cliutil import add_config_args, config_from_args, run_guarded
from rosetta.config import Config, DataLayout, project_path
from rosetta.data.dataset import LmdbDataset
from rosetta.data.loader import EvalSet, eval_loader
from rosetta.errors import RosettaError
from rosetta.inference import ProbsFn, load_recognizer
from rosetta.metrics import SetMetrics, flat_metrics, score_sample, set_metrics, summarize
from rosetta.plots import Mistake, mistakes_gallery

METRICS_JSON = "metrics.json"
METRICS_MD = "metrics.md"
GALLERY_PNG = "gallery.png"


def predict_dataset(probs_fn: ProbsFn, dataset, charset: Charset, batch_size: int, height: int = 32,
                    width: int = 100) -> list[tuple[str, float]]:
    """``(text, confidence)`` for every sample of a ``(PIL image, label)`` dataset, in order, at the fixed
    training width as PaddleOCR's eval does (not predict_rec.py's widest-ratio batches)."""
    out: list[tuple[str, float]] = []
    for images, _ in eval_loader(EvalSet(dataset, height, width), batch_size):
        out += charset.ctc_decode(probs_fn(images.numpy()))
    return out


def evaluate_benchmarks(checkpoint: Path, data_dir: Path, cfg: Config, out_dir: Path | None = None,
                        run_id: str | None = None) -> dict:
    """Score ``checkpoint`` (a ``.pt`` or an exported ``.onnx``) on every LMDB below ``data_dir``.

    Returns the metrics: ``sets`` (per set: accuracy, norm_edit_dis, count), ``accuracy_total``
    (sample-weighted), ``accuracy_mean`` (mean of the sets), ``norm_edit_dis_total``, ``count_total``,
    ``accuracy_total7`` (DTRB's seven sets, when all are present) and ``images_per_s``. With ``out_dir``
    writes metrics.json, metrics.md and gallery.png there; with ``run_id`` logs them into that MLflow run.
    """
    from rosetta.train import resolve_device, use_cpu_fast_paths

    device = resolve_device(cfg.train.device)
    if device.type == "cpu":
        use_cpu_fast_paths(cfg.train.threads)
    recognizer = load_recognizer(checkpoint, str(device), batch_size=cfg.eval.batch_size)
    dataset = LmdbDataset(data_dir, recognizer.charset)
    if len(dataset) == 0:
        raise RosettaError(f"{data_dir}: no sample survives the charset's label rules; nothing to evaluate")
    start = time.perf_counter()
    preds = predict_dataset(recognizer.probs_fn, dataset, recognizer.charset, cfg.eval.batch_size,
                            recognizer.height, recognizer.base_width)
    seconds = time.perf_counter() - start
    scores = [score_sample(p, t) for (p, _), t in zip(preds, dataset.labels)]
    per_set: dict[str, SetMetrics] = {
        s.name: set_metrics(scores[s.offset:s.offset + s.num_kept]) for s in dataset.sets if s.num_kept}
    summary = summarize(per_set)
    summary["images_per_s"] = len(dataset) / seconds
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / METRICS_JSON).write_text(json.dumps(summary, indent=2) + "\n")
        (out_dir / METRICS_MD).write_text(markdown_table(summary))
        worst = worst_mistakes(preds, scores, cfg.eval.gallery_size)
        mistakes_gallery([Mistake(dataset[i][0], dataset.labels[i], preds[i][0], preds[i][1], dataset.set_of(i))
                          for i in worst], out_dir / GALLERY_PNG)
    if run_id is not None:
        _log_to_run(cfg, run_id, summary, out_dir)
    return summary


def worst_mistakes(preds: list[tuple[str, float]], scores, limit: int) -> list[int]:
    """Indices of wrong predictions, farthest from the truth first, then the most confident."""
    wrong = [i for i, s in enumerate(scores) if not s.correct]
    wrong.sort(key=lambda i: (-scores[i].edit_distance, -preds[i][1]))
    return wrong[:limit]


def markdown_table(summary: dict) -> str:
    lines = ["| set | count | accuracy | norm_edit_dis |", "|---|---:|---:|---:|"]
    for name, m in summary["sets"].items():
        lines.append(f"| {name} | {m['count']} | {100 * m['accuracy']:.2f} % | {m['norm_edit_dis']:.4f} |")
    lines.append(f"| **total** (sample-weighted) | {summary['count_total']} | {100 * summary['accuracy_total']:.2f} % "
                 f"| {summary['norm_edit_dis_total']:.4f} |")
    lines.append(f"| **mean** of the sets | | {100 * summary['accuracy_mean']:.2f} % | |")
    if "accuracy_total7" in summary:
        lines.append(f"| **total of DTRB's 7 sets** | | {100 * summary['accuracy_total7']:.2f} % | |")
    return "\n".join(lines) + f"\n\n{summary['images_per_s']:.0f} images/s\n"


def _log_to_run(cfg: Config, run_id: str, summary: dict, out_dir: Path | None) -> None:
    from rosetta.tracking import Tracker

    tracker = Tracker(cfg, run_id)
    tracker.log_metrics(flat_metrics(summary))
    if out_dir is not None:
        for name in (METRICS_JSON, METRICS_MD, GALLERY_PNG):
            tracker.log_artifact(Path(out_dir) / name, "eval")
    tracker.end()


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="score a model on benchmark LMDBs",
        description="Score a checkpoint (.pt) or an exported model (.onnx) on every LMDB below DIR (each is one "
                    "set, named by its folder): accuracy and norm_edit_dis per set (PaddleOCR's RecMetric), the "
                    "sample-weighted total, the mean of the sets and, with all of DTRB's seven sets, their total.")
    p.add_argument("--model", metavar="CHECKPOINT", default=None,
                   help="checkpoint or .onnx file (default: <train.out_dir>/best.pt)")
    p.add_argument("--data", metavar="DIR", default=None,
                   help="folder of benchmark LMDBs (default: <data.root>/lmdb/benchmarks)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="also write metrics.json, metrics.md and gallery.png there")
    p.add_argument("--run-id", default=None, help="log the metrics into this MLflow run")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    add_config_args(p)
    p.set_defaults(func=_evaluate_command)


def _evaluate_command(args: argparse.Namespace) -> int:
    def body() -> int:
        cfg = config_from_args(args)
        model = Path(args.model) if args.model else project_path(cfg.train.out_dir) / "best.pt"
        data = Path(args.data) if args.data else DataLayout.from_config(cfg).benchmarks
        summary = evaluate_benchmarks(model, data, cfg, Path(args.out) if args.out else None, args.run_id)
        print(json.dumps(summary, indent=2) if args.json else markdown_table(summary), end="" if not args.json else "\n")
        return 0

    return run_guarded(body)


"""A recipe's accuracy against training minutes, drawn from its MLflow runs (the curve in docs/recipe.md).

Each run's accuracy on the real validation split at each evaluation during training (``val/real_accuracy``), against
the minutes its steps take at a stated training speed (``--images-per-s``: the idle machine's, so that a run made
while other work shared the cores is drawn as the recipe runs, not as the load ran it), with the wall minutes the
run itself took beside them in the table. Prints a Markdown table and writes a PNG.

    python scripts/recipe_curve.py --run default=<run id> --run long=<run id> --images-per-s 254 \\
        --out docs/recipe_curve.png
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from rosetta.errors import RosettaError, run_guarded

METRIC = "val/real_accuracy"


@dataclass(frozen=True)
class Point:
    step: int
    minutes: float  # at the stated speed
    wall_minutes: float  # since the run started, as it ran
    accuracy: float


def points(history: list[tuple[int, float, int]], start_ms: int, images_per_step: int,
           images_per_s: float) -> list[Point]:
    """``(step, value, timestamp ms)`` of a metric's history as points of the curve, by step."""
    return [Point(step, step * images_per_step / images_per_s / 60, (ms - start_ms) / 60000, value)
            for step, value, ms in sorted(history)]


def table(curves: dict[str, list[Point]], images_per_s: float) -> str:
    rows = [f"| run | step | minutes at {images_per_s:g} img/s | wall minutes (as run) | real val accuracy |",
            "|---|---:|---:|---:|---:|"]
    for label, curve in curves.items():
        rows += [f"| {label} | {p.step:,} | {p.minutes:.1f} | {p.wall_minutes:.1f} | {p.accuracy:.4f} |"
                 for p in curve]
    return "\n".join(rows)


def draw(curves: dict[str, list[Point]], images_per_s: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for label, curve in curves.items():
        ax.plot([p.minutes for p in curve], [p.accuracy for p in curve], marker="o", label=label)
    ax.set_xlabel(f"training minutes at {images_per_s:g} img/s")
    ax.set_ylabel("word accuracy, real validation split")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)


def run_curve(client, run_id: str, images_per_s: float, metric: str = METRIC) -> list[Point]:
    run = client.get_run(run_id)
    params = run.data.params
    images_per_step = int(params["train.batch_size"]) * int(params.get("train.nproc", "1"))
    history = [(m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, metric)]
    if not history:
        raise RosettaError(f"run {run_id} logged no {metric}; pass a training run that evaluated at least once")
    return points(history, run.info.start_time, images_per_step, images_per_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, metavar="LABEL=RUN_ID",
                        help="a training run and its label in the legend (repeat for more)")
    parser.add_argument("--tracking-uri", default=None, help="default: the project's (mlflow.tracking_uri)")
    parser.add_argument("--images-per-s", type=float, required=True, help="the training speed the minutes assume")
    parser.add_argument("--metric", default=METRIC)
    parser.add_argument("--out", type=Path, default=Path("docs/recipe_curve.png"))
    args = parser.parse_args(argv)

    def go() -> int:
        from mlflow import MlflowClient

        from rosetta.config import load_config
        from rosetta.tracking.store import tracking_uri

        uri = args.tracking_uri or tracking_uri(load_config())
        client = MlflowClient(tracking_uri=uri)
        curves = {}
        for item in args.run:
            label, sep, run_id = item.partition("=")
            if not sep or not run_id:
                raise RosettaError(f"--run {item!r}: give LABEL=RUN_ID, e.g. --run default=0123abcd")
            curves[label] = run_curve(client, run_id, args.images_per_s, args.metric)
        print(table(curves, args.images_per_s))
        draw(curves, args.images_per_s, args.out)
        print(f"curve: {args.out}")
        return 0

    return run_guarded(go)


if __name__ == "__main__":
    sys.exit(main())

"""DVC stage ``evaluate``: the best checkpoint on every benchmark LMDB and the converted real sets, as DVC
metrics (with the validation accuracy best.pt was chosen on, and the calibration of its confidence on that
validation split), a Markdown table, a gallery of mistakes and a reliability diagram under ``runs/eval/``, logged
under the training run named by ``runs/train/run.json`` (a nested run, and the scores on the training run
itself)."""
import _interpreter  # noqa: F401  (first: runs the stage under the project's interpreter)
import json
import sys

from rosetta.config import load_config
from rosetta.data.splits import selected_split
from rosetta.errors import run_guarded
from rosetta.evaluation.evaluate import evaluate_benchmarks
from rosetta.evaluation.metrics import validation_of
from rosetta.evaluation.report import markdown_table
from rosetta.evaluation.sets import scored_sets
from rosetta.layout import RunLayout
from rosetta_infer.charset import Charset


def main() -> int:
    cfg = load_config()
    runs = RunLayout.from_config(cfg)
    run = json.loads(runs.run_json.read_text())
    sets = scored_sets(cfg)
    validation = validation_of(json.loads(runs.train_metrics.read_text()))
    summary = evaluate_benchmarks(runs.best_checkpoint, sets.benchmarks, cfg, runs.eval, run.get("run_id"),
                                  real_dir=sets.real, validation=validation,
                                  calibrate_on=selected_split(cfg, Charset.from_config(cfg.charset)))
    print(markdown_table(summary), end="")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))

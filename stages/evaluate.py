"""DVC stage ``evaluate``: the best checkpoint on every benchmark LMDB and the converted real sets, as DVC
metrics (with the validation accuracy best.pt was chosen on, and the calibration of its confidence on that
validation split), a Markdown table, a gallery of mistakes and a reliability diagram under ``runs/eval/``, logged
under the training run named by ``runs/train/run.json`` (a nested run, and the scores on the training run
itself)."""
import json
import sys

from rosetta.config import load_config
from rosetta.errors import run_guarded
from rosetta.evaluation.evaluate import evaluate_model
from rosetta.evaluation.report import markdown_table
from rosetta.layout import RunLayout


def main() -> int:
    cfg = load_config()
    runs = RunLayout.from_config(cfg)
    run = json.loads(runs.run_json.read_text())
    # What `rosetta evaluate --out runs/eval --run-id <run.json's>` does: the same call.
    summary = evaluate_model(cfg, out_dir=runs.eval, run_id=run.get("run_id"))
    print(markdown_table(summary), end="")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))

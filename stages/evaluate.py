"""DVC stage ``evaluate``: the best checkpoint on every benchmark LMDB and the converted real sets, as DVC
metrics, a Markdown table and a gallery of mistakes under ``runs/eval/``, logged under the training run named
by ``runs/train/run.json`` (a nested run, and the scores on the training run itself)."""
import json
import sys

from rosetta.errors import run_guarded
from rosetta.config import RunLayout, load_config
from rosetta.evaluate import evaluate_benchmarks, markdown_table, pipeline_benchmarks


def main() -> int:
    cfg = load_config()
    runs = RunLayout.from_config(cfg)
    run = json.loads(runs.run_json.read_text())
    benchmarks, real = pipeline_benchmarks(cfg)
    summary = evaluate_benchmarks(runs.best_checkpoint, benchmarks, cfg, runs.eval, run.get("run_id"), real_dir=real)
    print(markdown_table(summary), end="")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))

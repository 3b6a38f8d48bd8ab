"""DVC stage ``evaluate``: the best checkpoint on every benchmark LMDB, as DVC metrics, a Markdown table and
a gallery of mistakes under ``runs/eval/``, logged into the training run named by ``runs/train/run.json``."""
import json
import sys

from rosetta.cliutil import run_guarded
from rosetta.config import DataLayout, load_config, project_path
from rosetta.evaluate import evaluate_benchmarks, markdown_table
from rosetta.train import BEST, RUN_JSON


def main() -> int:
    cfg = load_config()
    train_dir = project_path(cfg.train.out_dir)
    run = json.loads((train_dir / RUN_JSON).read_text())
    summary = evaluate_benchmarks(train_dir / BEST, DataLayout.from_config(cfg).benchmarks, cfg,
                                  project_path(cfg.eval.out_dir), run.get("run_id"))
    print(markdown_table(summary), end="")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))

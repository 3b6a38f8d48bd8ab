"""DVC stage ``train``: train per params.yaml, resuming from ``runs/train/checkpoints/last.pt`` after a
crash; writes ``best.pt``, ``run.json`` (the MLflow run the evaluate stage continues), metrics and plots."""
import sys

from rosetta.config import load_config
from rosetta.errors import run_guarded
from rosetta.training.trainer import run_training


def main() -> int:
    run_training(load_config())
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))

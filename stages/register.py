"""DVC stage ``register``: the exported model into the MLflow Model Registry as a version of
``registry.model_name`` (in the training run named by ``runs/train/run.json``, with the benchmark metrics of
``runs/eval/metrics.json``), promoted to the production alias when it beats production; the decision goes to
``runs/register/decision.json``."""
import sys

from rosetta.config import load_config
from rosetta.errors import run_guarded
from rosetta.registry.versions import register


def main() -> int:
    register(load_config())
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))

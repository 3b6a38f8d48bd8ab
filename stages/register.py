"""DVC stage ``register``: the exported model into the MLflow Model Registry as a version of
``registry.model_name`` (in the training run named by ``runs/train/run.json``, with the benchmark metrics of
``runs/eval/metrics.json``), promoted to the production alias when it beats production; the decision goes to
``runs/register/decision.json``."""
import sys

from rosetta.config import load_config
from rosetta.delivery.registry import pipeline_inputs, register_and_promote
from rosetta.errors import run_guarded
from rosetta.layout import RunLayout


def main() -> int:
    cfg = load_config()
    onnx, parity, metrics, run_id = pipeline_inputs(cfg)
    register_and_promote(cfg, onnx, parity, metrics, run_id, RunLayout.from_config(cfg).decision)
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))

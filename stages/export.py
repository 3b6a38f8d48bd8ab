"""DVC stage ``export``: ``runs/train/best.pt`` to ``runs/export/model.onnx``, gated by ONNX Runtime vs PyTorch
parity on the validation split; the parity figures go to ``runs/export/parity.json`` (a DVC metric). With
``export.int8: true`` also ``runs/export/model.int8.onnx``, gated on its own (``runs/export/int8.json``)."""
import _interpreter  # noqa: F401  (first: runs the stage under the project's interpreter)
import sys

from rosetta.config import load_config
from rosetta.delivery.export import export_checkpoint
from rosetta.delivery.int8 import export_int8
from rosetta.errors import run_guarded
from rosetta.layout import RunLayout


def main() -> int:
    cfg = load_config()
    runs = RunLayout.from_config(cfg)
    report = export_checkpoint(runs.best_checkpoint, runs.onnx, cfg, runs.parity)
    print(report.summary())
    if cfg.export.int8:
        print(export_int8(runs.onnx, cfg, runs.int8_report).summary())
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))

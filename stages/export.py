"""DVC stage ``export``: ``runs/train/best.pt`` to ``runs/export/model.onnx``, gated by ONNX Runtime vs PyTorch
parity on the validation split; the parity figures go to ``runs/export/parity.json`` (a DVC metric). With
``export.int8: true`` also ``runs/export/model.int8.onnx``, gated on its own (``runs/export/int8.json``)."""
import sys

from rosetta.config import load_config
from rosetta.delivery.export_model import export_model
from rosetta.errors import run_guarded


def main() -> int:
    # What `rosetta export --model runs/train/best.pt` does: the same call, every path the pipeline's.
    for path, report in export_model(load_config()):
        print(report.summary())
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))

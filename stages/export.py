"""DVC stage ``export``: ``runs/train/best.pt`` to ``runs/export/model.onnx``, gated by ONNX Runtime vs PyTorch
parity on the validation split; the parity figures go to ``runs/export/parity.json`` (a DVC metric)."""
import sys

from rosetta.cliutil import run_guarded
from rosetta.config import load_config, project_path
from rosetta.export import default_paths, export_checkpoint
from rosetta.train import BEST


def main() -> int:
    cfg = load_config()
    onnx, parity = default_paths(cfg)
    report = export_checkpoint(project_path(cfg.train.out_dir) / BEST, onnx, cfg, parity)
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))

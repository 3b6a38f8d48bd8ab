"""DVC stage ``download``: each source's raw data under ``data/raw/<source>`` (synth is rendered, the
others downloaded and extracted), plus the benchmarks archive when ``data.benchmarks.url`` is set."""
import _interpreter  # noqa: F401  (first: runs the stage under the project's interpreter)
import sys

from rosetta.config import load_config
from rosetta.data.download import prepare_raw
from rosetta.errors import run_guarded
from rosetta.layout import DataLayout


def main() -> int:
    cfg = load_config()
    for name, path in prepare_raw(cfg.data, cfg.seed, DataLayout.from_config(cfg)).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))

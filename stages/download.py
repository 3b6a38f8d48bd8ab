"""DVC stage ``download``: each source's raw data under ``data/raw/<source>`` (synth is rendered, the
others downloaded and extracted), plus the benchmarks archive when ``data.benchmarks.url`` is set."""
import sys

from rosetta.config import load_config
from rosetta.errors import run_guarded
from rosetta.layout import DataLayout
from rosetta.prep.download import prepare_raw


def main() -> int:
    cfg = load_config()
    for name, path in prepare_raw(cfg.data, cfg.seed, DataLayout.from_config(cfg)).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))

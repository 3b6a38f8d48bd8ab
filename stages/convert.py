"""DVC stage ``convert``: every source's raw data to LMDBs under ``data/lmdb/<source>/{train,val,test}``
and the evaluation sets under ``data/lmdb/benchmarks/``."""
import sys

from rosetta.config import load_config
from rosetta.errors import run_guarded
from rosetta.layout import DataLayout
from rosetta.prep.convert import convert_sources


def main() -> int:
    cfg = load_config()
    for name, report in convert_sources(cfg.data, DataLayout.from_config(cfg)).items():
        print(f"{name}: {report['written']} samples, {report['rejected_total']} rejected {report['rejected']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))

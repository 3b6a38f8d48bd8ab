"""DVC stage ``convert_real``: the real test sets fingerprinted in ``data/real/manifest.json`` to one LMDB
per set under ``data/real/lmdb/`` (never a training input: only ``evaluate`` reads them)."""
import sys

from rosetta.config import load_config
from rosetta.errors import run_guarded
from rosetta.layout import DataLayout
from rosetta.prep.benchmarks import convert_real_benchmarks


def main() -> int:
    cfg = load_config()
    layout = DataLayout.from_config(cfg)
    for name, report in convert_real_benchmarks(layout.real_manifest, layout.real_benchmarks, cfg.data.workers).items():
        print(f"{name}: {report['written']} samples, {report['rejected_total']} rejected {report['rejected']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))

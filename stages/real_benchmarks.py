"""DVC stage ``real_benchmarks``: fingerprints the real test sets of ``data.real_benchmarks``, which live
outside the repository, into ``data/real/manifest.json``. It runs on every ``dvc repro`` (DVC cannot hash a
folder that may be missing); the manifest changes only when the sets do, and only then does
``convert_real`` run again. Where the folder is missing it says so in one line."""
import sys

from rosetta.config import load_config
from rosetta.errors import run_guarded
from rosetta.layout import DataLayout
from rosetta.prep.benchmarks import describe, write_real_manifest


def main() -> int:
    cfg = load_config()
    print(describe(write_real_manifest(cfg.data.real_benchmarks, DataLayout.from_config(cfg).real_manifest)))
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))

"""DVC stage ``real_train``: fingerprints the real training sets of ``data.real_train``, which live outside the
repository, into ``data/realtrain/manifest.json``. It runs on every ``dvc repro``; the manifest changes only
when the sets do, and only then does ``convert_real_train`` run again. Where the folder is missing it says so in
one line, and training uses the other sources."""
import _interpreter  # noqa: F401  (first: runs the stage under the project's interpreter)
import sys

from rosetta.config import load_config
from rosetta.data.real_train import describe, write_real_train_manifest
from rosetta.errors import run_guarded
from rosetta.layout import DataLayout


def main() -> int:
    cfg = load_config()
    print(describe(write_real_train_manifest(cfg.data.real_train, DataLayout.from_config(cfg).real_train_manifest)))
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))

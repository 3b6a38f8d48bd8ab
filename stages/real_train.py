"""DVC stage ``real_train``: fingerprints the real training sets of ``data.real_train``, which live outside the
repository, into ``data/realtrain/manifest.json``. It runs on every ``dvc repro``; the manifest changes only
when the sets do, and only then does ``convert_real_train`` run again. Where the folder is missing it says so in
one line, and training uses the other sources."""
import sys

from rosetta.config import load_config
from rosetta.data.sources import describe_real_train
from rosetta.errors import run_guarded
from rosetta.layout import DataLayout
from rosetta.prep.real_train import write_real_train_manifest


def main() -> int:
    cfg = load_config()
    manifest = write_real_train_manifest(cfg.data.real_train, DataLayout.from_config(cfg).real_train_manifest)
    print(describe_real_train(manifest))
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))

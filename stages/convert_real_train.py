"""DVC stage ``convert_real_train``: the real training sets fingerprinted in ``data/realtrain/manifest.json`` to
``data/realtrain/lmdb/{train,val}/<SET>`` (a seeded share held out to choose best.pt on), unlearnable labels
dropped and counted, checked against every benchmark image (a copy refused, a near-duplicate dropped)."""
import sys

from rosetta_infer.charset import Charset
from rosetta.config import load_config
from rosetta.errors import run_guarded
from rosetta.layout import DataLayout
from rosetta.prep.real_train import convert_real_train, missing_note


def main() -> int:
    cfg = load_config()
    layout = DataLayout.from_config(cfg)
    charset = Charset.from_config(cfg.charset)
    report = convert_real_train(layout.real_train_manifest, layout.real_train, charset,
                                cfg.data.real_val_fraction, cfg.seed, [layout.benchmarks, layout.real_benchmarks],
                                cfg.data.workers)
    for name, entry in report["sets"].items():
        print(f"{name}: {entry['written']} written (train, val), {entry['listed']} listed, dropped {entry['dropped']}")
        note = missing_note(entry, name, charset, cfg.charset.dict_path)
        if note:
            print(note)
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))

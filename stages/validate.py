"""DVC stage ``validate``: the Great Expectations suite over every LMDB, with its JSON results, the
conversion rejects and label statistics as DVC metrics and plots under ``data/reports/``."""
import sys

from rosetta.charset import Charset
from rosetta.errors import run_guarded
from rosetta.config import DataLayout, load_config
from rosetta.data.validate import validate_datasets
from rosetta.errors import RosettaError


def main() -> int:
    cfg = load_config()
    layout = DataLayout.from_config(cfg)
    roots = {source: layout.lmdb(source) for source in cfg.data.sources}
    roots["benchmarks"] = layout.benchmarks
    results = validate_datasets(roots, Charset.from_config(cfg.charset), cfg.data.validation, layout.reports,
                                cfg.data.workers)
    for result in results:
        print(result.summary)
    failed = [r.name for r in results if not r.success]
    if failed:
        raise RosettaError(f"data validation failed for {', '.join(failed)}; see the summaries above and "
                           f"the GX results in {layout.reports}")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))

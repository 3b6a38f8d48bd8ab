"""DVC stage ``validate``: the Great Expectations suite over every LMDB (the real training sets included) and
the check that no training image is a benchmark image, with the JSON results, the conversion rejects and label
statistics as DVC metrics and plots under ``data/reports/``."""
import sys

from rosetta.config import load_config
from rosetta.errors import RosettaError, run_guarded
from rosetta.layout import DataLayout
from rosetta.prep.validate import validate_pipeline_data


def main() -> int:
    cfg = load_config()
    results = validate_pipeline_data(cfg)
    for result in results:
        print(result.summary)
    failed = [r.name for r in results if not r.success]
    if failed:
        raise RosettaError(f"data validation failed for {', '.join(failed)}; see the summaries above and "
                           f"the GX results in {DataLayout.from_config(cfg).reports}")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))

"""Which benchmark sets the pipeline scores: one answer for evaluation, the int8 gate and promotion."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rosetta.config import Config
from rosetta.layout import DataLayout
from rosetta.prep.benchmarks import real_lmdbs
from rosetta.prep.convert import find_benchmark_sets


@dataclass(frozen=True)
class ScoredSets:
    benchmarks: Path  # the data.benchmarks LMDBs (by default the synth test split)
    real: Path | None  # the data.real_benchmarks sets where the convert_real stage found and converted some

    @property
    def folders(self) -> list[Path]:
        """The scored folders that hold a set, ``benchmarks`` first."""
        return [d for d in (self.benchmarks, self.real) if d is not None and find_benchmark_sets(d)]


def scored_sets(cfg: Config) -> ScoredSets:
    """What the pipeline scores: the evaluate stage, ``rosetta evaluate`` without ``--data``, the int8 gate and
    the registry's benchmark-set tags all read it here."""
    layout = DataLayout.from_config(cfg)
    return ScoredSets(layout.benchmarks, real_lmdbs(layout.real_benchmarks))

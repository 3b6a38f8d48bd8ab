"""The promotion rule, pure: a registered version takes the production alias only when its parity gate passed,
its score reaches ``registry.min_score`` and, on the same benchmark set, beats production's by more than
``registry.margin`` without losing more than ``registry.max_set_drop`` on any set both were scored on (a fine-tuned
model that gains on a user's words and forgets IIIT5k does not take production). ``Evidence`` is what a version's
tags say; ``rosetta.registry.promotion`` applies the rule.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Collection, Mapping

from rosetta.config import RegistryConfig

# The evidence tags of a registered version that the rule reads.
TAG_BENCHMARK = "benchmark_set"
TAG_BENCHMARK_REAL = "benchmark_set.real"  # the real sets alone: what accuracy_real compares on
TAG_PARITY = "parity.passed"
METRIC_TAG_PREFIX = "metric."
SET_ACCURACY = "/accuracy"  # metric.<set>/accuracy: a set's folded accuracy
AUTO_METRIC = "auto"  # registry.metric: the real benchmark total where scored, else accuracy_total
REAL_METRIC = "accuracy_real"


def resolve_metric(metric: str, available: Collection[str]) -> str:
    """The metric ``registry.metric`` means for a version scored on ``available`` metrics: ``auto`` is the
    real benchmark sets' total (``accuracy_real``) where they were scored, else ``accuracy_total``."""
    if metric != AUTO_METRIC:
        return metric
    return REAL_METRIC if REAL_METRIC in available else "accuracy_total"


def set_names(benchmark_set: str | None) -> set[str] | None:
    """The sets a ``benchmark_set`` tag lists (``3f2a9c1b0d4e: IIIT5k_3000=3000, SVT=647``), or None without one."""
    if not benchmark_set or ": " not in benchmark_set:
        return None
    return {part.rsplit("=", 1)[0] for part in benchmark_set.split(": ", 1)[1].split(", ") if part}


@dataclass(frozen=True)
class Evidence:
    """What promotion compares, read from a version's tags."""

    version: str
    score: float | None
    benchmark_set: str | None
    parity_passed: bool
    metric: str | None = None  # what ``score`` is (registry.metric resolved); None = registry.metric as it is
    sets: Mapping[str, float] = field(default_factory=dict)  # each compared set's (folded) accuracy

    @classmethod
    def from_tags(cls, version: str, tags: Mapping[str, str], metric: str, guarded: Collection[str] = ()
                  ) -> "Evidence":
        metric = resolve_metric(metric, [k[len(METRIC_TAG_PREFIX):] for k in tags if k.startswith(METRIC_TAG_PREFIX)])
        raw = tags.get(METRIC_TAG_PREFIX + metric)
        try:
            score = float(raw) if raw is not None else None
        except ValueError:
            score = None
        # A real-set metric compares on the real sets alone, whatever synth test split (renderer) each had.
        bench = tags.get(TAG_BENCHMARK_REAL if metric.endswith("_real") and TAG_BENCHMARK_REAL in tags else TAG_BENCHMARK)
        # The sets the metric compares over (the benchmark tag names them): each one is guarded.
        names = set_names(bench)
        names = None if names is None else names | set(guarded)
        sets = {}
        for key, value in tags.items():
            name = key[len(METRIC_TAG_PREFIX):-len(SET_ACCURACY)]
            if key.startswith(METRIC_TAG_PREFIX) and key.endswith(SET_ACCURACY) and (names is None or name in names):
                try:
                    sets[name] = float(value)
                except ValueError:
                    continue
        return cls(str(version), score if score is None or math.isfinite(score) else None,
                   bench, tags.get(TAG_PARITY) == "true", metric, sets)


@dataclass
class Decision:
    model_name: str
    version: str
    promoted: bool
    reason: str
    metric: str
    score: float | None
    production_version: str | None  # before the decision
    production_score: float | None
    action: str = "promote"  # promote or rollback
    set_deltas: dict[str, float] = field(default_factory=dict)  # each set's accuracy minus production's

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        verdict = "promoted to production" if self.promoted else "not promoted"
        if self.action == "rollback":
            verdict = "restored to production"
        return f"{self.model_name} v{self.version} {verdict}: {self.reason}"


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def set_deltas(candidate: Evidence, production: Evidence) -> dict[str, float]:
    """Each set both versions were scored on: the candidate's accuracy minus production's."""
    return {name: candidate.sets[name] - production.sets[name] for name in sorted(candidate.sets)
            if name in production.sets}


def decide(candidate: Evidence, production: Evidence | None, registry: RegistryConfig,
           force: bool = False) -> Decision:
    """Promote ``candidate`` over ``production`` only when its parity gate passed, its score reaches
    ``registry.min_score`` and, on the same benchmark set, beats production's by more than ``registry.margin``
    while no set both were scored on drops by more than ``registry.max_set_drop`` (``force`` skips the scores).
    The decision carries every set's delta."""
    metric = candidate.metric or resolve_metric(registry.metric, ())

    deltas = set_deltas(candidate, production) if production is not None else {}

    def result(promoted: bool, reason: str) -> Decision:
        return Decision(registry.model_name, candidate.version, promoted, reason, metric, candidate.score,
                        production.version if production else None, production.score if production else None,
                        set_deltas=deltas)

    if not candidate.parity_passed:
        return result(False, "its ONNX parity gate did not pass")
    if production is not None and production.version == candidate.version:
        return result(False, f"it already has alias {registry.alias!r}")
    if force:
        over = f" over v{production.version} ({metric} {_fmt(production.score)})" if production else ""
        return result(True, f"forced by hand{over}; its {metric} is {_fmt(candidate.score)}")
    if candidate.score is None:
        return result(False, f"it has no {metric} score; evaluate it on the benchmarks first")
    if candidate.score < registry.min_score:
        return result(False, f"{metric} {_fmt(candidate.score)} is below registry.min_score {registry.min_score:g}, "
                             "the floor under which no version is promoted")
    if production is None:
        return result(True, f"no production version yet; this first one scores {metric} {_fmt(candidate.score)}")
    if (production.metric or metric) != metric:
        return result(False, f"its {metric} and production v{production.version}'s {production.metric} are totals over "
                             "different sets, which are never compared; score it on production's sets (a run without "
                             "the real ones: data.real_benchmarks) or promote it with --force")
    if production.benchmark_set != candidate.benchmark_set:
        return result(False, f"it was scored on another benchmark set ({candidate.benchmark_set}) than "
                             f"production v{production.version} ({production.benchmark_set}); compare on the same "
                             "set or promote it with --force")
    if production.score is None:
        return result(True, f"production v{production.version} has no {metric} score to beat; this one has "
                            f"{_fmt(candidate.score)}")
    unscored = [name for name in registry.guarded_sets if name not in candidate.sets or name not in production.sets]
    if unscored:
        which = "it" if unscored[0] not in candidate.sets else f"production v{production.version}"
        return result(False, f"{which} has no score on {unscored[0]}, a set registry.guarded_sets guards; score it "
                             "there (a set under data.benchmarks or data.real_benchmarks), or take it out of "
                             "registry.guarded_sets")
    gain = candidate.score - production.score
    forgotten = {name: d for name, d in deltas.items() if d < -registry.max_set_drop - 1e-9}
    if forgotten and gain > registry.margin:
        worst = ", ".join(f"{name} {d:+.4f}" for name, d in sorted(forgotten.items(), key=lambda kv: kv[1]))
        return result(False, f"it loses more than registry.max_set_drop {registry.max_set_drop:g} against production "
                             f"v{production.version} on {worst}, whatever its {metric} "
                             f"({_fmt(candidate.score)} against {_fmt(production.score)}); train with the base data "
                             "replayed (train.batch_ratio) or promote it with --force")
    if gain > registry.margin:
        return result(True, f"{metric} {_fmt(candidate.score)} beats production v{production.version}'s "
                            f"{_fmt(production.score)} by {gain:+.4f} (> margin {registry.margin:g})")
    return result(False, f"{metric} {_fmt(candidate.score)} does not beat production v{production.version}'s "
                         f"{_fmt(production.score)} by more than registry.margin {registry.margin:g} "
                         f"(difference {gain:+.4f})")

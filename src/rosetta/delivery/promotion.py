"""The promotion rule, pure: a registered version takes the production alias only when its parity gate passed,
its score reaches ``registry.min_score`` and, on the same benchmark set, beats production's by more than
``registry.margin``. ``Evidence`` is what a version's tags say; ``rosetta.delivery.registry`` applies the rule.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Collection, Mapping

from rosetta.config import RegistryConfig

# The evidence tags of a registered version that the rule reads.
TAG_BENCHMARK = "benchmark_set"
TAG_BENCHMARK_REAL = "benchmark_set.real"  # the real sets alone: what accuracy_real compares on
TAG_PARITY = "parity.passed"
METRIC_TAG_PREFIX = "metric."
AUTO_METRIC = "auto"  # registry.metric: the real benchmark total where scored, else accuracy_total
REAL_METRIC = "accuracy_real"


def resolve_metric(metric: str, available: Collection[str]) -> str:
    """The metric ``registry.metric`` means for a version scored on ``available`` metrics: ``auto`` is the
    real benchmark sets' total (``accuracy_real``) where they were scored, else ``accuracy_total``."""
    if metric != AUTO_METRIC:
        return metric
    return REAL_METRIC if REAL_METRIC in available else "accuracy_total"


@dataclass(frozen=True)
class Evidence:
    """What promotion compares, read from a version's tags."""

    version: str
    score: float | None
    benchmark_set: str | None
    parity_passed: bool
    metric: str | None = None  # what ``score`` is (registry.metric resolved); None = registry.metric as it is

    @classmethod
    def from_tags(cls, version: str, tags: Mapping[str, str], metric: str) -> "Evidence":
        metric = resolve_metric(metric, [k[len(METRIC_TAG_PREFIX):] for k in tags if k.startswith(METRIC_TAG_PREFIX)])
        raw = tags.get(METRIC_TAG_PREFIX + metric)
        try:
            score = float(raw) if raw is not None else None
        except ValueError:
            score = None
        # A real-set metric compares on the real sets alone, whatever synth test split (renderer) each had.
        bench = tags.get(TAG_BENCHMARK_REAL if metric.endswith("_real") and TAG_BENCHMARK_REAL in tags else TAG_BENCHMARK)
        return cls(str(version), score if score is None or math.isfinite(score) else None,
                   bench, tags.get(TAG_PARITY) == "true", metric)


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

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        verdict = "promoted to production" if self.promoted else "not promoted"
        if self.action == "rollback":
            verdict = "restored to production"
        return f"{self.model_name} v{self.version} {verdict}: {self.reason}"


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def decide(candidate: Evidence, production: Evidence | None, registry: RegistryConfig,
           force: bool = False) -> Decision:
    """Promote ``candidate`` over ``production`` only when its parity gate passed, its score reaches
    ``registry.min_score`` and, on the same benchmark set, beats production's by more than ``registry.margin``
    (``force`` skips the scores)."""
    metric = candidate.metric or resolve_metric(registry.metric, ())

    def result(promoted: bool, reason: str) -> Decision:
        return Decision(registry.model_name, candidate.version, promoted, reason, metric, candidate.score,
                        production.version if production else None, production.score if production else None)

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
    if production.benchmark_set != candidate.benchmark_set or (production.metric or metric) != metric:
        return result(False, f"it was scored on another benchmark set ({candidate.benchmark_set}) than "
                             f"production v{production.version} ({production.benchmark_set}); compare on the same "
                             "set or promote it with --force")
    if production.score is None:
        return result(True, f"production v{production.version} has no {metric} score to beat; this one has "
                            f"{_fmt(candidate.score)}")
    gain = candidate.score - production.score
    if gain > registry.margin:
        return result(True, f"{metric} {_fmt(candidate.score)} beats production v{production.version}'s "
                            f"{_fmt(production.score)} by {gain:+.4f} (> margin {registry.margin:g})")
    return result(False, f"{metric} {_fmt(candidate.score)} does not beat production v{production.version}'s "
                         f"{_fmt(production.score)} by more than registry.margin {registry.margin:g} "
                         f"(difference {gain:+.4f})")

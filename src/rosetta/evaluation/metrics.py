"""Recognition metrics as PaddleOCR's RecMetric computes them (``is_filter=True``), and their
aggregation over benchmark sets. Pure functions: no files, no models.
"""
from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

# DTRB's paper total: these 7 of the 10 usual sets (the 860/857/1811 variants are the alternatives).
SEVEN_SETS = ("IIIT5k_3000", "SVT", "IC03_867", "IC13_1015", "IC15_2077", "SVTP", "CUTE80")
_KEEP = set(string.digits + string.ascii_letters)


def normalize_text(text: str) -> str:
    """PaddleOCR's ``_normalize_text``: digits and ASCII letters only, lower case (spaces go too)."""
    return "".join(c for c in text if c in _KEEP).lower()


def levenshtein(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def normalized_edit_distance(pred: str, truth: str) -> float:
    """Levenshtein distance over the longer length (rapidfuzz's ``normalized_distance``), 0 for two empties."""
    longest = max(len(pred), len(truth))
    return levenshtein(pred, truth) / longest if longest else 0.0


@dataclass(frozen=True)
class SampleScore:
    correct: bool
    edit_distance: float  # normalized, in [0, 1]


def score_sample(pred: str, truth: str) -> SampleScore:
    p, t = normalize_text(pred), normalize_text(truth)
    return SampleScore(p == t, normalized_edit_distance(p, t))


@dataclass(frozen=True)
class SetMetrics:
    count: int
    correct: int
    edit_distance_sum: float

    @property
    def accuracy(self) -> float:
        return self.correct / self.count if self.count else 0.0

    @property
    def norm_edit_dis(self) -> float:
        return 1.0 - self.edit_distance_sum / self.count if self.count else 0.0


def set_metrics(scores: Iterable[SampleScore]) -> SetMetrics:
    scores = list(scores)
    return SetMetrics(len(scores), sum(s.correct for s in scores), sum(s.edit_distance for s in scores))


def recognition_metrics(preds: Sequence[str], truths: Sequence[str]) -> SetMetrics:
    if len(preds) != len(truths):
        raise ValueError(f"{len(preds)} predictions for {len(truths)} labels")
    return set_metrics(score_sample(p, t) for p, t in zip(preds, truths))


def summarize(sets: Mapping[str, SetMetrics], real: Sequence[str] = ()) -> dict:
    """Per-set accuracy, norm_edit_dis and count; the sample-weighted totals, the plain mean of the sets,
    ``accuracy_total7`` when all of DTRB's seven sets are present, and with ``real`` (the names of the real
    benchmark sets among ``sets``) their own sample-weighted ``accuracy_real``, ``norm_edit_dis_real`` and
    ``count_real``, listed in ``real_sets``."""
    out: dict = {"sets": {name: {"accuracy": m.accuracy, "norm_edit_dis": m.norm_edit_dis, "count": m.count}
                          for name, m in sets.items()}}
    pooled = _pool(sets.values())
    out["accuracy_total"] = pooled.accuracy
    out["norm_edit_dis_total"] = pooled.norm_edit_dis
    out["accuracy_mean"] = sum(m.accuracy for m in sets.values()) / len(sets) if sets else 0.0
    out["count_total"] = pooled.count
    # A set is known by its folder's name, wherever below the data folder it sits.
    by_leaf = {name.rsplit("/", 1)[-1]: m for name, m in sets.items()}
    if all(name in by_leaf for name in SEVEN_SETS):
        out["accuracy_total7"] = _pool(by_leaf[name] for name in SEVEN_SETS).accuracy
    if real:
        pooled_real = _pool(sets[name] for name in real)
        out["real_sets"] = list(real)
        out["accuracy_real"] = pooled_real.accuracy
        out["norm_edit_dis_real"] = pooled_real.norm_edit_dis
        out["count_real"] = pooled_real.count
    return out


def headline_sets(summary: dict) -> list[str]:
    """The scored sets in the order a reader compares them: the real sets first, then the others."""
    real = summary.get("real_sets", [])
    return [*real, *(n for n in summary["sets"] if n not in real)]


def headline_first(summary: dict) -> dict:
    """``summary`` as the evaluate stage writes it for DVC: first what a reader compares runs by, the real sets'
    total, each set's accuracy under its own name (the real sets first) and ``images_per_s``, then the whole
    summary. DVC lists a metrics file's keys in the file's order, so these are the columns ``dvc exp show`` opens
    with, short enough for a terminal."""
    head = {k: summary[k] for k in ("accuracy_real",) if k in summary}
    head.update({name: summary["sets"][name]["accuracy"] for name in headline_sets(summary)})
    head.update({k: summary[k] for k in ("images_per_s",) if k in summary})
    return {**head, **{k: v for k, v in summary.items() if k not in head}}


def _pool(parts: Iterable[SetMetrics]) -> SetMetrics:
    parts = list(parts)
    return SetMetrics(sum(m.count for m in parts), sum(m.correct for m in parts),
                      sum(m.edit_distance_sum for m in parts))


def flat_metrics(summary: dict) -> dict[str, float]:
    """``summary`` as MLflow metric names: ``<set>/accuracy``, ``<set>/norm_edit_dis``, the totals (accuracy a
    fraction, as everywhere) and ``eval/throughput_img_s`` (images per second, reading and inference)."""
    flat = {}
    for name, m in summary["sets"].items():
        flat[f"{name}/accuracy"] = m["accuracy"]
        flat[f"{name}/norm_edit_dis"] = m["norm_edit_dis"]
    for key in ("accuracy_total", "accuracy_mean", "norm_edit_dis_total", "accuracy_total7", "accuracy_real",
                "norm_edit_dis_real"):
        if key in summary:
            flat[key] = summary[key]
    if "images_per_s" in summary:
        flat["eval/throughput_img_s"] = summary["images_per_s"]
    return flat

"""Recognition metrics as PaddleOCR's RecMetric computes them (``is_filter=True``), and their
aggregation over benchmark sets. Pure functions: no files, no models.

Two protocols. The folded one (digits and letters, lower case) is the field's, what every published table and the
registry compare. The exact one keeps case and punctuation (parseq's 94-character tables: digits, ASCII letters and
punctuation, compared as they are), for a model whose charset is case-sensitive.
"""
from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

# DTRB's paper total: these 7 of the 10 usual sets (the 860/857/1811 variants are the alternatives).
SEVEN_SETS = ("IIIT5k_3000", "SVT", "IC03_867", "IC13_1015", "IC15_2077", "SVTP", "CUTE80")
_KEEP = set(string.digits + string.ascii_letters)
PRINTABLE_94 = string.digits + string.ascii_letters + string.punctuation  # the exact protocol's characters
_KEEP_EXACT = set(PRINTABLE_94)


def normalize_text(text: str) -> str:
    """PaddleOCR's ``_normalize_text``: digits and ASCII letters only, lower case (spaces go too)."""
    return "".join(c for c in text if c in _KEEP).lower()


def exact_text(text: str) -> str:
    """The exact protocol's text: the 94 printable ASCII characters, case kept (spaces and other characters go)."""
    return "".join(c for c in text if c in _KEEP_EXACT)


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
    exact: bool | None = None  # right under the exact protocol; None where it does not apply


def score_sample(pred: str, truth: str, exact: bool = False) -> SampleScore:
    """The folded score of ``pred`` against ``truth`` and, with ``exact``, the exact protocol's verdict."""
    p, t = normalize_text(pred), normalize_text(truth)
    return SampleScore(p == t, normalized_edit_distance(p, t), exact_text(pred) == exact_text(truth) if exact else None)


@dataclass(frozen=True)
class SetMetrics:
    count: int
    correct: int
    edit_distance_sum: float
    exact_correct: int | None = None  # under the exact protocol, where it was scored

    @property
    def accuracy(self) -> float:
        return self.correct / self.count if self.count else 0.0

    @property
    def accuracy_exact(self) -> float | None:
        if self.exact_correct is None:
            return None
        return self.exact_correct / self.count if self.count else 0.0

    @property
    def norm_edit_dis(self) -> float:
        return 1.0 - self.edit_distance_sum / self.count if self.count else 0.0


def set_metrics(scores: Iterable[SampleScore]) -> SetMetrics:
    scores = list(scores)
    exact = None if any(s.exact is None for s in scores) else sum(bool(s.exact) for s in scores)
    return SetMetrics(len(scores), sum(s.correct for s in scores), sum(s.edit_distance for s in scores), exact)


def recognition_metrics(preds: Sequence[str], truths: Sequence[str]) -> SetMetrics:
    if len(preds) != len(truths):
        raise ValueError(f"{len(preds)} predictions for {len(truths)} labels")
    return set_metrics(score_sample(p, t) for p, t in zip(preds, truths))


def summarize(sets: Mapping[str, SetMetrics], real: Sequence[str] = ()) -> dict:
    """Per-set accuracy, norm_edit_dis and count; the sample-weighted totals, the plain mean of the sets,
    ``accuracy_total7`` when all of DTRB's seven sets are present, and with ``real`` (the names of the real
    benchmark sets among ``sets``) their own sample-weighted ``accuracy_real``, ``norm_edit_dis_real`` and
    ``count_real``, listed in ``real_sets``. Where the exact protocol was scored, each set's ``accuracy_exact`` and
    the totals ``accuracy_total_exact`` and ``accuracy_real_exact`` beside."""
    out: dict = {"sets": {name: {"accuracy": m.accuracy, "norm_edit_dis": m.norm_edit_dis, "count": m.count,
                                 **({"accuracy_exact": m.accuracy_exact} if m.exact_correct is not None else {})}
                          for name, m in sets.items()}}
    pooled = _pool(sets.values())
    out["accuracy_total"] = pooled.accuracy
    if pooled.exact_correct is not None:
        out["accuracy_total_exact"] = pooled.accuracy_exact
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
        if pooled_real.exact_correct is not None:
            out["accuracy_real_exact"] = pooled_real.accuracy_exact
    return out


def headline_sets(summary: dict) -> list[str]:
    """The scored sets in the order a reader compares them: the real sets first, then the others."""
    real = summary.get("real_sets", [])
    return [*real, *(n for n in summary["sets"] if n not in real)]


def headline_first(summary: dict) -> dict:
    """``summary`` as the evaluate stage writes it for DVC: first what a reader compares runs by, the real sets'
    total, each set's accuracy under its own name (the real sets first) and ``images_per_s``, then the whole
    summary; with the training run's ``validation`` (``validation_of``), the accuracy best.pt was chosen on
    (``val_real_accuracy`` where the real source was trained on) last. DVC lists a metrics file's keys
    in the file's order, so these are the columns ``dvc exp show`` opens
    with, short enough for a terminal."""
    head = {k: summary[k] for k in ("accuracy_real", "accuracy_real_exact") if k in summary}
    head.update({name: summary["sets"][name]["accuracy"] for name in headline_sets(summary)})
    head.update({k: summary[k] for k in ("images_per_s",) if k in summary})
    validation = summary.get("validation", {})
    if "selected_on" in validation:  # what best.pt was chosen on, beside what it reads of the benchmarks
        head[f"val_{validation['selected_on']}_accuracy"] = validation[validation["selected_on"]]
    return {**head, **{k: v for k, v in summary.items() if k not in head}}


def validation_of(train_metrics: dict) -> dict:
    """The validation accuracies of a training run's best step, from its ``train_metrics.json``: each source's
    split (``real``, ``synth``) and ``selected_on``, the split best.pt was chosen on."""
    by_source = {k[len("best_val_"):-len("_accuracy")]: v for k, v in train_metrics.items()
                 if k.startswith("best_val_") and k.endswith("_accuracy") and k != "best_val_accuracy"}
    selected = train_metrics.get("selected_on")
    return {**by_source, "selected_on": selected} if selected in by_source else by_source


def _pool(parts: Iterable[SetMetrics]) -> SetMetrics:
    parts = list(parts)
    exact = None if any(m.exact_correct is None for m in parts) else sum(m.exact_correct for m in parts)
    return SetMetrics(sum(m.count for m in parts), sum(m.correct for m in parts),
                      sum(m.edit_distance_sum for m in parts), exact)


def flat_metrics(summary: dict) -> dict[str, float]:
    """``summary`` as MLflow metric names: ``<set>/accuracy``, ``<set>/norm_edit_dis``, the totals (accuracy a
    fraction, as everywhere) and ``eval/throughput_img_s`` (images per second, reading and inference)."""
    flat = {}
    for name, m in summary["sets"].items():
        flat[f"{name}/accuracy"] = m["accuracy"]
        flat[f"{name}/norm_edit_dis"] = m["norm_edit_dis"]
        if "accuracy_exact" in m:
            flat[f"{name}/accuracy_exact"] = m["accuracy_exact"]
    for key in ("accuracy_total", "accuracy_mean", "norm_edit_dis_total", "accuracy_total7", "accuracy_real",
                "norm_edit_dis_real", "accuracy_total_exact", "accuracy_real_exact"):
        if key in summary:
            flat[key] = summary[key]
    if "images_per_s" in summary:
        flat["eval/throughput_img_s"] = summary["images_per_s"]
    return flat

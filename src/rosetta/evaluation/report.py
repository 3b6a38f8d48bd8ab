"""What an evaluation shows people: the metrics as a Markdown table, the worst mistakes for the gallery and the
gallery's title."""
from __future__ import annotations

import itertools

from rosetta.data.dataset import LEFT_OUT
from rosetta.evaluation.metrics import SampleScore


def worst_mistakes(preds: list[tuple[str, float] | None], scores: list[SampleScore], set_names: list[str],
                   limit: int) -> list[int]:
    """Indices of wrong readings (of images that decode), farthest from the truth first, then the most
    confident, taken from each set in turn so that every set with mistakes shows."""
    by_set: dict[str, list[int]] = {}
    for i, (pred, score) in enumerate(zip(preds, scores)):
        if pred is not None and not score.correct:
            by_set.setdefault(set_names[i], []).append(i)
    for wrong in by_set.values():
        wrong.sort(key=lambda i: (-scores[i].edit_distance, -preds[i][1]))
    picked = [i for rank in itertools.zip_longest(*by_set.values()) for i in rank if i is not None]
    return picked[:limit]


def gallery_title(summary: dict) -> str:
    """Each set's accuracy in one line (and the real sets' total), above the gallery."""
    parts = [f"{name} {m['accuracy']:.3f}" for name, m in summary["sets"].items()]
    if "accuracy_real" in summary:
        parts.append(f"real total {summary['accuracy_real']:.3f}")
    return "accuracy: " + ", ".join(parts)


def markdown_table(summary: dict) -> str:
    """The metrics as a Markdown table; accuracy a fraction (0-1) with 4 decimals, as in MLflow and DVC. The folded
    protocol's accuracy, and for a case-sensitive model the exact protocol's in a last column."""
    exact = "accuracy_total_exact" in summary  # a case-sensitive model: the exact protocol's column beside

    def row(name: str, count, accuracy: float, ned: float | None, accuracy_exact: float | None = None) -> str:
        cells = [name, str(count), f"{accuracy:.4f}", "" if ned is None else f"{ned:.4f}"]
        cells += ["" if accuracy_exact is None else f"{accuracy_exact:.4f}"] if exact else []
        return "| " + " | ".join(cells) + " |"

    lines = ["| set | count | accuracy | norm_edit_dis |" + (" exact |" if exact else ""),
             "|---|---:|---:|---:|" + ("---:|" if exact else "")]
    for name, m in summary["sets"].items():
        lines.append(row(name, m["count"], m["accuracy"], m["norm_edit_dis"], m.get("accuracy_exact")))
    lines.append(row("**total** (sample-weighted)", summary["count_total"], summary["accuracy_total"],
                     summary["norm_edit_dis_total"], summary.get("accuracy_total_exact")))
    lines.append(row("**mean** of the sets", "", summary["accuracy_mean"], None))
    if "accuracy_total7" in summary:
        lines.append(row("**total of DTRB's 7 sets**", "", summary["accuracy_total7"], None))
    if "accuracy_real" in summary:
        lines.append(row(f"**real total** ({', '.join(summary['real_sets'])})", summary["count_real"],
                         summary["accuracy_real"], summary["norm_edit_dis_real"], summary.get("accuracy_real_exact")))
    notes = [f"{n} images of {name} do not decode: scored as wrong"
             for name, n in summary.get("unreadable", {}).items()]
    notes += [f"{sum(why.values())} samples of {name} are not scored, as PaddleOCR leaves them out: "
              + ", ".join(f"{n} with {LEFT_OUT.get(k, k)}" for k, n in why.items())
              for name, why in summary.get("left_out", {}).items()]
    validation = summary.get("validation", {})
    if "selected_on" in validation:
        notes.append(f"best.pt was chosen on the {validation['selected_on']} validation split: accuracy "
                     f"{validation[validation['selected_on']]:.4f}")
    if "calibration" in summary:
        c = summary["calibration"]
        notes.append(f"confidence calibration on the {c['on']} validation split ({c['count']} images), expected "
                     "calibration error by rule: " + ", ".join(f"{r} {e:.4f}" for r, e in c["ece"].items()))
    return "\n".join(lines + [""] + notes + [f"{summary['images_per_s']:.0f} images/s"]) + "\n"

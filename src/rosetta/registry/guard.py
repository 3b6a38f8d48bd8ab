"""The per-set guard's missing half: a set ``registry.guarded_sets`` names that production was never scored on (a
user's own test set, added after production was registered) is read once with production's own, digest-checked
files and recorded on its version, so that the decision compares both models on the same words."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Mapping

from rosetta.config import Config
from rosetta.registry.rule import METRIC_TAG_PREFIX, SET_ACCURACY


def unscored_guarded(guarded: list[str], candidate: Mapping[str, str], production: Mapping[str, str]) -> list[str]:
    """The guarded sets the candidate's tags score and production's do not."""
    return [name for name in guarded if METRIC_TAG_PREFIX + name + SET_ACCURACY in candidate
            and METRIC_TAG_PREFIX + name + SET_ACCURACY not in production]


def score_production(cfg: Config, client, name: str, version: str, sets: list[str]) -> dict[str, float]:
    """Score registered version ``version`` on ``sets`` (found among the sets the pipeline scores) with its own
    files, checked against the registry's digests, and tag the version with each set's accuracy."""
    from rosetta.evaluation.evaluate import set_accuracies
    from rosetta.evaluation.sets import scored_sets
    from rosetta.recognition.model_file import load_recognizer
    from rosetta.registry.refs import fetch_verified

    with tempfile.TemporaryDirectory(prefix="rosetta-guard-") as tmp:
        model = fetch_verified(cfg, f"models:/{name}/{version}", Path(tmp) / "model", "registry.guarded_sets")
        recognizer = load_recognizer(model.onnx, batch_size=cfg.eval.batch_size, threads=cfg.eval.threads)
        accuracies = set_accuracies({"production": recognizer}, scored_sets(cfg).folders, cfg.data.workers)
    found = {s: accuracies["production"][s] for s in sets if s in accuracies["production"]}
    for s, accuracy in found.items():
        client.set_model_version_tag(name, version, METRIC_TAG_PREFIX + s + SET_ACCURACY, f"{accuracy:.6g}")
    if found:
        print(f"{name} v{version} (production) scored on {', '.join(f'{s} {a:.4f}' for s, a in found.items())} "
              "(registry.guarded_sets), for the per-set guard", flush=True)
    return found

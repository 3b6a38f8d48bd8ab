"""Benchmark evaluation: every LMDB below a folder is one set, scored with PaddleOCR's RecMetric; the
results go to a JSON (DVC metrics), a Markdown table, a gallery of the worst mistakes and MLflow, as a run
nested under the model's training run. The metric arithmetic lives in ``rosetta.evaluation.metrics``;
``evaluate_model`` is the one door of the evaluate stage and ``rosetta evaluate``.
"""
from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from rosetta_infer.charset import Charset
from rosetta.config import Config
from rosetta.data.dataset import LmdbDataset
from rosetta_infer.preprocess import ImageLimits
from rosetta.data.splits import ValidationSplit, selected_split
from rosetta.errors import RosettaError
from rosetta.evaluation.metrics import (SampleScore, SetMetrics, flat_metrics, headline_first, headline_sets,
                                        score_sample, set_metrics, summarize, validation_of)
from rosetta.evaluation.plots import Mistake, mistakes_gallery
from rosetta.evaluation.report import gallery_title, markdown_table, worst_mistakes
from rosetta.evaluation.sets import scored_sets
from rosetta.fsutil import sha256_file, write_json
from rosetta.layout import RunLayout
from rosetta.prep.benchmarks import benchmark_lmdbs
from rosetta.recognition.dataset import predict_dataset
from rosetta.recognition.device import prepare_device
from rosetta.recognition.model_file import load_recognizer, model_file, training_run_of
from rosetta_infer.recognizer import Recognizer


@dataclass
class _Scored:
    """Every sample of the evaluated sets, in order: where it comes from, its prediction and its score."""

    samples: list[tuple[LmdbDataset, int]] = field(default_factory=list)
    preds: list[tuple[str, float] | None] = field(default_factory=list)
    scores: list[SampleScore] = field(default_factory=list)
    per_set: dict[str, SetMetrics] = field(default_factory=dict)
    unreadable: dict[str, int] = field(default_factory=dict)
    left_out: dict[str, dict[str, int]] = field(default_factory=dict)  # per set, samples the label rules leave out
    seconds: float = 0.0  # spent reading images and running the model (not converting gt-file sets)


class SetProgress:
    """Progress through the sets of one dataset, read in order: a bar per set with its count, rate and ETA (tqdm's),
    live in a terminal and a line every ``quiet_interval`` seconds where the output is a log (DVC under the Prefect
    flow), so the longest task of the flow shows where it is. Each set's clock starts when its reading does."""

    def __init__(self, sets: list, stream=None, quiet_interval: float = 10.0):
        self._sets = [s for s in sets if s.num_kept]
        self._stream = stream or sys.stderr
        self._interval = 0.5 if self._stream.isatty() else quiet_interval
        self._bar = None
        self._left = 0
        self._next()

    def _next(self) -> None:
        from tqdm import tqdm

        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._sets:
            current = self._sets.pop(0)
            self._left = current.num_kept
            self._bar = tqdm(total=current.num_kept, desc=f"evaluate {current.name}", unit=" images",
                             file=self._stream, mininterval=self._interval, smoothing=0.1)

    def __call__(self, n: int) -> None:
        while n > 0 and self._bar is not None:
            step = min(n, self._left)
            self._bar.update(step)
            self._left -= step
            n -= step
            if self._left == 0:
                self._next()


def _score_folder(scored: _Scored, recognizer, lmdbs: Path, shown_as: Path, limits: ImageLimits | None = None
                  ) -> list[str]:
    """Score every set below ``lmdbs`` into ``scored``, showing progress per set; returns the names of its sets.
    An image over ``limits`` is not decoded."""
    # Never a substitute for an image that does not decode: it counts as a wrong reading of its own sample.
    dataset = LmdbDataset(lmdbs, recognizer.charset, substitute_bad_images=False, limits=limits, keep_raw=True)
    exact = not recognizer.charset.lowercase  # a case-sensitive model is scored under the exact protocol too
    if len(dataset) == 0:
        raise RosettaError(f"{shown_as}: no sample survives the charset's label rules; nothing to evaluate")
    start = time.perf_counter()
    preds = predict_dataset(recognizer, dataset, SetProgress(dataset.sets))
    scored.seconds += time.perf_counter() - start
    names = []
    for s in dataset.sets:
        if s.left_out:
            scored.left_out[s.name] = s.left_out
        if not s.num_kept:
            continue
        if s.name in scored.per_set:
            raise RosettaError(f"benchmark set {s.name} is in {shown_as} and in another evaluated folder; keep it "
                               "in one (data.benchmarks or data.real_benchmarks)")
        part = preds[s.offset:s.offset + s.num_kept]
        scores = [score_sample(p[0] if p else "", t, exact)
                  for p, t in zip(part, dataset.raw_labels[s.offset:s.offset + s.num_kept])]
        scored.per_set[s.name] = set_metrics(scores)
        if part.count(None):
            scored.unreadable[s.name] = part.count(None)
        scored.samples += [(dataset, i) for i in range(s.offset, s.offset + s.num_kept)]
        scored.preds += part
        scored.scores += scores
        names.append(s.name)
    return names


def set_accuracies(recognizers: dict[str, Recognizer], folders: list[Path], workers: int = 0
                   ) -> dict[str, dict[str, float]]:
    """Per recognizer (by name), the accuracy of each benchmark set below ``folders``; gt-file sets are
    converted once for all of them. No files, no MLflow: what a gate compares."""
    scored = {name: _Scored() for name in recognizers}
    for folder in folders:
        with benchmark_lmdbs(folder, workers) as lmdbs:
            for name, recognizer in recognizers.items():
                _score_folder(scored[name], recognizer, lmdbs, Path(folder))
    return {name: {s: m.accuracy for s, m in sc.per_set.items()} for name, sc in scored.items()}


def evaluate_model(cfg: Config, model: str | Path | None = None, data: Path | None = None,
                   out_dir: Path | None = None, run_id: str | None = None) -> dict:
    """What ``evaluate`` scores, decided here for the DVC stage and ``rosetta evaluate`` alike: ``model`` (a file or
    a ``models:/`` URI; by default the pipeline's best.pt) on the benchmark sets at ``data``, by default those the
    pipeline scores (``scored_sets``: the data.benchmarks LMDBs and the converted real sets). The pipeline's own
    best.pt also gets the validation accuracies it was chosen on (its ``train_metrics.json``) and the calibration
    of its confidence on that validation split; any other model was chosen on nothing this project recorded.
    ``out_dir`` and ``run_id`` are ``evaluate_benchmarks``'."""
    runs = RunLayout.from_config(cfg)
    sets = scored_sets(cfg)
    data, real = (Path(data), None) if data else (sets.benchmarks, sets.real)
    with model_file(cfg, model or runs.best_checkpoint) as path:
        ours = path.resolve() == runs.best_checkpoint.resolve() and runs.train_metrics.is_file()
        validation = validation_of(json.loads(runs.train_metrics.read_text())) if ours else None
        calibrate_on = selected_split(cfg, Charset.from_config(cfg.charset)) if ours else None
        return evaluate_benchmarks(path, data, cfg, out_dir, run_id, real, validation, calibrate_on)


def evaluate_benchmarks(checkpoint: Path, data_dir: Path, cfg: Config, out_dir: Path | None = None,
                        run_id: str | None = None, real_dir: Path | None = None,
                        validation: dict | None = None, calibrate_on: ValidationSplit | None = None) -> dict:
    """Score ``checkpoint`` (a ``.pt`` or an exported ``.onnx``) on every benchmark set below ``data_dir``
    and, given ``real_dir``, below it too as the real benchmark sets. A folder of gt-file sets is converted
    to LMDBs on the way (``benchmark_lmdbs``).

    Returns the metrics: ``sets`` (per set: accuracy, norm_edit_dis, count), ``accuracy_total``
    (sample-weighted), ``accuracy_mean`` (mean of the sets), ``norm_edit_dis_total``, ``count_total``,
    ``accuracy_total7`` (DTRB's seven sets, when all are present), with ``real_dir`` ``accuracy_real``,
    ``norm_edit_dis_real``, ``count_real`` and ``real_sets``, ``unreadable`` (per set, images that do not
    decode, scored as wrong) and ``left_out`` (per set, samples PaddleOCR's label rules leave unscored, by why:
    ``rosetta.data.dataset.LEFT_OUT``) when there are any, ``images_per_s``, and ``validation`` as given (the training
    run's validation accuracies, ``metrics.validation_of``: metrics.json names the one best.pt was chosen on
    beside the benchmarks) and ``model``, what was scored (the file's sha256 and the training run it names:
    registration refuses the scores beside another file). With ``out_dir`` writes metrics.json, metrics.md
    and gallery.png there; given ``calibrate_on`` too, ``calibration`` (``calibrate``) and reliability.png.

    The results are logged into MLflow as a nested run ``evaluate <sets>`` of the training run: ``run_id``,
    else the run the model file names (``rosetta.tracking.store.parent_run``); the training run gets each set's
    metrics beside, and with ``run_id`` (the pipeline's own evaluation) the totals and a line in its description.
    """
    from rosetta.tracking.store import parent_run

    parent = parent_run(cfg, checkpoint, run_id, None if run_id else training_run_of(checkpoint))
    device = prepare_device(cfg.train)
    recognizer = load_recognizer(checkpoint, str(device), cfg.eval.batch_size, cfg.eval.threads)
    limits = ImageLimits.from_config(cfg.serve)  # the sets may come from anywhere: read them as the server reads
    scored = _Scored()
    real: list[str] = []
    with contextlib.ExitStack() as stack:
        for folder, is_real in ((data_dir, False), (real_dir, True)):
            if folder is not None:
                lmdbs = stack.enter_context(benchmark_lmdbs(folder, cfg.data.workers, limits))
                names = _score_folder(scored, recognizer, lmdbs, Path(folder), limits)
                real += names if is_real else []
        summary = summarize(scored.per_set, real)
        if scored.unreadable:
            summary["unreadable"] = scored.unreadable
        if scored.left_out:
            summary["left_out"] = scored.left_out
        summary["images_per_s"] = len(scored.preds) / scored.seconds
        if validation:
            summary["validation"] = validation
        summary["model"] = {"sha256": sha256_file(Path(checkpoint)), "run_id": training_run_of(checkpoint)}
        if out_dir is None and parent is not None:  # the files go to MLflow all the same
            out_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rosetta-eval-")))
        if out_dir is not None:
            metrics_json, metrics_md, gallery_png = RunLayout.eval_files(out_dir)
            metrics_json.parent.mkdir(parents=True, exist_ok=True)
            if calibrate_on is not None:
                summary["calibration"] = calibrate(recognizer, calibrate_on, RunLayout.reliability_file(out_dir))
            write_json(metrics_json, headline_first(summary))
            metrics_md.write_text(markdown_table(summary))
            set_names = [dataset.set_of(index) for dataset, index in scored.samples]
            mistakes = []
            for i in worst_mistakes(scored.preds, scored.scores, set_names, cfg.eval.gallery_size):
                dataset, index = scored.samples[i]
                text, confidence = scored.preds[i]
                mistakes.append(Mistake(dataset[index][0], dataset.labels[index], text, confidence, set_names[i]))
            mistakes_gallery(mistakes, gallery_png, title=gallery_title(summary))
        if parent is not None:
            _log_evaluation(cfg, parent, summary, out_dir, Path(checkpoint), headline=run_id is not None)
    return summary


def calibrate(recognizer: Recognizer, split: ValidationSplit, png: Path) -> dict:
    """How well each confidence rule's confidence says how often a reading is right, on ``split`` (the validation
    split best.pt was chosen on: a threshold read from it is not fitted to a benchmark): ``on`` (the split),
    ``count`` (readable images) and ``ece`` (expected calibration error by rule); the reliability diagram goes
    to ``png``."""
    from rosetta.evaluation.calibration import expected_calibration_error, reliability_bins
    from rosetta.evaluation.plots import reliability_diagram
    from rosetta_infer.postprocess.rec_postprocess import CONFIDENCE_RULES

    per_rule, count = {}, 0
    for rule in CONFIDENCE_RULES:
        preds = predict_dataset(replace(recognizer, confidence=rule), split.dataset)
        read = [(p[1], score_sample(p[0], truth).correct) for p, truth in zip(preds, split.labels) if p is not None]
        count = len(read)
        per_rule[rule] = reliability_bins([c for c, _ in read], [ok for _, ok in read])
    reliability_diagram(per_rule, png, f"confidence on the {split.source} validation split ({count} images)")
    return {"on": split.source, "count": count,
            "ece": {rule: expected_calibration_error(bins) for rule, bins in per_rule.items()}}


def _log_evaluation(cfg: Config, parent: str, summary: dict, out_dir: Path, model: Path, headline: bool) -> None:
    """A nested run of training run ``parent`` holding every metric and the files; ``parent`` gets each set's
    metrics (a set's name says what was scored) and, when ``headline``, the totals and its description line."""
    from rosetta.tracking.runs import benchmark_description
    from rosetta.tracking.store import Tracker

    flat = flat_metrics(summary)
    flat.update({f"calibration/ece_{rule}": e for rule, e in summary.get("calibration", {}).get("ece", {}).items()})
    sets = ", ".join(summary["sets"])
    child = Tracker(cfg, name=f"evaluate {sets if len(sets) <= 60 else sets[:57] + '...'}", parent_id=parent,
                    tags={"model_file": str(model)})
    child.log_metrics(flat)
    for path in [*RunLayout.eval_files(out_dir), *([RunLayout.reliability_file(out_dir)] if "calibration" in summary
                                                  else [])]:
        child.log_artifact(path, "eval")
    child.end()
    training = Tracker(cfg, parent, reopen=False)
    per_set = tuple(f"{name}/" for name in summary["sets"])
    training.log_metrics({k: v for k, v in flat.items() if headline or k.startswith(per_set)})
    if headline:
        training.add_to_description(benchmark_description(summary))
        first = [k for k in ("accuracy_real", "accuracy_total") if k in summary]
        selected = summary.get("validation", {}).get("selected_on")  # the training run's own metric of it
        training.share_runs_view([first[0], *(f"{name}/accuracy" for name in headline_sets(summary)), *first[1:],
                                  *([f"best_val/{selected}_accuracy"] if selected else [])])

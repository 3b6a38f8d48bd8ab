"""Data checks: a per-sample manifest of an LMDB (label, charset conformity, image size, decodability)
validated by a Great Expectations suite whose thresholds come from ``data.validation``.

The full GX result is always written as JSON; failures come back as a short summary naming each
failed check and by how much it missed. The pipeline's check (``validate_pipeline_data``) covers every LMDB it
trains on or scores, the real sets included, and renders GX's Data Docs, a static HTML site, beside the JSON.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from rosetta_infer.charset import Charset
from rosetta.config import Config, ValidationConfig
from rosetta.data.lmdb_io import find_lmdbs, image_key, lmdb_name, num_samples, open_lmdb, read_label, read_report
from rosetta_infer.preprocess import ImageDecodeError, decode_image
from rosetta.errors import RosettaError
from rosetta.fsutil import atomic_dir, shown_path, write_json
from rosetta.layout import DataLayout
from rosetta.prep.parallel import parallel_map
from rosetta.prep.stats import lmdb_stats, summary, write_plots

RESULTS_DIR = "validation"  # below the reports folder: one GX result JSON per LMDB
DOCS_DIR = "data_docs"  # below the reports folder: GX's Data Docs of every result (index.html)
PLOTS_DIR = "plots"
METRICS_FILE = "data_metrics.json"
MANIFEST_COLUMNS = ("key", "label", "label_length", "in_charset", "decodable", "width", "height", "aspect_ratio")
_CHUNK = 512


# --------------------------------------------------------------------------- manifest


def _manifest_rows(task: tuple[str, int, int, Charset]) -> list[tuple]:
    path, start, stop, charset = task
    rows = []
    with open_lmdb(path).begin() as txn:
        for key in range(start, stop):
            label = read_label(txn, key)
            try:
                img = decode_image(txn.get(image_key(key)) or b"", f"image-{key:09d}")
                w, h = img.size
                rows.append((key, label, len(label), charset.conforms(label), True, w, h, w / h))
            except ImageDecodeError:
                rows.append((key, label, len(label), charset.conforms(label), False, math.nan, math.nan, math.nan))
    return rows


def build_manifest(lmdb_dir: str | Path, charset: Charset, workers: int = 0) -> pd.DataFrame:
    """One row per stored sample: label, its length, whether it is inside the charset after case
    folding, whether the image decodes, and its width, height and aspect ratio (NaN when it does not)."""
    lmdb_dir = Path(lmdb_dir)
    with open_lmdb(lmdb_dir).begin() as txn:
        n = num_samples(txn, lmdb_dir)
    tasks = [(str(lmdb_dir), s, min(s + _CHUNK, n + 1), charset) for s in range(1, n + 1, _CHUNK)]
    rows = [row for chunk in parallel_map(_manifest_rows, tasks, workers, total=len(tasks),
                                          desc=f"check {lmdb_dir.name}", unit=" chunks", chunksize=1)
            for row in chunk]
    df = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    return df.astype({"key": "int64", "label_length": "int64", "in_charset": "bool", "decodable": "bool",
                      "width": "float64", "height": "float64", "aspect_ratio": "float64"})


# --------------------------------------------------------------------------- the suite


@dataclass(frozen=True)
class Check:
    """One expectation and how to say, in a sentence, what it found."""

    what: str  # e.g. "undecodable images"
    column: str | None
    limit: str  # e.g. "at most 0.5 %"


@dataclass
class ValidationResult:
    name: str
    lmdb: Path
    success: bool
    summary: str  # the failed checks and by how much, or a line saying all passed
    metrics: dict = field(default_factory=dict)
    result_path: Path | None = None

    @property
    def slug(self) -> str:
        return self.result_path.stem if self.result_path else self.name.replace("/", "_")


def _suite(cfg: ValidationConfig):
    import great_expectations as gx
    import great_expectations.expectations as gxe

    pct = lambda x: f"{100 * x:.2f} %"  # noqa: E731
    checks = [
        (gxe.ExpectTableRowCountToBeBetween(min_value=cfg.min_samples),
         Check("samples", None, f"at least {cfg.min_samples}")),
        (gxe.ExpectColumnValuesToBeInSet(column="decodable", value_set=[True],
                                         mostly=1 - cfg.max_undecodable_fraction),
         Check("undecodable images", "decodable", f"at most {pct(cfg.max_undecodable_fraction)}")),
        (gxe.ExpectColumnValuesToBeInSet(column="in_charset", value_set=[True], mostly=cfg.min_charset_conformity),
         Check("labels outside the charset", "in_charset", f"at most {pct(1 - cfg.min_charset_conformity)}")),
        (gxe.ExpectColumnValuesToBeBetween(column="label_length", min_value=1),
         Check("empty labels", "label_length", "none")),
        # Undecodable rows have NaN sizes, which GX leaves out: they are counted by the check above.
        (gxe.ExpectColumnValuesToBeBetween(column="height", min_value=cfg.min_height,
                                           mostly=cfg.min_shape_conformity),
         Check(f"images lower than {cfg.min_height} px", "height", f"at most {pct(1 - cfg.min_shape_conformity)}")),
        (gxe.ExpectColumnValuesToBeBetween(column="aspect_ratio", max_value=cfg.max_aspect_ratio,
                                           mostly=cfg.min_shape_conformity),
         Check(f"images wider than {cfg.max_aspect_ratio:g}:1", "aspect_ratio",
               f"at most {pct(1 - cfg.min_shape_conformity)}")),
    ]
    suite = gx.ExpectationSuite(name="lmdb_manifest")
    for expectation, _ in checks:
        suite.add_expectation(expectation)
    return suite, [c for _, c in checks]


class DataCheck:
    """One Great Expectations context for the LMDBs of a check: each LMDB is a data asset of its own (so the Data
    Docs list each by name), validated by the suite of ``data.validation``'s thresholds; ``build_docs`` renders
    GX's Data Docs of every result so far."""

    def __init__(self, cfg: ValidationConfig):
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # no network here, and none wanted
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self._gx = gx
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        self._source = self.context.data_sources.add_pandas("lmdb")
        suite, self.checks = _suite(cfg)
        self._suite = self.context.suites.add(suite)

    def run(self, df: pd.DataFrame, name: str):
        """The suite's result on ``df``, the manifest of the LMDB called ``name`` (unique within this check)."""
        gx = self._gx
        batch = self._source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all_rows")
        definition = self.context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch,
                                                                                   suite=self._suite))
        return definition.run(batch_parameters={"dataframe": df}, result_format="SUMMARY")

    def build_docs(self, folder: Path) -> Path:
        """GX's Data Docs of every result, built beside ``folder`` and renamed into it; returns its index.html."""
        with atomic_dir(folder) as tmp:
            self.context.add_data_docs_site(DOCS_DIR, {
                "class_name": "SiteBuilder", "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(tmp)}})
            self.context.build_data_docs(site_names=[DOCS_DIR])
            self.context.delete_data_docs_site(DOCS_DIR)
        return folder / "index.html"


def _describe(check: Check, result: dict) -> str:
    if check.column is None:
        return f"{check.what}: {result.get('observed_value')} (need {check.limit})"
    found = result.get("unexpected_percent_nonmissing", result.get("unexpected_percent")) or 0.0
    count = result.get("unexpected_count", 0)
    return f"{check.what}: {found:.2f} % ({count} rows; allowed {check.limit})"


# What GX writes into a result that changes on every run (when it ran, random ids), left out of the stored result
# (a DVC output) so that the same data checks to the same bytes on every machine; the Data Docs keep them.
_RUN_KEYS = frozenset({"id", "validation_id", "run_id", "validation_time", "ge_load_time"})


def _stable(value):
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in _RUN_KEYS}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def validate_lmdb(lmdb_dir: str | Path, charset: Charset, cfg: ValidationConfig, result_path: str | Path,
                  workers: int = 0, name: str | None = None, check: DataCheck | None = None) -> ValidationResult:
    """Validate one LMDB (in ``check``'s context, given one); the GX result goes to ``result_path`` (JSON) whether
    it passes or not."""
    lmdb_dir = Path(lmdb_dir)
    name = name or lmdb_dir.name
    df = build_manifest(lmdb_dir, charset, workers)
    check = check or DataCheck(cfg)
    gx_result, checks = check.run(df, Path(result_path).stem), check.checks
    failed = []
    for check, res in zip(checks, gx_result.results):
        if not res.success:
            failed.append(_describe(check, res.result))
    decodable = df[df["decodable"]]
    n = len(df)
    metrics = {
        "samples": n,
        "undecodable_fraction": round(float((~df["decodable"]).mean()) if n else 0.0, 6),
        "charset_conformity": round(float(df["in_charset"].mean()) if n else 0.0, 6),
        "min_height": float(decodable["height"].min()) if len(decodable) else None,
        "max_aspect_ratio": round(float(decodable["aspect_ratio"].max()), 3) if len(decodable) else None,
        "checks_failed": len(failed),
        "passed": bool(gx_result.success),
    }
    conversion = read_report(lmdb_dir)
    if conversion is not None:
        metrics["rejected_at_conversion"] = conversion["rejected_total"]
        metrics["rejected_by_reason"] = conversion["rejected"]
    payload = {"lmdb": shown_path(lmdb_dir), "metrics": metrics, "failed": failed,
               "gx": _stable(gx_result.to_json_dict())}
    write_json(result_path, payload, default=str)
    if failed:
        summary = f"{name}: {len(failed)} of {len(checks)} checks failed: " + "; ".join(failed)
    else:
        summary = f"{name}: all {len(checks)} checks passed on {n} samples"
    return ValidationResult(name, lmdb_dir, bool(gx_result.success), summary, metrics, result_path)


def result_slug(lmdb_dir: Path, base: Path) -> str:
    """A file-name-safe name for an LMDB below ``base``: ``synth/train`` -> ``synth_train``."""
    return lmdb_name(lmdb_dir, base).replace("/", "_")


def validate_tree(root: str | Path, charset: Charset, cfg: ValidationConfig, results_dir: str | Path,
                  workers: int = 0, prefix: str = "", check: DataCheck | None = None) -> list[ValidationResult]:
    """Validate every LMDB at or below ``root`` (in one ``check``); results go to ``results_dir/<slug>.json``, the
    slug being the LMDB's path below ``root`` (``synth/train`` -> ``synth_train``), after ``prefix`` when given."""
    root = Path(root)
    check = check or DataCheck(cfg)
    results = []
    for path in find_lmdbs(root):
        slug = "_".join(filter(None, (prefix, result_slug(path, root))))
        name = "/".join(filter(None, (prefix, lmdb_name(path, root))))
        results.append(validate_lmdb(path, charset, cfg, Path(results_dir) / f"{slug}.json", workers, name, check))
    return results


OVERLAP_FILE = "overlap.json"  # below the validation results: training images that are benchmark images


def validate_datasets(roots: dict[str, Path], charset: Charset, cfg: ValidationConfig, reports: str | Path,
                      workers: int = 0, extra_metrics: dict | None = None) -> list[ValidationResult]:
    """Check every LMDB below each root (named ``<prefix>_<set>``), and write the GX results
    (``reports/validation/``) and their Data Docs (``reports/data_docs/index.html``), label plots
    (``reports/plots/``) and one metrics file (``reports/data_metrics.json``) with the validation figures,
    conversion rejects and label counts, and ``extra_metrics`` beside them."""
    reports = Path(reports)
    check = DataCheck(cfg)
    results, metrics = [], dict(extra_metrics or {})
    for prefix, root in roots.items():
        for result in validate_tree(root, charset, cfg, reports / RESULTS_DIR, workers, prefix, check):
            stats = lmdb_stats(result.lmdb, charset)["total"]
            write_plots(stats, reports / PLOTS_DIR, result.slug)
            metrics[result.slug] = {**result.metrics, **summary(stats)}
            results.append(result)
    write_json(reports / METRICS_FILE, metrics, sort_keys=True)
    check.build_docs(reports / DOCS_DIR)
    return results


def validate_pipeline_data(cfg: Config, workers: int | None = None) -> list[ValidationResult]:
    """The ``validate`` stage: the GX suite over every training source's LMDBs (the real training sets where
    converted), the benchmark LMDBs and the real benchmark sets where converted, with their Data Docs, and the
    overlap check of every training image against every benchmark
    image (``reports/validation/overlap.json``, counted in ``data_metrics.json`` under ``overlap``). A training
    image that is a benchmark image ends the stage in one sentence naming both, after the reports are written."""
    from rosetta.data.sources import real_train_note
    from rosetta.prep.benchmarks import real_lmdbs
    from rosetta.prep.overlap import Overlap, copy_sentence, training_overlap
    from rosetta.prep.real_train import REPORT as REAL_REPORT

    layout = DataLayout.from_config(cfg)
    workers = cfg.data.workers if workers is None else workers
    sources = [s for s in cfg.data.sources if s != "real" or real_train_note(layout.real_train) is None]
    roots = {source: layout.lmdb(source) for source in sources}
    # A source's test split is not trained on: the synth one is the synth_test benchmark itself.
    splits = {source: [root / s for s in ("train", "val") if (root / s).is_dir()] for source, root in roots.items()}
    overlap = training_overlap(splits, [layout.benchmarks, layout.real_benchmarks], workers)
    real_report = layout.real_train / REAL_REPORT
    if "real" in roots and real_report.is_file():
        dropped = sum(s["dropped"].get("near_duplicate", 0) for s in json.loads(real_report.read_text())["sets"].values())
        overlap["sources"]["real"]["dropped_at_conversion"] = dropped
    write_json(layout.reports / RESULTS_DIR / OVERLAP_FILE, overlap)
    counts = {source: {k: v for k, v in entry.items() if isinstance(v, int)}
              for source, entry in overlap["sources"].items()}
    counts["copies"] = len(overlap["copies"])
    roots["benchmarks"] = layout.benchmarks
    if real_lmdbs(layout.real_benchmarks):
        roots["real_benchmarks"] = layout.real_benchmarks
    results = validate_datasets(roots, Charset.from_config(cfg.charset), cfg.data.validation, layout.reports,
                                workers, {"overlap": counts})
    if overlap["copies"]:
        first = Overlap(**overlap["copies"][0])
        more = f" ({len(overlap['copies']) - 1} more in {layout.reports / RESULTS_DIR / OVERLAP_FILE})" \
            if len(overlap["copies"]) > 1 else ""
        raise RosettaError(copy_sentence(first, "its training set and convert again") + more)
    return results

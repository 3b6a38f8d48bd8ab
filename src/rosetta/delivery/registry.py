"""The MLflow Model Registry: each gated ONNX export becomes a version of ``registry.model_name``, linked to its
training run, and promotion moves aliases (``production``, ``previous``), never stages.

A version carries a handful of tags a person reads and the rule compares (``version_tags``: the scores, data
version, git commit, DVC experiment, Prefect flow run, benchmark set, model digest); the rest of its evidence
(every metric, the parity report, each LMDB's md5) is ``evidence.json`` in its run. ``rosetta.delivery.promotion
.decide`` is the rule (pure); ``promote``, ``rollback`` and ``register_and_promote`` apply it to a real registry,
add every decision to the version's history (``rosetta.delivery.decisions``) and print it.
"""
from __future__ import annotations

import functools
import hashlib
import json
import tempfile
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Sequence

from rosetta.config import Config
from rosetta.delivery.decisions import DecisionRecord, history_folder, record_decision
from rosetta.delivery.guard import score_production, unscored_guarded
from rosetta.delivery.promotion import (METRIC_TAG_PREFIX, TAG_BENCHMARK, TAG_BENCHMARK_REAL, TAG_PARITY, Decision,
                                        Evidence, decide, resolve_metric)
from rosetta.errors import RosettaError
from rosetta.evaluation.metrics import flat_metrics
from rosetta.evaluation.sets import scored_sets
from rosetta.fsutil import sha256_file, write_json
from rosetta.layout import RunLayout
from rosetta.tracking.registered import TAG_FILES_SHA256, TAG_MODEL_SHA256, files_digest, registry_client
from rosetta.tracking.store import artifact_bars_on_terminal, missing, store_errors, tracking_uri

TAG_REPLACED = "promotion.replaced"  # the production version this one replaced: where a rollback returns
MODEL_ARTIFACT = "model"


class RegistryError(RosettaError):
    """A registration or promotion that cannot proceed; the message says what to do."""


# --------------------------------------------------------------------------- evidence from files


def read_json(path: Path, what: str, fix: str) -> dict:
    if not path.is_file():
        raise RegistryError(f"{path}: {what} not found; {fix}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise RegistryError(f"{path}: {what} is not valid JSON; {fix}") from None
    if not isinstance(data, dict):
        raise RegistryError(f"{path}: {what} is not a JSON object; {fix}")
    return data


def benchmark_set(*roots: Path) -> str:
    """A name for the benchmark data at ``roots``: a digest of every set's name, size and labels, then
    the sets, e.g. ``3f2a9c1b0d4e: IIIT5k_3000=3000, SVT=647``. Equal strings mean comparable scores."""
    from rosetta.data.lmdb_io import find_lmdbs, iter_labels, lmdb_name

    digest = hashlib.sha256()
    sizes = []
    for root in roots:
        paths = find_lmdbs(root) if root.is_dir() else []
        if not paths:
            raise RegistryError(f"{root}: no benchmark LMDB there; run `dvc repro evaluate` (promotion compares "
                                "scores on the same benchmark set)")
        for path in paths:
            name = lmdb_name(path, root)
            labels = [label for _, label in iter_labels(path)]
            digest.update(f"{name}\0{len(labels)}\0".encode())
            for label in labels:
                digest.update(label.encode("utf-8") + b"\0")
            n = len(labels)
            sizes.append(f"{name}={n}")
    return f"{digest.hexdigest()[:12]}: {', '.join(sizes)}"


# --------------------------------------------------------------------------- the registry


def _locked(fn):
    """``fn(cfg, ...)`` run holding the registry lock of ``registry.model_name`` (``registry_lock``: one writer of
    the registry at a time, across machines sharing the store), a failing store said in one sentence."""
    @functools.wraps(fn)
    def run(cfg: Config, *args, **kwargs):
        from rosetta.delivery.registry_lock import registry_lock

        with store_errors(tracking_uri(cfg)):
            with registry_lock(registry_client(cfg), cfg.registry.model_name):
                return fn(cfg, *args, **kwargs)
    return run


def logged_files_digest(model_uri: str) -> str:
    """``files_digest`` of a model just logged (its files as the artifact store holds them): recorded on the
    version, so loading it later can tell that none of them changed (``rosetta.tracking.registered``)."""
    import mlflow

    with tempfile.TemporaryDirectory(prefix="rosetta-register-") as tmp, artifact_bars_on_terminal():
        return files_digest(Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=tmp)))


def version_tags(metrics: Mapping[str, float], metric: str, provenance: Mapping[str, str], **evidence: str
                 ) -> dict[str, str]:
    """What a version shows and the promotion rule reads: ``evidence`` (model digest, backbone, benchmark sets,
    parity), the provenance a person follows (data version, git commit, DVC experiment, Prefect flow run) and the
    scores: ``metric`` (what promotion compares), the totals and each set's accuracy."""
    from rosetta.tracking.provenance import TAG_DVC_EXPERIMENT, TAG_FLOW_RUN

    tags = {k: provenance[k] for k in ("data_version", "git_commit", TAG_DVC_EXPERIMENT, TAG_FLOW_RUN)
            if k in provenance}
    tags.update(evidence)
    tags.update({METRIC_TAG_PREFIX + k: f"{v:.6g}" for k, v in metrics.items()
                 if k in (metric, "accuracy_real", "accuracy_total") or k.endswith("/accuracy")})
    return tags


def create_version(client, name: str, model_uri: str, model_id: str, run_id: str, tags: Mapping[str, str]) -> str:
    """A new version of ``name`` from the logged model, with its tags in the same call (a promotion never sees a
    version without its evidence) and ``run_id`` as its run: the training run's page lists it."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    return str(client.create_model_version(name, model_uri, run_id=run_id, tags=dict(tags), model_id=model_id).version)


def _pip_requirements() -> list[str]:
    # Exactly what the pyfunc imports; listing them skips MLflow's slow requirement inference.
    return [f"{dist}=={metadata.version(dist)}"
            for dist in ("mlflow", "onnxruntime", "numpy", "pillow", "pandas", "pyyaml")]


@_locked
def register_model(cfg: Config, onnx_path: Path, parity: Mapping[str, Any], metrics: Mapping[str, float],
                   run_id: str | None, benchmark_dirs: Sequence[Path], real_dir: Path | None = None) -> str:
    """Log ``onnx_path`` as a pyfunc model in a run ``register`` nested under the training run ``run_id`` (a
    run of its own without one) and register it as a version of the training run, its evidence in that run's
    ``registry/<model>/v<N>/evidence.json``; returns the version. ``benchmark_dirs`` are the LMDB folders
    ``metrics`` were scored on.

    Refuses a file whose parity gate did not pass, and metrics without ``registry.metric``. The same file
    trained on the same data version (its sha256 and ``data_version`` tags) is the version that already
    holds it: registering it again returns that version.
    """
    import mlflow

    from rosetta.tracking.provenance import provenance_tags
    from rosetta.tracking.store import Tracker, activate_store
    from rosetta_infer import pyfunc_code
    from rosetta_infer.onnx_runtime import int8_path, onnx_model_info
    from rosetta_infer.pyfunc import ONNX_ARTIFACT, ONNX_INT8_ARTIFACT, code_path, input_example, signature

    reg = cfg.registry
    if not parity.get("passed"):
        raise RegistryError(f"{onnx_path}: its ONNX parity gate did not pass ({'; '.join(parity.get('failures', []))});"
                            " nothing was registered")
    if not onnx_path.is_file():
        raise RegistryError(f"{onnx_path}: ONNX model not found; run `rosetta export` (or `dvc repro export`) first")
    metric = resolve_metric(reg.metric, metrics)
    if metric not in metrics:
        known = ", ".join(sorted(metrics)[:10]) or "none"
        raise RegistryError(f"registry.metric: {reg.metric!r} is not among the benchmark metrics ({known}); "
                            "pick one of them")
    info = onnx_model_info(onnx_path)  # before anything is logged: a file that is not ours stops here
    # The int8 model beside the float one passed its own gate (export leaves none otherwise): both are kept.
    onnx_files = {ONNX_ARTIFACT: str(onnx_path)}
    if int8_path(onnx_path).is_file():
        onnx_files[ONNX_INT8_ARTIFACT] = str(int8_path(onnx_path))
    elif cfg.serve.precision == "int8":
        raise RegistryError(f"{int8_path(onnx_path)}: serve.precision is int8 but there is no int8 model; export "
                            "with export.int8: true (or `rosetta export --int8`) first, or set serve.precision: fp32")
    provenance = provenance_tags()
    evidence = {TAG_MODEL_SHA256: sha256_file(onnx_path),
                "backbone": info.get("backbone", "unknown"), TAG_BENCHMARK: benchmark_set(*benchmark_dirs),
                TAG_PARITY: "true"}
    evidence.update({TAG_BENCHMARK_REAL: benchmark_set(real_dir)} if real_dir is not None else {})
    tags = version_tags(metrics, metric, provenance, **evidence)

    uri = tracking_uri(cfg)
    activate_store(uri)
    client = registry_client(cfg)
    same = [v for v in client.search_model_versions(f"name='{reg.model_name}'")
            if all(v.tags.get(k) == tags[k] for k in (TAG_MODEL_SHA256, "data_version"))]
    if same:
        version = str(min(int(v.version) for v in same))
        print(f"{reg.model_name} v{version} already holds {onnx_path} (same file sha256, data version "
              f"{tags['data_version']}); not registered again", flush=True)
        return version
    if run_id is not None:
        try:
            client.get_run(run_id)
        except Exception:
            raise RegistryError(f"MLflow run {run_id} not found at {uri}; check mlflow.tracking_uri (or "
                                "MLFLOW_TRACKING_URI) against the store the training run used") from None
    run = Tracker(cfg, name=f"register {reg.model_name}", parent_id=run_id, tags=provenance)
    with run.active(), artifact_bars_on_terminal():
        # The input example (a small PNG) becomes serving_input_example.json; MLflow checks the model reads it
        # (downloading it back: a bar on a terminal only).
        logged = mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT, python_model=pyfunc_code.__file__, artifacts=onnx_files,
            code_paths=[code_path()], pip_requirements=_pip_requirements(),
            signature=signature(), input_example=input_example(), model_config=asdict(cfg.serve))
    tags[TAG_FILES_SHA256] = logged_files_digest(logged.model_uri)
    owner = run_id or run.run_id
    version = create_version(client, reg.model_name, logged.model_uri, logged.model_id, owner, tags)
    client.log_dict(owner, {"tags": tags, "metrics": dict(metrics), "parity": dict(parity), "provenance": provenance,
                            "registered_from": run.run_id},
                    f"{history_folder(reg.model_name, version)}/evidence.json")
    client.set_tag(run.run_id, "registered_version", f"{reg.model_name} v{version}")
    return version


def _aliases(client, name: str) -> dict[str, str]:
    from mlflow.exceptions import MlflowException

    try:
        return {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}
    except MlflowException as exc:
        if not missing(exc):
            raise
        raise RegistryError(f"registered model {name!r} not found in the MLflow registry; run the pipeline "
                            "(`dvc repro` or the Prefect flow) first") from None


def _version(client, name: str, version: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, version)
    except MlflowException as exc:
        if not missing(exc):
            raise
        raise RegistryError(f"{name} v{version} not found in the MLflow registry; list versions in the MLflow UI "
                            "or pass an existing --version") from None


def model_aliases(cfg: Config, name: str) -> dict[str, str]:
    """Each alias of registered model ``name`` and the version holding it."""
    return _aliases(registry_client(cfg), name)


def model_version(cfg: Config, name: str, version: str):
    """Version ``version`` of ``name`` (MLflow's ``ModelVersion``)."""
    return _version(registry_client(cfg), name, version)


def _evidence(client, name: str, version: str, metric: str, guarded: Sequence[str] = ()) -> Evidence:
    return Evidence.from_tags(version, _version(client, name, version).tags, metric, guarded)


def _record(client, decision: Decision, outcome: str, command: str, reason: str | None = None,
            about_production: bool = False) -> None:
    """``outcome`` of ``decision`` added to the history of its candidate, or (``about_production``) of the version
    that held production before it; each row shows that version's own score beside production's then."""
    version, score = ((decision.production_version, decision.production_score) if about_production
                      else (decision.version, decision.score))
    record_decision(client, decision.model_name, version, DecisionRecord(
        outcome, reason or decision.reason, command, decision.metric, score, decision.production_version,
        decision.production_score, None if about_production else decision.set_deltas or None))


@_locked
def promote(cfg: Config, version: str | int | None = None, force: bool = False, command: str | None = None
            ) -> Decision:
    """Decide whether ``version`` (default: the newest) takes alias ``registry.alias``, apply it and record it.

    The version it replaces gets ``registry.previous_alias``. The decision joins the candidate's history (and
    the replaced version's) and is printed, whatever it is; ``command`` names what decided, for the history.
    """
    command = command or ("rosetta promote --force" if force else "rosetta promote")
    reg = cfg.registry
    client = registry_client(cfg)
    aliases = _aliases(client, reg.model_name)
    if version is None:
        versions = client.search_model_versions(f"name='{reg.model_name}'")
        if not versions:
            raise RegistryError(f"registered model {reg.model_name!r} has no version yet; run the pipeline first")
        version = max(int(v.version) for v in versions)
    version = str(version)
    candidate = _evidence(client, reg.model_name, version, reg.metric, reg.guarded_sets)
    current = aliases.get(reg.alias)
    if current and current != version and not force:
        unscored = unscored_guarded(reg.guarded_sets, _version(client, reg.model_name, version).tags,
                                    _version(client, reg.model_name, current).tags)
        if unscored:
            score_production(cfg, client, reg.model_name, current, unscored)
    production = _evidence(client, reg.model_name, current, reg.metric, reg.guarded_sets) if current else None
    decision = decide(candidate, production, reg, force)
    if production is not None and production.version == version:
        print(decision.summary(), flush=True)  # nothing changes, and production keeps its own record
        return decision
    if decision.promoted:
        if current:
            client.set_registered_model_alias(reg.model_name, reg.previous_alias, current)
            client.set_model_version_tag(reg.model_name, version, TAG_REPLACED, current)
        client.set_registered_model_alias(reg.model_name, reg.alias, version)
        if current:
            _record(client, decision, "replaced", command, f"v{version} took {reg.alias!r}: {decision.reason}",
                    about_production=True)
    _record(client, decision, "promoted" if decision.promoted else "not promoted", command)
    print(decision.summary(), flush=True)
    return decision


@_locked
def rollback(cfg: Config) -> Decision:
    """Give ``registry.alias`` back to the ``registry.previous_alias`` version; that version's own
    predecessor (if any) becomes the new previous, so rollbacks can be repeated."""
    reg = cfg.registry
    client = registry_client(cfg)
    aliases = _aliases(client, reg.model_name)
    current, previous = aliases.get(reg.alias), aliases.get(reg.previous_alias)
    if current is None:
        raise RegistryError(f"no version of {reg.model_name} has alias {reg.alias!r}; there is nothing to roll back")
    if previous is None or previous == current:
        raise RegistryError(f"{reg.model_name} has no {reg.previous_alias!r} version to roll back to; promote one "
                            "by hand with `rosetta promote --version N --force`")
    restored = client.get_model_version(reg.model_name, previous)
    client.set_registered_model_alias(reg.model_name, reg.alias, previous)
    earlier = restored.tags.get(TAG_REPLACED)
    if earlier and earlier not in (current, previous):
        client.set_registered_model_alias(reg.model_name, reg.previous_alias, earlier)
    else:
        client.delete_registered_model_alias(reg.model_name, reg.previous_alias)
    reason = f"rolled back from v{current} with `rosetta rollback`"
    evidence = Evidence.from_tags(previous, restored.tags, reg.metric)
    decision = Decision(reg.model_name, previous, True, reason, evidence.metric, evidence.score, current,
                        _evidence(client, reg.model_name, current, reg.metric).score, action="rollback")
    _record(client, decision, "rolled back", "rosetta rollback", f"replaced by v{previous} with `rosetta rollback`",
            about_production=True)
    _record(client, decision, "promoted", "rosetta rollback")
    print(decision.summary(), flush=True)
    return decision


def register_and_promote(cfg: Config, onnx_path: Path, parity: Mapping[str, Any], metrics: Mapping[str, Any],
                         run_id: str | None, decision_json: Path | None = None) -> Decision:
    """The pipeline's last step, shared by the DVC stage and the flow: register, decide, record.

    ``metrics`` is ``evaluate_benchmarks``' summary (what the evaluate stage writes to metrics.json).
    """
    if not isinstance(metrics.get("sets"), Mapping):
        raise RegistryError("the benchmark metrics have no 'sets' section; evaluate the model again with the "
                            "evaluate stage (`dvc repro evaluate`)")
    sets = scored_sets(cfg)
    real = sets.real if metrics.get("real_sets") else None
    if metrics.get("real_sets") and real is None:
        raise RegistryError(f"the benchmark metrics score the real sets {', '.join(metrics['real_sets'])}, which are "
                            "no longer converted; run the pipeline again (`dvc repro evaluate`)")
    scored = [sets.benchmarks] + ([real] if real else [])
    version = register_model(cfg, Path(onnx_path), parity, flat_metrics(metrics), run_id, scored, real)
    decision = promote(cfg, version, command="registration")
    if decision_json is not None:
        write_json(Path(decision_json), {**decision.to_dict(), "run_id": run_id})
    return decision


def pipeline_inputs(cfg: Config, onnx: str | None = None, parity: str | None = None, metrics: str | None = None,
                    run_json: str | None = None) -> tuple[Path, dict, dict, str | None]:
    """(onnx, parity report, metrics, run id) from the files the export, evaluate and train stages write, each
    checked to be about that ONNX file and its run (``rosetta.delivery.evidence``)."""
    from rosetta.delivery.evidence import check_evidence
    from rosetta_infer.onnx_runtime import onnx_model_info

    runs = RunLayout.from_config(cfg)
    onnx_path = Path(onnx) if onnx else runs.onnx
    parity_path = Path(parity) if parity else runs.parity
    metrics_path = Path(metrics) if metrics else runs.eval_metrics
    run_path = Path(run_json) if run_json else runs.run_json
    run = read_json(run_path, "the training run record", "run the train stage (`dvc repro train`) first")
    report = read_json(parity_path, "the parity report", "run `rosetta export` (or `dvc repro export`) first")
    scores = read_json(metrics_path, "the benchmark metrics", "run the evaluate stage (`dvc repro evaluate`) first")
    if not onnx_path.is_file():
        raise RegistryError(f"{onnx_path}: ONNX model not found; run `rosetta export` (or `dvc repro export`) first")
    check_evidence(onnx_path, sha256_file(onnx_path), onnx_model_info(onnx_path).get("run_id"), parity_path, report,
                   metrics_path, scores, run_path, run.get("run_id"))
    return onnx_path, report, scores, run.get("run_id")

"""A registered version carried from one MLflow store to another (a project's own store to its team's server,
``rosetta team seed``): its files byte for byte, checked against the digests the source registry recorded on
both sides, its tags (scores, benchmark sets, digests) and evidence in a run of its own on the destination, then
the destination's promotion rule with its decision history, which starts there.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Mapping

from rosetta.config import Config
from rosetta.errors import RosettaError
from rosetta.fsutil import environ
from rosetta.registry.decisions import TAG_DECISION, history_folder
from rosetta.registry.promotion import TAG_REPLACED, promote
from rosetta.registry.refs import TAG_FILES_SHA256, fetch_verified, registry_client
from rosetta.registry.versions import MODEL_ARTIFACT, create_version, logged_files_digest
from rosetta.tracking.failures import missing
from rosetta.tracking.store import activate_store, artifact_bars_on_terminal, ensure_experiment, tracking_uri

TAG_COPIED_FROM = "copied_from"  # on the copy: the version and store it came from
# The source registry's own decisions about it; the destination decides for itself.
_NOT_COPIED = (TAG_DECISION, TAG_REPLACED)


def _evidence(client, name: str, version) -> dict | None:
    """The ``evidence.json`` registration left in the version's run (every metric, parity, provenance), if any."""
    path = f"{history_folder(name, version.version)}/evidence.json"
    if not client.list_artifacts(version.run_id, path):
        return None
    with tempfile.TemporaryDirectory(prefix="rosetta-copy-") as tmp, artifact_bars_on_terminal():
        return json.loads(Path(client.download_artifacts(version.run_id, path, tmp)).read_text())


def _production(cfg: Config):
    """The version holding ``registry.alias`` in the store the environment names, or None."""
    from mlflow.exceptions import MlflowException

    activate_store(tracking_uri(cfg))
    client = registry_client(cfg)
    try:
        version = client.get_registered_model(cfg.registry.model_name).aliases.get(cfg.registry.alias)
    except MlflowException as exc:
        if not missing(exc):
            raise
        return None
    return client.get_model_version(cfg.registry.model_name, str(version)) if version is not None else None


def copy_production(cfg: Config, source: str, destination: Mapping[str, str], command: str) -> str | None:
    """Copy the version holding ``registry.alias`` in the store ``source`` into the store the MLflow variables
    ``destination`` name (address and credentials), and promote it there by the registry's rule, recorded as
    ``command``; returns the new version, or None where the destination has a production version already or the
    source has none (each said in one line)."""
    name, alias = cfg.registry.model_name, cfg.registry.alias
    with environ(destination):
        current = _production(cfg)
        if current is not None:
            print(f"{name}@{alias} is v{current.version} in {tracking_uri(cfg)} already; nothing copied", flush=True)
            return None
    with tempfile.TemporaryDirectory(prefix="rosetta-copy-") as tmp, environ({"MLFLOW_TRACKING_URI": source}):
        version = _production(cfg)
        if version is None:
            print(f"no {name}@{alias} in {source} to copy; the team's registry starts without one", flush=True)
            return None
        uri = f"models:/{name}/{version.version}"
        verified = fetch_verified(cfg, uri, Path(tmp) / MODEL_ARTIFACT, command)  # the digests checked here
        evidence = _evidence(registry_client(cfg), name, version)
        copied_from = f"{name} v{version.version} of {source}"
        tags = {k: v for k, v in version.tags.items() if k not in _NOT_COPIED} | {TAG_COPIED_FROM: copied_from}
        with environ(destination):
            target = tracking_uri(cfg)
            activate_store(target)
            client = registry_client(cfg)
            experiment = ensure_experiment(client, cfg.mlflow.experiment, target)
            run_id = client.create_run(experiment, run_name=f"copy of {name} v{version.version}",
                                       tags={TAG_COPIED_FROM: copied_from}).info.run_id
            with artifact_bars_on_terminal():
                client.log_artifacts(run_id, str(verified.folder), MODEL_ARTIFACT)
            model_uri = f"{client.get_run(run_id).info.artifact_uri}/{MODEL_ARTIFACT}"
            if tags.get(TAG_FILES_SHA256) and logged_files_digest(model_uri) != tags[TAG_FILES_SHA256]:
                client.set_terminated(run_id, "FAILED")
                raise RosettaError(f"{command}: the files of {copied_from} changed on their way to {target} (their "
                                   "digest no longer matches the registry's); check the server's artifact store and "
                                   "run it again")
            copy = create_version(client, name, model_uri, None, run_id, tags)
            if evidence is not None:
                client.log_dict(run_id, {**evidence, TAG_COPIED_FROM: copied_from},
                                f"{history_folder(name, copy)}/evidence.json")
            client.set_terminated(run_id)
            print(f"{copied_from} copied to {target} as {name} v{copy}", flush=True)
            promote(cfg, copy, command=command)
    return copy

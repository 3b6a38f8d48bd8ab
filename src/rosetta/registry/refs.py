"""Reading the registry: a model URI of the configured registry (``models:/<name>@<alias>``,
``models:/<name>/<version>``) resolved to its version, or one sentence when it names none, and the version's files
downloaded and checked against the digests the registry recorded when it was registered.

The registry's database and the artifact store are two places: anyone who can write the store can swap the
file a version points to. ``model.sha256`` (the ONNX file) and ``model.files.sha256`` (every file of the
logged model, its code included) are tags in the database; ``fetch_verified`` refuses files that do not match
them, so what is served, evaluated or predicted with is what was registered and promoted.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from rosetta.config import Config
from rosetta.errors import RosettaError
from rosetta.fsutil import sha256_file

TAG_MODEL_SHA256 = "model.sha256"  # the ONNX file's; with data_version, what makes a registration the same one
TAG_FILES_SHA256 = "model.files.sha256"  # every file of the logged model (``files_digest``)
MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[\w-]+)|/(?P<version>\d+))$")
ONNX_ARTIFACTS = ("onnx", "onnx_int8")  # the pyfunc's artifact keys holding ONNX files (rosetta_infer.pyfunc)
# MLflow writes this file into every model it downloads through a models:/ URI: it is no file of the model.
_DOWNLOAD_NOTE = "registered_model_meta"


class RegistryError(RosettaError):
    """A registration, promotion or read of the registry that cannot proceed; the message says what to do."""


def is_model_uri(text: str) -> bool:
    return str(text).startswith("models:/")


@dataclass(frozen=True)
class ModelRef:
    """A model URI, parsed."""

    uri: str
    name: str
    alias: str | None
    version: str | None

    @classmethod
    def parse(cls, uri: str, setting: str = "the model URI") -> "ModelRef":
        match = MODEL_URI.match(uri)
        if match is None:
            raise RosettaError(f"{setting}: {uri!r} is not models:/<name>@<alias> or models:/<name>/<version>")
        return cls(uri, match["name"], match["alias"], match["version"])


def registry_client(cfg: Config):
    """An MlflowClient on the configured store, registry included."""
    from mlflow import MlflowClient

    from rosetta.tracking.store import tracking_uri

    uri = tracking_uri(cfg)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def resolve_version(cfg: Config, uri: str, setting: str = "the model URI"):
    """The ``ModelVersion`` a models:/ URI names in the configured registry; an unknown model, alias or version
    is one sentence saying which exist and the command that makes the missing one."""
    from mlflow.exceptions import MlflowException

    from rosetta.tracking.failures import store_errors
    from rosetta.tracking.store import tracking_uri

    ref = ModelRef.parse(uri, setting)
    store = tracking_uri(cfg)
    client = registry_client(cfg)
    with store_errors(store):
        try:
            model = client.get_registered_model(ref.name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            raise RegistryError(f"{setting}: no registered model {ref.name!r} in the registry at {store}; register "
                               "one first (`rosetta register`, or `dvc repro`), or check mlflow.tracking_uri") from None
        if ref.alias is not None:
            if ref.alias not in model.aliases:
                raise RegistryError(_no_alias(cfg, setting, ref, model.aliases))
            return client.get_model_version(ref.name, str(model.aliases[ref.alias]))
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{ref.name}'"))
        if int(ref.version) not in versions:
            held = f"versions {versions[0]} to {versions[-1]}" if versions else "no version"
            raise RegistryError(f"{setting}: {ref.name} has no version {ref.version} ({held}); pick one of them")
        return client.get_model_version(ref.name, ref.version)


def _no_alias(cfg: Config, setting: str, ref: ModelRef, aliases: dict) -> str:
    held = ", ".join(f"{a} (v{v})" for a, v in sorted(aliases.items())) or "none"
    if ref.alias == cfg.registry.alias:
        return (f"{setting}: {ref.name} has no version with alias {ref.alias!r} yet (its aliases: {held}); promote "
                f"one with `rosetta promote --version N --force` (see the versions in `mlflow ui`), or name a version "
                f"(models:/{ref.name}/<version>, `rosetta serve --version N`)")
    return (f"{setting}: {ref.name} has no alias {ref.alias!r} (its aliases: {held}); use one of those, or "
            f"models:/{ref.name}/<version>")


def files_digest(folder: Path) -> str:
    """A sha256 over every file of a model folder (relative paths and contents), MLflow's download note aside."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != _DOWNLOAD_NOTE):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with open(path, "rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()


def onnx_artifacts(folder: Path) -> dict[str, Path]:
    """The ONNX files of a downloaded pyfunc model by artifact key, as its MLmodel file names them."""
    mlmodel = Path(folder) / "MLmodel"
    if not mlmodel.is_file():
        raise RosettaError(f"{folder}: no MLmodel file in it; this is no MLflow model")
    try:
        artifacts = yaml.safe_load(mlmodel.read_text())["flavors"]["python_function"].get("artifacts") or {}
        return {key: Path(folder) / artifacts[key]["path"] for key in ONNX_ARTIFACTS if key in artifacts}
    except (yaml.YAMLError, KeyError, TypeError):
        raise RosettaError(f"{mlmodel}: not an MLmodel file of a rosetta model (no python_function flavour with "
                           "artifacts); register the model again") from None


@dataclass(frozen=True)
class VerifiedModel:
    folder: Path  # the model's files, as registered
    name: str
    version: str
    onnx: Path  # the float ONNX file in ``folder``


def fetch_verified(cfg: Config, uri: str, dest: Path, setting: str = "the model URI") -> VerifiedModel:
    """Download the registered version ``uri`` names into the empty folder ``dest``, checked (``download_verified``)."""
    return download_verified(cfg, resolve_version(cfg, uri, setting), dest, setting, uri)


def download_verified(cfg: Config, version, dest: Path, setting: str = "the model URI",
                      uri: str | None = None) -> VerifiedModel:
    """Download ``version`` (a resolved ``ModelVersion``; ``uri``, what named it) into the empty folder ``dest``
    and check it against the registry: the ONNX file against ``model.sha256``, and, for versions registered with it,
    every file against ``model.files.sha256``. A mismatch (the artifact store changed since) is refused in one
    sentence."""
    import mlflow

    from rosetta.tracking.failures import store_errors
    from rosetta.tracking.store import activate_store, artifact_bars_on_terminal, tracking_uri

    described = f"{uri or f'models:/{version.name}/{version.version}'} (v{version.version})"
    store = tracking_uri(cfg)
    activate_store(store)  # MLflow resolves the download through its own registry setting, not the one it is given
    with store_errors(store), artifact_bars_on_terminal():
        try:
            folder = Path(mlflow.artifacts.download_artifacts(f"models:/{version.name}/{version.version}",
                                                              dst_path=str(dest), tracking_uri=store,
                                                              registry_uri=store))
        except OSError as exc:
            raise RosettaError(f"{setting}: the files of {described} cannot be read from the artifact store "
                               f"({exc.strerror or exc}); check that the store is there") from None
    expected = version.tags.get(TAG_MODEL_SHA256)
    if not expected:
        raise RosettaError(f"{setting}: {described} carries no {TAG_MODEL_SHA256} tag, so its file cannot be checked; "
                           "register the model again (`rosetta register`)")
    onnx = onnx_artifacts(folder).get("onnx")
    if onnx is None or not onnx.is_file():
        raise RosettaError(f"{setting}: {described} holds no ONNX file in the artifact store; register the model "
                           "again (`rosetta register`)")
    changed = sha256_file(onnx) != expected
    files = version.tags.get(TAG_FILES_SHA256)
    if changed or (files and files_digest(folder) != files):
        what = "its ONNX file no longer matches" if changed else "its files (model code, settings) no longer match"
        raise RosettaError(f"{setting}: {described} was changed in the artifact store since it was registered "
                           f"({what} the digest the registry recorded); it is not loaded: restore "
                           "the artifact store from a backup, or register the model again (`rosetta register`)")
    return VerifiedModel(folder, version.name, str(version.version), onnx)


def aliases(client, name: str) -> dict[str, str]:
    """Each alias of registered model ``name`` and the version holding it."""
    from mlflow.exceptions import MlflowException

    from rosetta.tracking.failures import missing

    try:
        return {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}
    except MlflowException as exc:
        if not missing(exc):
            raise
        raise RegistryError(f"registered model {name!r} not found in the MLflow registry; run the pipeline "
                            "(`dvc repro` or the Prefect flow) first") from None


def get_version(client, name: str, version: str):
    """Version ``version`` of ``name`` (MLflow's ``ModelVersion``), or one sentence where there is none."""
    from mlflow.exceptions import MlflowException

    from rosetta.tracking.failures import missing

    try:
        return client.get_model_version(name, version)
    except MlflowException as exc:
        if not missing(exc):
            raise
        raise RegistryError(f"{name} v{version} not found in the MLflow registry; list versions in the MLflow UI "
                            "or pass an existing --version") from None

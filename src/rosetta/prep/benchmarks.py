"""Benchmark folders as evaluation reads them, and the real benchmark sets of ``data.real_benchmarks``.

A benchmark folder holds sets as LMDBs or as DTRB gt-file sets (``<SET>/gt.txt``); ``benchmark_lmdbs``
gives evaluation LMDBs for either. The real sets live outside the repository (``../shared/benchmarks``), so
DVC cannot hash them as a dependency: ``write_real_manifest`` fingerprints them on every ``dvc repro`` and
``convert_real_benchmarks`` converts them once per change of that fingerprint. ``sets_folder`` says where a
setting points, for the project and for a team worker's clone of it alike.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

from rosetta_infer.preprocess import ImageLimits
from rosetta.errors import RosettaError
from rosetta.fsutil import atomic_dir, write_json
from rosetta.params import project_path
from rosetta.prep.convert import find_benchmark_sets, import_benchmarks

MANIFEST = "manifest.json"
# In a team worker's clone (``.team/workspaces/<worker>``, set by ``rosetta team up``): the project folder it was
# cloned from, against which the settings of the sets outside the repository resolve.
ORIGIN_ENV = "ROSETTA_ORIGIN_PROJECT"


def sets_folder(setting: str, key: str, project_dir: Path | None = None) -> Path:
    """The folder of the sets ``data.<key>`` names (``setting``): relative to the project folder, or, in a team
    worker's clone, to the project it was cloned from (``$ROSETTA_ORIGIN_PROJECT``), so every worker sees what the
    project sees. A worker that cannot see its project's folder stops here: its run would otherwise be scored on
    other sets than the project's."""
    origin = os.environ.get(ORIGIN_ENV)
    relative = not Path(setting).expanduser().is_absolute()
    if origin and relative and project_dir is None and not Path(origin).is_dir():
        raise RosettaError(f"data.{key}: {setting} is relative to the project {origin}, which this team worker "
                           f"cannot see; run the worker where the project is, or set data.{key} to a folder every "
                           "worker sees (or to '' for none) and commit params.yaml")
    return project_path(setting, project_dir or (Path(origin) if origin else None))


def _folder_digest(folder: Path) -> tuple[int, str]:
    """How many files ``folder`` holds and a sha256 of their relative paths and contents (lock.mdb aside:
    a reader may leave one, and it holds no data)."""
    digest = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "lock.mdb")
    for path in files:
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return len(files), digest.hexdigest()


def real_manifest(setting: str, project_dir: Path | None = None, key: str = "real_benchmarks") -> dict:
    """The fingerprint of the sets at ``data.<key>`` (``setting``, relative to the project folder:
    ``data.real_benchmarks`` or ``data.real_train``): per set its kind, file count and content digest; no sets
    where the setting is empty or the folder is missing. Paths stay as the setting gives them, so every machine
    writes the same manifest."""
    manifest: dict = {key: setting, "sets": {}}
    if not setting:
        return manifest
    root = sets_folder(setting, key, project_dir)
    for name, (kind, folder) in find_benchmark_sets(root).items():
        files, sha256 = _folder_digest(folder)
        manifest["sets"][name] = {"kind": kind, "folder": folder.relative_to(root).as_posix(), "files": files,
                                  "sha256": sha256}
    return manifest


def describe(manifest: dict) -> str:
    """One line: the real sets found, or that none was."""
    setting, sets = manifest["real_benchmarks"], manifest["sets"]
    if not setting:
        return "no real benchmark: data.real_benchmarks is empty; evaluating on data.benchmarks only"
    if not sets:
        return (f"no real benchmark found at {setting} (data.real_benchmarks); evaluating on data.benchmarks "
                "only")
    return f"real benchmarks at {setting}: {', '.join(sets)}"


def write_real_manifest(setting: str, path: Path, project_dir: Path | None = None,
                        key: str = "real_benchmarks") -> dict:
    """``real_manifest`` written to ``path`` (the ``real_benchmarks`` and ``real_train`` stages' output)."""
    manifest = real_manifest(setting, project_dir, key)
    write_json(path, manifest)
    return manifest


def checked_manifest(manifest_path: Path, key: str, project_dir: Path | None = None) -> dict:
    """The manifest at ``manifest_path``, refused when the sets it fingerprints changed since it was written:
    what is converted must be what it describes."""
    if not manifest_path.is_file():
        raise RosettaError(f"{manifest_path}: manifest of the data.{key} sets not found; run `dvc repro`")
    manifest = json.loads(manifest_path.read_text())
    if real_manifest(manifest.get(key, ""), project_dir, key) != manifest:
        raise RosettaError(f"the sets at {manifest.get(key)} (data.{key}) changed since {manifest_path} was "
                           "written; run `dvc repro` again")
    return manifest


def convert_real_benchmarks(manifest_path: Path, output: Path, workers: int = 0,
                            project_dir: Path | None = None) -> dict[str, dict]:
    """The ``convert_real`` stage: each set listed in the manifest into ``output/<set>`` as an LMDB, with
    the manifest beside them (so the folder exists, and says where it came from, even with no set).

    Refuses sets that changed since the manifest was written: the LMDBs must be what it fingerprints.
    """
    manifest = checked_manifest(manifest_path, "real_benchmarks", project_dir)
    reports = {}
    with atomic_dir(output) as tmp:
        if manifest["sets"]:
            reports = import_benchmarks(sets_folder(manifest["real_benchmarks"], "real_benchmarks", project_dir), tmp,
                                         workers)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return reports


def real_lmdbs(folder: Path) -> Path | None:
    """``folder`` (``DataLayout.real_benchmarks``) when it holds converted real sets, else None."""
    return folder if find_benchmark_sets(folder) else None


@contextlib.contextmanager
def benchmark_lmdbs(folder: str | Path, workers: int = 0, limits: ImageLimits | None = None) -> Iterator[Path]:
    """A folder of LMDBs for the benchmark sets at ``folder``: ``folder`` itself when every set is an LMDB,
    else a temporary folder where its gt-file sets are converted (``import_benchmarks``: unreadable images and
    those over ``limits`` kept as samples that are scored wrong) and its LMDBs copied, removed on exit."""
    folder = Path(folder)
    sets = find_benchmark_sets(folder)
    if not sets:
        raise RosettaError(f"{folder}: no benchmark set there (an LMDB folder holding data.mdb, or a gt-file set "
                           "holding gt.txt); run `dvc repro` or point --data at the evaluation sets")
    if all(kind == "lmdb" for kind, _ in sets.values()):
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="rosetta-bench-") as tmp:
        import_benchmarks(folder, Path(tmp), workers, limits)
        yield Path(tmp)

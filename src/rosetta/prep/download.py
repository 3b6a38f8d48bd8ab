"""Getting raw datasets onto disk safely: resumable, checksummed downloads and archive extraction
that refuses unsafe members.

Nothing here leaves a half-written file or tree under its final name: downloads grow in a ``.part``
file named after their URL and are renamed when complete, trees are built beside the target and renamed.
The download cache is keyed by URL, and an archive refused at extraction is not kept in it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tarfile
import time
import zipfile
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

import requests
from tqdm import tqdm

from rosetta.config import DataConfig
from rosetta.errors import RosettaError
from rosetta.fsutil import atomic_dir, check_replaceable, completed, sha256_file, write_json
from rosetta.layout import DataLayout

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip")
_RETRY_STATUS = {408, 429, 500, 502, 503, 504}


def local_path(source: str) -> Path | None:
    """The filesystem path a source names (a plain path or a file:// URL), or None for a remote URL."""
    parsed = urlparse(source)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme in ("http", "https"):
        return None
    return Path(source).expanduser()


def is_archive(path: str | Path) -> bool:
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def _check_sha256(path: Path, source: str, expected: str | None, on_mismatch: str) -> str:
    got = sha256_file(path)
    if expected and got.lower() != expected.lower():
        raise RosettaError(f"{source}: sha256 is {got}, expected {expected}; {on_mismatch}")
    return got


def _sidecar(dest: Path) -> Path:
    return dest.with_name(dest.name + ".json")


def url_key(url: str) -> str:
    """A short name for a URL: the download cache's folder, and the tag of a ``.part`` file."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def download(url: str, dest: Path, sha256: str | None = None, *, retries: int = 5, backoff: float = 1.0,
             timeout: float = 60.0, chunk_size: int = 1 << 16) -> Path:
    """Download ``url`` to ``dest`` and return the path of the complete file.

    Bytes go to ``dest.part`` and a later call resumes it with an HTTP Range request; failed
    connections are retried with exponential backoff. The file's sha256 is checked against
    ``sha256`` when given and recorded with the URL in ``dest.json``; a complete ``dest`` of the same URL is
    not fetched again (one of another URL is replaced). The ``.part`` file is named after the URL, so it is
    never resumed with another URL's bytes. A local path or file:// URL is used in place (checked, not copied).
    """
    local = local_path(url)
    if local is not None:
        if not local.exists():
            raise RosettaError(f"{url}: no such file or folder; check the path in params.yaml")
        if sha256 and local.is_file():
            _check_sha256(local, url, sha256, "the local file is not the expected one; replace it or fix the sha256")
        return local

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    sidecar = _sidecar(dest)
    if dest.exists() and sidecar.exists() and json.loads(sidecar.read_text()).get("url") != url:
        dest.unlink()
        sidecar.unlink()
    if dest.exists():
        recorded = json.loads(sidecar.read_text()).get("sha256") if sidecar.exists() else None
        if recorded is None:
            recorded = _check_sha256(dest, url, sha256,
                                     f"delete {dest} to download it again, or fix the sha256")
            write_json(sidecar, {"url": url, "sha256": recorded, "bytes": dest.stat().st_size}, sort_keys=True)
        if not sha256 or recorded.lower() == sha256.lower():
            return dest
        raise RosettaError(f"{url}: {dest} has sha256 {recorded}, expected {sha256}; delete it to download "
                           "again, or fix the sha256")

    part = dest.with_name(f"{dest.name}.{url_key(url)}.part")
    for attempt in range(retries + 1):
        try:
            _fetch_into(url, part, dest.name, timeout, chunk_size)
            break
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                _Retryable) as exc:
            if attempt == retries:
                raise RosettaError(f"{url}: download failed after {retries + 1} attempts ({exc}); run again "
                                   f"to resume from {part}") from None
            time.sleep(min(60.0, backoff * 2 ** attempt))
    try:
        got = _check_sha256(part, url, sha256, "the partial download was deleted; check the URL and the "
                                                "sha256 in params.yaml, then run again")
    except RosettaError:
        part.unlink(missing_ok=True)
        raise
    write_json(sidecar, {"url": url, "sha256": got, "bytes": part.stat().st_size}, sort_keys=True)
    os.replace(part, dest)
    return dest


class _Retryable(Exception):
    """A server answer worth retrying (5xx, 429, a short body)."""


def _fetch_into(url: str, part: Path, desc: str, timeout: float, chunk_size: int) -> None:
    """One request appending to ``part``; returns when the file is complete, raises otherwise."""
    have = part.stat().st_size if part.exists() else 0
    # identity: a gzip Content-Encoding would make requests inflate the bytes and break Range offsets
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    with requests.get(url, headers=headers, stream=True, timeout=timeout) as r:
        if r.status_code == 416 and have:
            # Nothing left to send: the part is complete when its size is the whole resource.
            total = r.headers.get("Content-Range", "").rpartition("/")[2]
            if total.isdigit() and int(total) == have:
                return
            part.unlink()
            raise _Retryable("the server refused to resume; starting over")
        if r.status_code in _RETRY_STATUS:
            raise _Retryable(f"HTTP {r.status_code}")
        if r.status_code not in (200, 206):
            raise RosettaError(f"{url}: the server answered HTTP {r.status_code}; check the URL in params.yaml")
        if r.status_code == 200:
            have = 0  # the server ignored the Range header: start over
        elif not r.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
            part.unlink()
            raise _Retryable("the server resumed at another offset; starting over")
        length = r.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        with open(part, "ab" if have else "wb") as f, tqdm(
                total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                desc=desc, mininterval=1.0) as bar:
            for chunk in r.iter_content(chunk_size):
                f.write(chunk)
                bar.update(len(chunk))
    size = part.stat().st_size
    if total is not None and size != total:
        raise _Retryable(f"got {size} of {total} bytes")


def _unsafe_reason(name: str) -> str | None:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or (len(name) > 1 and name[1] == ":"):
        return "is an absolute path"
    if ".." in p.parts:
        return "points outside the archive (..)"
    return None


def extract(archive: Path, dest: Path, record: dict | None = None) -> Path:
    """Extract a .tar(.gz/.bz2/.xz) or .zip into ``dest``; refuse members that escape it or are links.
    ``record`` (what the folder is of) goes into its completion marker."""
    archive, dest = Path(archive), Path(dest)
    with atomic_dir(dest, record) as tmp:
        if archive.name.lower().endswith(".zip"):
            _extract_zip(archive, tmp)
        else:
            _extract_tar(archive, tmp)
    return dest


class ArchiveError(RosettaError):
    """An archive that cannot be extracted safely (unsafe member, truncated, not an archive at all)."""

    def __init__(self, archive: Path, problem: str, remedy: str):
        super().__init__(f"{archive}: {problem}; {remedy}")
        self.problem = problem


def _refuse(archive: Path, name: str, why: str) -> ArchiveError:
    return ArchiveError(archive, f"member {name!r} {why}, so the archive was refused (nothing was written)",
                        "get it again from a trusted source")


def _unreadable(archive: Path, problem: str) -> ArchiveError:
    return ArchiveError(archive, problem, "delete it and download again")


def _extract_tar(archive: Path, out: Path) -> None:
    try:
        tar = tarfile.open(archive, "r|*")
    except (tarfile.TarError, OSError) as exc:
        raise _unreadable(archive, f"not a readable tar archive ({exc})") from None
    with tar, tqdm(unit=" files", desc=f"extract {archive.name}", mininterval=1.0) as bar:
        try:
            for member in tar:
                why = _unsafe_reason(member.name)
                if why is None and (member.issym() or member.islnk()):
                    why = "is a link"
                if why is None and not (member.isfile() or member.isdir()):
                    why = "is a device or fifo"
                if why:
                    raise _refuse(archive, member.name, why)
                tar.extract(member, out, filter="data")
                tar.members = []  # a stream of millions of members must not pile up in memory
                bar.update(1)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise _unreadable(archive, f"the archive is truncated or corrupt ({exc})") from None


def _extract_zip(archive: Path, out: Path) -> None:
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise _unreadable(archive, f"not a readable zip archive ({exc})") from None
    with zf:
        infos = zf.infolist()
        for info in infos:  # the central directory is cheap to check in full before writing anything
            why = _unsafe_reason(info.filename)
            if why is None and stat.S_ISLNK(info.external_attr >> 16):
                why = "is a link"
            if why:
                raise _refuse(archive, info.filename, why)
        try:
            for info in tqdm(infos, unit=" files", desc=f"extract {archive.name}", mininterval=1.0):
                zf.extract(info, out)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise _unreadable(archive, f"the archive is truncated or corrupt ({exc})") from None


def _file_name(url: str) -> str:
    return Path(unquote(urlparse(url).path)).name or "download"


def fetch(source: str, dest: Path, downloads: Path, sha256: str | None = None) -> Path:
    """Make ``dest`` hold the contents of ``source`` and return it.

    ``source`` is a URL or local path of an archive (downloaded into ``downloads/<url_key>``, then
    extracted), a local folder (copied), or any other file (placed inside ``dest``). ``dest`` must be new,
    empty or an earlier output (``check_replaceable``): that is checked before anything is downloaded.
    A finished ``dest`` records what it holds (the source and its sha256): it is returned as it is only for the
    same source, and a ``sha256`` the recorded one matches; another request builds it again. A downloaded
    archive that cannot be extracted is deleted, so it is never reused.
    """
    dest = Path(dest)
    done = completed(dest)
    if done is not None and done.get("source") == source and (
            not sha256 or str(done.get("sha256") or "").lower() == sha256.lower()):
        return dest
    check_replaceable(dest)
    local = local_path(source)
    if local is not None and local.is_dir():
        with atomic_dir(dest, {"source": source, "sha256": None}) as tmp:
            shutil.copytree(local, tmp, dirs_exist_ok=True, symlinks=False)
        return dest
    path = download(source, Path(downloads) / url_key(source) / _file_name(source), sha256)
    # A local file is hashed only when a sha256 is asked for (``download`` checked it then).
    record = {"source": source, "sha256": sha256.lower() if local is not None and sha256 else
              None if local is not None else _recorded_sha256(path)}
    if is_archive(path):
        try:
            return extract(path, dest, record)
        except ArchiveError as exc:
            if local is None:
                path.unlink(missing_ok=True)
                _sidecar(path).unlink(missing_ok=True)
                raise RosettaError(f"{source}: {exc.problem}; the download was deleted, so the next run fetches "
                                   "it again (check that the URL is the one you trust)") from None
            raise RosettaError(f"{path}: {exc.problem}; the file is yours and stays as it is: give an archive that "
                               "extracts, or the folder it holds") from None
    with atomic_dir(dest, record) as tmp:
        shutil.copy2(path, tmp / path.name)
    return dest


def _recorded_sha256(path: Path) -> str:
    """The sha256 ``download`` recorded beside a file it completed."""
    return json.loads(_sidecar(path).read_text())["sha256"]


def prepare_raw(data: DataConfig, seed: int, layout: DataLayout) -> dict[str, Path]:
    """The ``download`` stage: each source's raw data into ``layout.raw(source)``.

    ``synth`` is rendered rather than downloaded, ``real`` has stages of its own (``real_train``); the benchmarks
    archive, when ``data.benchmarks.url``
    is set, goes to ``layout.raw("benchmarks")``. Archives are kept in ``<data.root>/downloads`` so an
    interrupted download resumes and a rerun does not fetch them again.
    """
    downloads = layout.root / "downloads"
    raw = {}
    for source in data.sources:
        if source == "real":
            continue
        if source == "synth":
            from rosetta.prep.synth import render_dataset  # rendering pulls in fonts and word lists

            render_dataset(layout.raw(source), data.synth, seed, data.workers)
            raw[source] = layout.raw(source)
        else:
            spec = getattr(data, source)
            raw[source] = fetch(spec.url, layout.raw(source), downloads, spec.sha256)
    if data.benchmarks.url:
        raw["benchmarks"] = fetch(data.benchmarks.url, layout.raw("benchmarks"), downloads, data.benchmarks.sha256)
    return raw

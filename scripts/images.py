"""The Dockerfile's images built without a container registry, with Debian's own tools: ``base`` makes a Debian
bookworm + Python 3.11 image from Debian's packages (debootstrap from the mirror apt already uses, imported into
Podman as localhost/debian-python:3.11-bookworm), ``build`` builds a Dockerfile target on it with Podman, passing
this machine's pip settings as build secrets and its local package folders as read-only build volumes, so none of
them lands in a layer. ``podman ARGS`` runs Podman with the options this machine type needs, to run what was built.
``make image-base``, ``make image-serve``, ``make image-train``.
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from rosetta.errors import RosettaError

ROOT = Path(__file__).resolve().parents[1]
BASE_IMAGE = "localhost/debian-python:3.11-bookworm"
SUITE = "bookworm"
# What python:3.11-slim-bookworm offers the Dockerfile: python3.11 with venv and pip, and the CA certificates.
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
RECIPE_LABEL = "org.rosetta.base-recipe"
TAGS = {"serve-onnx": "localhost/rosetta-serve:latest", "train": "localhost/rosetta-pipeline:latest"}
# crun refuses this machine type's hybrid cgroups, and its default ulimits cannot be set here (containers.conf).
PODMAN_OPTIONS = ("--storage-driver", "overlay", "--cgroup-manager", "cgroupfs", "--runtime", "runc")
CONTAINERS_CONF = "[containers]\ndefault_ulimits = []\n"
# The ids the Dockerfile's pip steps mount (RUN --mount=type=secret): pip's settings, its CA bundle and constraints.
SECRET_FILES = {"cert": "pip-cert", "constraint": "pip-constraint"}
SECRETS_DIR = "/run/secrets"


def say(message: str) -> None:
    print(f"images: {message}", flush=True)


def default_cache() -> Path:
    """Beside the venv this script runs in (``make clean`` removes it with the venv), else in the project."""
    return Path(sys.prefix if sys.prefix != sys.base_prefix else ROOT / ".venv") / "image-cache"


def podman_env(cache: Path) -> dict[str, str]:
    cache.mkdir(parents=True, exist_ok=True)
    conf = cache / "containers.conf"
    if not conf.exists() or conf.read_text() != CONTAINERS_CONF:
        conf.write_text(CONTAINERS_CONF)
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def podman(cache: Path, *args: str, capture: bool = False, check: bool = True) -> subprocess.CompletedProcess:
    """``podman ARGS`` with this machine type's options; a failure is one sentence naming the command."""
    if shutil.which("podman") is None:
        raise RosettaError("podman is not installed; run `bash scripts/install_debian_packages.sh "
                           "packages/debian-podman.txt` (or `make image-base`)")
    done = subprocess.run(["podman", *PODMAN_OPTIONS, *args], env=podman_env(cache), text=True,
                          capture_output=capture)
    if check and done.returncode != 0:
        said = ((done.stderr or "").strip().splitlines() or ["no message"])[-1] if capture else "its output above"
        raise RosettaError(f"`podman {' '.join(args[:2])}` failed with status {done.returncode} ({said}); check "
                           f"what it names (`python scripts/images.py podman ...` runs it by hand)")
    return done


def image_label(cache: Path, image: str, label: str) -> str | None:
    """The image's label, or None when the image is not there."""
    done = podman(cache, "image", "inspect", "--format", f'{{{{index .Labels "{label}"}}}}', image, capture=True,
                  check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def image_size_mb(cache: Path, image: str) -> float:
    return int(podman(cache, "image", "inspect", "--format", "{{.Size}}", image, capture=True).stdout) / 1e6


# ---------------------------------------------------------------- the base image
def apt_sources(etc: Path = Path("/etc/apt")) -> list[tuple[str, list[str], list[str]]]:
    """``(uri, suites, components)`` of each entry in apt's source lists, one-line and deb822 formats."""
    folder = etc / "sources.list.d"
    files = [etc / "sources.list", *sorted(folder.glob("*.list")), *sorted(folder.glob("*.sources"))]
    entries = []
    for path in (p for p in files if p.is_file()):
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for stanza in text.split("\n\n"):
                fields = dict(line.split(":", 1) for line in stanza.splitlines()
                              if ":" in line and not line.lstrip().startswith("#"))
                fields = {k.strip().lower(): v.split() for k, v in fields.items()}
                if "deb" in fields.get("types", []) and fields.get("enabled", ["yes"]) != ["no"]:
                    entries += [(uri, fields.get("suites", []), fields.get("components", []))
                                for uri in fields.get("uris", [])]
        else:
            for line in text.splitlines():
                words = [w for w in line.split("#", 1)[0].split() if not w.startswith("[")]
                if len(words) >= 3 and words[0] == "deb":
                    entries.append((words[1], [words[2]], words[3:]))
    return entries


def debian_mirror(etc: Path = Path("/etc/apt")) -> str:
    """The mirror apt uses for Debian bookworm's main archive (never hard-coded: each machine has its own)."""
    for uri, suites, components in apt_sources(etc):
        if SUITE in suites and "main" in components:
            return uri.rstrip("/")
    raise RosettaError(f"apt has no Debian {SUITE} main entry in {etc}/sources.list or {etc}/sources.list.d/; add "
                       f"one (deb <your Debian mirror> {SUITE} main) and run `apt-get update`")


def build_base(cache: Path, refresh: bool = False) -> str:
    """The local base image, made once: the root filesystem's tarball is kept in ``cache`` under its recipe's
    digest (suite, packages, mirror), so a second machine state or a later test imports it instead of running
    debootstrap again; ``refresh`` makes a new one (a Debian point release, security updates)."""
    mirror = debian_mirror()
    recipe = hashlib.sha256(f"{SUITE} {' '.join(BASE_PACKAGES)} {mirror}".encode()).hexdigest()[:12]
    if not refresh and image_label(cache, BASE_IMAGE, RECIPE_LABEL) == recipe:
        say(f"{BASE_IMAGE} is there (recipe {recipe})")
        return BASE_IMAGE
    tarball = cache / f"debian-{SUITE}-python3.11-{recipe}.tar"
    if refresh or not tarball.exists():
        if shutil.which("debootstrap") is None:
            raise RosettaError("debootstrap is not installed; run `bash scripts/install_debian_packages.sh "
                               "packages/debian-podman.txt`")
        rootfs = cache / "rootfs.tmp"
        shutil.rmtree(rootfs, ignore_errors=True)
        say(f"debootstrap {SUITE} ({', '.join(BASE_PACKAGES)}) from {mirror} (about a minute)")
        started = time.monotonic()
        done = subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE,
                               str(rootfs), mirror], capture_output=True, text=True)
        if done.returncode != 0:
            log = cache / "debootstrap.log"
            log.write_text(done.stdout + done.stderr)
            raise RosettaError(f"debootstrap of Debian {SUITE} from {mirror} failed with status {done.returncode}; "
                               f"see {log}")
        # What the official slim image also leaves out: downloaded packages and package lists.
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (rootfs / leftover).glob("*"):
                if path.is_file():
                    path.unlink()
        partial = tarball.with_suffix(".tar.tmp")
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."], check=True)
        partial.replace(tarball)
        shutil.rmtree(rootfs)
        say(f"root filesystem made in {time.monotonic() - started:.0f} s: {tarball}")
    say(f"importing {tarball.name} as {BASE_IMAGE}")
    podman(cache, "import", "--change", f"LABEL {RECIPE_LABEL}={recipe}", "--change", "ENV LANG=C.UTF-8",
           "--change", 'CMD ["python3.11"]', str(tarball), BASE_IMAGE, capture=True)
    return BASE_IMAGE


# ---------------------------------------------------------------- pip's settings as build secrets
@dataclass
class PipSettings:
    """This machine's pip configuration, rewritten for a build: ``config`` (pip.conf text naming its files under
    /run/secrets), ``files`` (secret id -> file on this machine) and ``folders`` (local package folders it names,
    mounted read-only at the same path)."""

    config: str
    files: dict[str, Path] = field(default_factory=dict)
    folders: list[Path] = field(default_factory=list)


def pip_config_entries(python: str = sys.executable) -> list[tuple[str, str, str]]:
    """``(section, key, value)`` of every pip setting in effect here (its files, then PIP_* variables, later
    ones winning), as ``pip config list`` reports them."""
    done = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True, text=True)
    if done.returncode != 0:
        raise RosettaError(f"`{python} -m pip config list` failed ({done.stderr.strip()[-200:]}); check pip's "
                           f"configuration files (pip config debug)")
    entries = []
    for line in done.stdout.splitlines():
        name, _, value = line.partition("=")
        section, _, key = name.rpartition(".")
        entries.append(("global" if section.startswith(":env") else section, key, ast.literal_eval(value)))
    return entries


def local_folder(item: str, index: bool) -> Path | None:
    """The folder a ``file://`` URL or a path names; for an index (``.../simple``), the folder holding it, where
    the index's links to the files lead."""
    path = Path(item.removeprefix("file://")) if item.startswith("file://") or item.startswith("/") else None
    if path is None:
        return None
    return path.parent if index and path.name == "simple" else path


def pip_settings(entries: list[tuple[str, str, str]]) -> PipSettings:
    settings: dict[str, dict[str, str]] = {}
    for section, key, value in entries:
        settings.setdefault(section, {})[key] = value
    files: dict[str, Path] = {}
    folders: list[Path] = []
    for section, values in settings.items():
        for key, value in values.items():
            if key in SECRET_FILES:
                if not Path(value).is_file():
                    raise RosettaError(f"pip's {section}.{key} names {value}, which is not a file; fix it in pip's "
                                       f"configuration (pip config debug)")
                files[SECRET_FILES[key]] = Path(value)
                values[key] = f"{SECRETS_DIR}/{SECRET_FILES[key]}"
            elif key in ("find-links", "index-url", "extra-index-url"):
                for item in value.split():
                    folder = local_folder(item, index=key != "find-links")
                    if folder is not None and folder not in folders:
                        folders.append(folder)
    config = "".join(f"[{section}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())
                     for section, values in settings.items())
    return PipSettings(config, files, folders)


def build(cache: Path, target: str, tag: str, python_image: str) -> None:
    """``podman build --target TARGET`` of the project's Dockerfile on ``python_image``, pip's settings passed as
    secrets (the Dockerfile's pip steps mount them) and its local folders as read-only build volumes."""
    if target not in TAGS:
        raise RosettaError(f"the Dockerfile has no target {target!r}; use one of {', '.join(TAGS)}")
    pip = pip_settings(pip_config_entries())
    for folder in pip.folders:
        if not folder.is_dir():
            raise RosettaError(f"pip's settings name the package folder {folder}, which does not exist; fix them "
                               f"(pip config debug)")
    with tempfile.TemporaryDirectory(prefix="rosetta-image-secrets-") as secrets:
        conf = Path(secrets) / "pip.conf"
        conf.write_text(pip.config)
        conf.chmod(0o600)
        # Docker's image format, not OCI's: OCI has no SHELL, which the Dockerfile's pipes rely on (pipefail).
        pull = "--pull=never" if python_image.startswith("localhost/") else "--pull=missing"
        args = ["build", "--format", "docker", "--network", "host", "--layers", pull, "--target", target, "--tag", tag,
                "--build-arg", f"PYTHON_IMAGE={python_image}", "--secret", f"id=pip.conf,src={conf}"]
        args += [a for sid, path in pip.files.items() for a in ("--secret", f"id={sid},src={path}")]
        args += [a for folder in pip.folders for a in ("--volume", f"{folder}:{folder}:ro")]
        say(f"building {tag} (target {target}) on {python_image}; pip's settings as secrets "
            f"({', '.join(['pip.conf', *pip.files])}), read-only folders {', '.join(map(str, pip.folders)) or 'none'}")
        started = time.monotonic()
        podman(cache, *args, "--file", str(ROOT / "Dockerfile"), str(ROOT))
    say(f"built {tag} in {(time.monotonic() - started) / 60:.1f} min: {image_size_mb(cache, tag):.0f} MB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=default_cache(),
                        help="the base's root filesystem tarball and Podman's containers.conf (default: %(default)s)")
    sub = parser.add_subparsers(dest="command", required=True)
    base = sub.add_parser("base", help=f"make {BASE_IMAGE} (once; its tarball is cached)")
    base.add_argument("--refresh", action="store_true", help="debootstrap again (Debian's updates)")
    built = sub.add_parser("build", help="build a Dockerfile target")
    built.add_argument("target", choices=sorted(TAGS))
    built.add_argument("--tag", help="image name (default: localhost/rosetta-serve or rosetta-pipeline)")
    built.add_argument("--python-image", default=BASE_IMAGE,
                       help="the Dockerfile's PYTHON_IMAGE (default: the local base, made when missing; "
                            "python:3.11-slim-bookworm where a registry is reachable)")
    run = sub.add_parser("podman", help="run podman with this machine type's options", add_help=False)
    run.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    try:
        if args.command == "base":
            build_base(args.cache, args.refresh)
        elif args.command == "build":
            if args.python_image == BASE_IMAGE:
                build_base(args.cache)
            build(args.cache, args.target, args.tag or TAGS[args.target], args.python_image)
        else:
            return podman(args.cache, *args.args, check=False).returncode
    except RosettaError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

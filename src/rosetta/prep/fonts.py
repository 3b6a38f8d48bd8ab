"""The fonts the synthetic renderer draws with: only from declared packages (the pip font packages in
pyproject.toml, matplotlib's bundled fonts, and the Debian font packages listed in
``data.synth.font_packages``), so a seed renders the same bytes on every machine that installed them.
The machine's other fonts join only when ``data.synth.system_fonts`` is on.
"""
from __future__ import annotations

import importlib.util
import re
import string
import sysconfig
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from rosetta.config import SynthConfig
from rosetta.errors import RosettaError
from rosetta.params import project_path

PIP_FONT_PACKAGES = ("font_roboto", "font_lato", "font_caladea", "font_source_sans_pro", "font_source_serif_pro",
                     "font_hanken_grotesk", "font_fredoka_one", "font_manrope", "font_fjallaone", "font_rhd")
FONT_SUFFIXES = (".ttf", ".otf")
SYSTEM_FONT_DIR = Path("/usr/share/fonts")
DPKG_INFO = Path("/var/lib/dpkg/info")
CHECK_CHARS = string.digits + string.ascii_lowercase + string.ascii_uppercase

# Symbol, math and fallback fonts map letters to other shapes (or to one box), so a word drawn with
# them is unreadable; the render check catches most, the name catches the rest (cmmi's old-style digits).
_SKIP_NAME = re.compile(r"stix|math|symbol|dingbat|emoji|icon|lastresort|last resort|wingding|webding|"
                        r"cmex|cmsy|cmmi", re.IGNORECASE)
# Hairline weights fade to a faint grey at 32 px and hurt more than they teach.
_SKIP_STYLE = re.compile(r"thin|hairline", re.IGNORECASE)
# matplotlib's Computer Modern files each name their own family; roman, bold and text italic are one
# design, and a design seen in training must not count as an unseen test family.
_FAMILY_ALIASES = {"cmr10": "Computer Modern Roman", "cmb10": "Computer Modern Roman",
                   "cmti10": "Computer Modern Roman"}


@dataclass(frozen=True)
class Font:
    path: str
    family: str
    style: str

    @property
    def portable(self) -> str:
        """The file as the render's record names it (``portable_path``)."""
        return portable_path(self.path)


def portable_path(path: str | Path) -> str:
    """A font file as the render's record names it: a font a pip package installed is named below
    ``<site-packages>``, so that the record, and DVC's hash of the rendered folder, do not depend on where the
    project (and its virtual environment) lives."""
    site = Path(sysconfig.get_paths()["purelib"])
    path = Path(path)
    return f"<site-packages>/{path.relative_to(site).as_posix()}" if path.is_relative_to(site) else str(path)


def declared_debian_packages(list_file: str) -> list[str]:
    """Package names in ``list_file`` (one per line, # comments), as `make install` reads them."""
    path = project_path(list_file)
    if not path.is_file():
        raise RosettaError(f"data.synth.font_packages: {path} does not exist; point it at a list of Debian font "
                           "packages or set it to an empty string")
    names = [line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [n for n in names if n]


def debian_package_fonts(package: str, info_dir: Path = DPKG_INFO) -> list[Path]:
    """The font files a Debian package installed, from dpkg's own file list."""
    listing = info_dir / f"{package}.list"
    if not listing.is_file():
        raise RosettaError(f"data.synth.font_packages: the Debian package {package} is not installed; run "
                           "`make install` as root (it installs the listed font packages) or "
                           f"`apt-get install {package}`")
    files = (Path(line) for line in listing.read_text(encoding="utf-8").splitlines())
    return sorted(p for p in files if p.suffix.lower() in FONT_SUFFIXES and p.is_file())


def font_files(cfg: SynthConfig) -> list[Path]:
    """Every candidate font file, in priority order (the first copy of a duplicate font wins)."""
    dirs: list[Path] = []
    for pkg in PIP_FONT_PACKAGES:
        spec = importlib.util.find_spec(pkg)
        if spec and spec.submodule_search_locations:
            dirs.append(Path(list(spec.submodule_search_locations)[0]))
    import matplotlib  # only for the location of its bundled fonts

    dirs.append(Path(matplotlib.get_data_path()) / "fonts" / "ttf")
    dirs.extend(project_path(d) for d in cfg.fonts_dirs)
    if cfg.system_fonts:
        dirs.append(SYSTEM_FONT_DIR)
    files = [p for d in dirs if d.is_dir() for p in sorted(d.rglob("*")) if p.suffix.lower() in FONT_SUFFIXES]
    if cfg.font_packages:
        for package in declared_debian_packages(cfg.font_packages):
            files.extend(debian_package_fonts(package))
    return list(dict.fromkeys(files))


def _glyph(font: ImageFont.FreeTypeFont, ch: str) -> Image.Image:
    """``ch`` drawn white on black with room around it: what the font checks compare."""
    im = Image.new("L", (2 * font.size, 2 * font.size), 0)
    ImageDraw.Draw(im).text((font.size // 2, font.size // 4), ch, font=font, fill=255)
    return im


def _glyph_problem(font: ImageFont.FreeTypeFont) -> str | None:
    bitmaps = []
    for ch in CHECK_CHARS:
        im = _glyph(font, ch)
        if im.getbbox() is None:
            return f"{ch!r} renders empty"
        bitmaps.append(im.tobytes())
    # Fonts without Latin letters draw one box for every character; real fonts differ in (nearly) all.
    if len(set(bitmaps)) < len(CHECK_CHARS) - 4:
        return "0-9a-zA-Z do not render as distinct glyphs"
    return None


@lru_cache(maxsize=None)
def missing_glyphs(path: str, chars: str) -> str:
    """The characters of ``chars`` the font at ``path`` draws as its missing-glyph shape (or not at all)."""
    font = ImageFont.truetype(path, 24)
    notdef = _glyph(font, "\ue000").tobytes()  # a private-use code point: no text font maps it
    return "".join(ch for ch in chars if _glyph(font, ch).tobytes() == notdef)


@lru_cache(maxsize=None)
def _probe(path: Path, file_size: int, mtime_ns: int) -> tuple[str, str] | str:
    """(family, style) of a usable font file, or why it is not usable. Cached per file version: the glyph
    check draws 62 characters, and a process may look at the same few hundred fonts several times."""
    try:
        font = ImageFont.truetype(str(path), 24)
        family, style = font.getname()
    except OSError as exc:
        return f"unreadable ({exc})"
    family, style = family or path.stem, style or "Regular"
    if _SKIP_NAME.search(f"{path.name} {family}"):
        return "symbol, math or fallback font"
    if _SKIP_STYLE.search(f"{style} {path.stem}"):
        return "hairline weight"
    if (problem := _glyph_problem(font)) is not None:
        return problem
    return family, style


def discover_fonts(files: Sequence[Path]) -> tuple[list[Font], dict[str, str]]:
    """Usable fonts among ``files`` and, for the others, why they were skipped (path -> reason)."""
    fonts: dict[tuple[str, str], Font] = {}
    skipped: dict[str, str] = {}
    for path in files:
        stat = path.stat()
        probed = _probe(path, stat.st_size, stat.st_mtime_ns)
        if isinstance(probed, str):
            skipped[str(path)] = probed
        elif probed in fonts:
            skipped[str(path)] = f"duplicate of {fonts[probed].portable}"
        else:
            family, style = probed
            fonts[probed] = Font(str(path), _FAMILY_ALIASES.get(family, family), style)
    return sorted(fonts.values(), key=lambda f: (f.family, f.style, f.path)), skipped


def synth_fonts(cfg: SynthConfig) -> tuple[list[Font], dict[str, str]]:
    """The renderer's fonts: usable declared fonts minus ``data.synth.exclude_families``, and why the
    others were skipped."""
    fonts, skipped = discover_fonts(font_files(cfg))
    excluded = set(cfg.exclude_families)
    for f in fonts:
        if f.family in excluded:
            skipped[f.path] = "family in data.synth.exclude_families"
    return [f for f in fonts if f.family not in excluded], skipped


def split_families(families: Sequence[str], test_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train/val families, held-out test families): a deterministic share chosen by ``seed``."""
    names = sorted(set(families))
    if len(names) < 2:
        raise RosettaError(f"found {len(names)} usable font famil{'y' if len(names) == 1 else 'ies'}, need at "
                           "least 2 to hold one out for the test split; add font folders to data.synth.fonts_dirs")
    n_test = min(len(names) - 1, max(1, round(test_fraction * len(names))))
    order = np.random.default_rng([seed, 0x7E57]).permutation(len(names))
    test = sorted(names[i] for i in order[:n_test])
    return [n for n in names if n not in test], test

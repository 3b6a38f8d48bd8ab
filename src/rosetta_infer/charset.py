"""The character set and label encoding, exactly as PaddleOCR does them (its greedy CTC decoding is
``rosetta_infer.postprocess.CTCLabelDecode``).

Class 0 is the CTC blank; characters follow in dictionary order. The default alphabet is
``0-9a-z`` (36 characters) and folds labels to lower case; a PaddleOCR dictionary file (one
character per line) keeps case, and ``use_space`` appends a space as PaddleOCR's does.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from rosetta_infer.errors import RosettaError

DEFAULT_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


class CharsetError(RosettaError, ValueError):
    """A dictionary file that cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class Charset:
    characters: str = DEFAULT_ALPHABET
    max_text_length: int = 25
    lowercase: bool = True  # PaddleOCR lowercases only for its built-in alphabet
    # character -> class index, built once: normalize runs once per label of every dataset (millions)
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {c: i + 1 for i, c in enumerate(self.characters)})

    @classmethod
    def from_dict_file(cls, path: str | Path, use_space: bool = False, max_text_length: int = 25) -> "Charset":
        path = Path(path)
        if not path.is_file():
            raise CharsetError(f"{path}: character dictionary not found; check charset.dict_path")
        chars: list[str] = []
        for line in path.read_text(encoding="utf-8").splitlines():
            # PaddleOCR strips only the line ending, so a dictionary may hold a literal space line.
            line = line.rstrip("\r\n")
            if line == "":
                continue
            if len(line) != 1:
                raise CharsetError(f"{path}: line {line!r} holds more than one character; a PaddleOCR "
                                   "dictionary has exactly one character per line")
            chars.append(line)
        if use_space and " " not in chars:
            chars.append(" ")
        if len(set(chars)) != len(chars):
            dup = next(c for c in chars if chars.count(c) > 1)
            raise CharsetError(f"{path}: character {dup!r} appears twice; remove the duplicate line")
        if not chars:
            raise CharsetError(f"{path}: the dictionary is empty; add one character per line")
        return cls("".join(chars), max_text_length, lowercase=False)

    @classmethod
    def from_config(cls, cfg) -> "Charset":
        """From a ``CharsetConfig``; a relative ``dict_path`` is taken from the working directory."""
        if cfg.dict_path:
            return cls.from_dict_file(cfg.dict_path, cfg.use_space, cfg.max_text_length)
        chars = DEFAULT_ALPHABET + (" " if cfg.use_space else "")
        return cls(chars, cfg.max_text_length, lowercase=True)

    @property
    def num_classes(self) -> int:
        return len(self.characters) + 1  # + blank

    def normalize(self, label: str) -> str | None:
        """The label as the model is trained on it, or None when PaddleOCR would reject it.

        Length is checked before out-of-charset characters are dropped, as PaddleOCR does: the raw
        label may be too long even when its filtered form is not.
        """
        if len(label) == 0 or len(label) > self.max_text_length:
            return None
        if self.lowercase:
            label = label.lower()
        index = self._index
        kept = "".join(c for c in label if c in index)
        return kept or None

    def encode(self, label: str) -> list[int] | None:
        text = self.normalize(label)
        if text is None:
            return None
        index = self._index
        return [index[c] for c in text]

    def conforms(self, label: str) -> bool:
        """True when every letter and digit of ``label`` is in the charset after case folding.

        Marks and spaces outside the charset (``ok!``, ``it's``, SynthText's ``$20``) are dropped by
        ``normalize`` as PaddleOCR and the field's 0-9a-z protocol drop them: the label is right, only read
        past. A letter or digit the charset lacks (``café`` for 0-9a-z, another script) is a label the
        model cannot learn: that is what the data check counts."""
        index = self._index
        text = label.lower() if self.lowercase else label
        return any(c in index for c in text) and all(c in index for c in text if c.isalnum())

    def missing(self, label: str) -> str:
        """The characters of ``label`` that the charset lacks (after case folding where it folds), in order:
        what ``normalize`` drops without a word."""
        index = self._index
        text = label.lower() if self.lowercase else label
        return "".join(c for c in text if c not in index)

    def decode_indices(self, indices: Sequence[int]) -> str:
        return "".join(self.characters[i - 1] for i in indices if 0 < i <= len(self.characters))

    def to_dict(self) -> dict:
        return {"characters": self.characters, "max_text_length": self.max_text_length,
                "lowercase": self.lowercase}

    @classmethod
    def from_dict(cls, d: dict) -> "Charset":
        return cls(d["characters"], int(d["max_text_length"]), bool(d["lowercase"]))


@dataclass
class MissingCharacters:
    """The characters a set's labels hold that a charset lacks, counted, with the first label that held one: a
    label is trained and scored without them, so a user must hear which ones, and how to add them."""

    counts: Counter = field(default_factory=Counter)
    labels: int = 0  # labels holding at least one
    example: str | None = None

    def add(self, label: str, missing: str) -> None:
        if missing:
            self.counts.update(missing)
            self.labels += 1
            self.example = self.example or label

    def note(self, name: str, total: int, charset: Charset, dict_path: str | None = None) -> str | None:
        """One line naming the characters (most frequent first) and the fix, or None when there are none."""
        if not self.labels:
            return None
        chars = ", ".join(f"{c!r} {n}" for c, n in self.counts.most_common(12))
        more = f" and {len(self.counts) - 12} more" if len(self.counts) > 12 else ""
        fix = (f"add them to {dict_path} (one per line)" if dict_path else
               "set charset.dict_path to a dictionary file that holds them (one per line, e.g. "
               "profiles/dicts/printable_94.txt with case and punctuation)")
        folded = " (after lower-casing)" if charset.lowercase else ""
        return (f"{name}: {self.labels} of {total} labels hold characters the charset lacks{folded}, which are left "
                f"out of them: {chars}{more} (e.g. {self.example!r}); to read them, {fix}")

"""Reading params files: which project's ``params.yaml`` (``project_root``), YAML into typed, frozen dataclasses
(type coercion with one-sentence ``ConfigError``s naming the key, tagged unions told apart by ``name``),
PaddleOCR-style ``-o key=value`` overrides, and overlays (a file with ``base:`` merged over the file it names).
``rosetta.config`` holds the schema.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from rosetta.errors import RosettaError

# The checkout this package is installed from (editable): the project only where the working directory is in none.
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def project_root() -> Path:
    """The project the working directory is in: the nearest folder at or above it holding params.yaml or
    dvc.yaml, else ``PROJECT_ROOT``. So a second checkout sharing one virtual environment reads its own
    params and writes its own ``mlflow.db``, not those of the checkout the package is installed from."""
    cwd = Path.cwd().resolve()
    for folder in (cwd, *cwd.parents):
        if (folder / "params.yaml").is_file() or (folder / "dvc.yaml").is_file():
            return folder
    return PROJECT_ROOT


def project_path(p: str | Path, root: Path | None = None) -> Path:
    """A params path made absolute against the working directory (DVC runs stages from the repo root)."""
    p = Path(p).expanduser()
    return p if p.is_absolute() else (root or Path.cwd()) / p


class ConfigError(RosettaError, ValueError):
    """A user-fixable problem in params.yaml or an override; the message is one sentence."""


def choice(key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, allowed))}")


def require(cond: bool, key: str, value: Any, must: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {value!r} {must}")


def within(key: str, value: Any, low: float, high: float, why: str = "") -> None:
    """``value`` in [``low``, ``high``]: the range a setting must keep, so that a slip of the keyboard (a thread
    count of 100000, a label length of 10^8) ends in this sentence instead of a crash or a hung allocation."""
    low_, high_ = (f"{v}" if isinstance(v, int) else f"{v:g}" for v in (low, high))
    require(low <= value <= high, key, value, f"must be between {low_} and {high_}{f' ({why})' if why else ''}")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(tp)))
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        key_type, value_type = typing.get_args(tp)
        return f"a mapping of {_type_name(key_type)} to {_type_name(value_type)}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of settings, got {value!r}")
        return build(tp, value, key)
    if origin is Literal:
        choice(key, value, typing.get_args(tp))
        return value
    if origin in (typing.Union, types.UnionType) and all(dataclasses.is_dataclass(a) for a in typing.get_args(tp)):
        return _tagged(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: {value!r} is not {_type_name(tp)}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: {value!r} is not {_type_name(tp)}")
        (item,) = typing.get_args(tp)
        return [_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: {value!r} is not {_type_name(tp)}")
        key_type, value_type = typing.get_args(tp)
        return {_coerce(key_type, k, f"{key} key"): _coerce(value_type, v, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            # YAML 1.1 reads '1e-3' (no dot) as a string; accept it as the number it means.
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None:
            if not math.isfinite(number):  # no setting means "infinite": .inf and .nan are always mistakes
                raise ConfigError(f"{key}: {value!r} is not a finite number")
            return number
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{key}: {value!r} is not {_type_name(tp)}")


def _tagged(tp: Any, value: Any, key: str) -> Any:
    """A union of dataclasses (PaddleOCR's ``Backbone:`` sections) built from a mapping by its ``name``."""
    kinds = {typing.get_args(typing.get_type_hints(a)["name"])[0]: a for a in typing.get_args(tp)}
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping with a name ({', '.join(kinds)}), got {value!r}")
    choice(f"{key}.name", value.get("name"), tuple(kinds))
    return build(kinds[value["name"]], value, key)


def build(cls: type, data: dict, prefix: str = "") -> Any:
    """An instance of the dataclass ``cls`` from ``data``; each section's ``check(prefix)`` runs once built."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for k in data:
        if k not in names:
            where = f"{prefix}.{k}" if prefix else str(k)
            raise ConfigError(f"{where}: unknown key (known keys: {', '.join(sorted(names))})")
    defaults = {f.name: f.default_factory for f in dataclasses.fields(cls)
                if f.default_factory is not dataclasses.MISSING}
    kwargs = {}
    for k, v in data.items():
        if isinstance(v, dict) and "name" not in v and k in defaults and hasattr(default := defaults[k](), "name"):
            v = {"name": default.name, **v}  # a tagged section without a name is of its default's kind
        kwargs[k] = _coerce(hints[k], v, f"{prefix}.{k}" if prefix else k)
    obj = cls(**kwargs)
    if hasattr(obj, "check"):
        obj.check(prefix)
    return obj


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=c`` -> (["a", "b"], c), the value read as YAML (so 1e-3, true, [1, 2] work)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {text!r} must look like section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and value == raw.strip() and _NUMBER.fullmatch(value):
        value = float(value)  # YAML 1.1 reads 2e-3 (no dot) as a string; written as a number, it is one
    return parts, value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    for text in overrides or []:
        parts, value = parse_override(text)
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(parts)}: {part} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return data


def param_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every dotted key whose value differs between two params dicts."""
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += param_differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


def merge_params(base: dict, overlay: dict) -> dict:
    """``overlay`` merged over ``base``: mappings key by key, anything else replaced. A mapping whose ``name``
    differs from the base's (a backbone of another kind) replaces the base's whole, so none of its keys linger."""
    out = dict(base)
    for key, value in overlay.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict) and value.get("name", old.get("name")) == old.get("name"):
            out[key] = merge_params(old, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_params(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """The params in ``path``; a file with a top-level ``base:`` is an overlay, merged over the file ``base``
    names (relative to the overlay's folder), which may itself be an overlay."""
    if not path.exists():
        raise ConfigError(f"{path}: configuration file not found; pass -c with the path to a params.yaml")
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a params file; pass -c with the path to a params.yaml")
    if path.resolve() in seen:
        raise ConfigError(f"{path}: its base: chain comes back to itself; point base: at params.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save the params file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror}); pass -c with a readable params file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: base: {base!r} must name the params file this overlay changes")
    return merge_params(read_params(path.parent / base, (*seen, path.resolve())), data)


def _flow(value: Any) -> Any:
    """A new list or mapping written on one line, as params.yaml writes them (``sources: [synth, real]``)."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(value, (list, dict)):
        value = CommentedSeq(value) if isinstance(value, list) else CommentedMap(value)
        value.fa.set_flow_style()
    return value


def write_params(path: Path, data: dict) -> list[str]:
    """Write ``data`` (a whole params dict) into the params file ``path`` where it differs, keeping the file's
    comments and order (ruamel.yaml, DVC's own YAML library, round-trip); returns ``key: old -> new`` per change.
    A mapping whose ``name`` changes is replaced whole, as ``merge_params`` does."""
    from ruamel.yaml import YAML

    rt = YAML(typ="rt")
    rt.width = 4096
    rt.preserve_quotes = True
    rt.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    current = read_params(path)
    changes = param_differences(current, data)
    if not changes:
        return []
    tree = rt.load(path.read_text(encoding="utf-8"))

    def put(node, new: dict) -> None:
        for key, value in new.items():
            old = node.get(key)
            if isinstance(old, dict) and isinstance(value, dict) and value.get("name", old.get("name")) == old.get("name"):
                put(old, value)
                for gone in [k for k in old if k not in value]:
                    del old[gone]
            elif old != value:
                node[key] = _flow(copy.deepcopy(value))

    put(tree, data)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        rt.dump(tree, f)
    tmp.replace(path)
    return changes

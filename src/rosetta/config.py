"""Typed configuration loaded from ``params.yaml``, validated once at the edge.

``params.yaml`` is the single source of truth (DVC reads it too). ``load_config`` turns it, plus
PaddleOCR-style ``-o section.key=value`` overrides, into frozen dataclasses; every unknown key,
wrong type or impossible value ends in one ``ConfigError`` sentence that names the key.
"""
from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from rosetta.errors import RosettaError

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class ConfigError(RosettaError, ValueError):
    """A user-fixable problem in params.yaml or an override; the message is one sentence."""


def _choice(key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, allowed))}")


def _check(cond: bool, key: str, value: Any, must: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {value!r} {must}")


@dataclass(frozen=True)
class CharsetConfig:
    dict_path: Optional[str] = None  # PaddleOCR dictionary file, one character per line; None = 0-9a-z
    use_space: bool = False
    max_text_length: int = 25

    def validate(self, p: str) -> None:
        _check(self.max_text_length >= 1, f"{p}.max_text_length", self.max_text_length, "must be at least 1")


@dataclass(frozen=True)
class MobileNetV3Config:
    model_name: Literal["large", "small"] = "large"
    scale: float = 0.5

    def validate(self, p: str) -> None:
        _choice(f"{p}.scale", self.scale, (0.35, 0.5, 0.75, 1.0, 1.25))


@dataclass(frozen=True)
class ModelConfig:
    backbone: Literal["resnet34_vd", "mobilenet_v3"] = "mobilenet_v3"
    neck: Literal["reshape"] = "reshape"
    head: Literal["ctc"] = "ctc"
    mobilenet_v3: MobileNetV3Config = field(default_factory=MobileNetV3Config)
    image_height: int = 32
    image_width: int = 100  # training width; inference accepts any width
    head_l2_decay: float = 4e-4

    def validate(self, p: str) -> None:
        _check(self.image_height == 32, f"{p}.image_height", self.image_height,
               "must be 32 (the backbones reduce height 32 to 1)")
        _check(self.image_width >= 8, f"{p}.image_width", self.image_width, "must be at least 8")
        _check(self.head_l2_decay >= 0, f"{p}.head_l2_decay", self.head_l2_decay, "must be >= 0")


@dataclass(frozen=True)
class SynthConfig:
    train_size: int = 20000
    val_size: int = 1000
    test_size: int = 1000
    vocabulary_size: int = 30000  # most frequent English words (wordfreq) to draw from
    numeric_fraction: float = 0.2  # share of samples that are digit strings or alphanumeric codes
    fonts_dirs: list[str] = field(default_factory=list)
    test_font_fraction: float = 0.25  # share of font families held out for the test split
    min_word_len: int = 1
    max_word_len: int = 12

    def validate(self, p: str) -> None:
        for k in ("train_size", "val_size", "test_size"):
            _check(getattr(self, k) >= 1, f"{p}.{k}", getattr(self, k), "must be at least 1")
        _check(self.vocabulary_size >= 100, f"{p}.vocabulary_size", self.vocabulary_size, "must be at least 100")
        _check(0 <= self.numeric_fraction <= 1, f"{p}.numeric_fraction", self.numeric_fraction,
               "must be between 0 and 1")
        _check(0 < self.test_font_fraction < 1, f"{p}.test_font_fraction", self.test_font_fraction,
               "must be between 0 and 1")
        _check(1 <= self.min_word_len <= self.max_word_len, f"{p}.min_word_len", self.min_word_len,
               "must be between 1 and max_word_len")


@dataclass(frozen=True)
class SourceConfig:
    """A downloadable archive (or a local path) with an optional checksum."""

    url: str = ""
    sha256: Optional[str] = None


@dataclass(frozen=True)
class ValidationConfig:
    max_undecodable_fraction: float = 0.005
    min_charset_conformity: float = 0.99  # share of labels fully inside the charset after folding
    min_height: int = 8
    max_aspect_ratio: float = 25.0
    min_shape_conformity: float = 0.99  # share of decodable images within min_height and max_aspect_ratio
    min_samples: int = 1

    def validate(self, p: str) -> None:
        _check(0 <= self.max_undecodable_fraction <= 1, f"{p}.max_undecodable_fraction",
               self.max_undecodable_fraction, "must be between 0 and 1")
        _check(0 <= self.min_charset_conformity <= 1, f"{p}.min_charset_conformity",
               self.min_charset_conformity, "must be between 0 and 1")
        _check(self.min_height >= 1, f"{p}.min_height", self.min_height, "must be at least 1")
        _check(self.max_aspect_ratio > 0, f"{p}.max_aspect_ratio", self.max_aspect_ratio, "must be > 0")
        _check(0 <= self.min_shape_conformity <= 1, f"{p}.min_shape_conformity",
               self.min_shape_conformity, "must be between 0 and 1")
        _check(self.min_samples >= 0, f"{p}.min_samples", self.min_samples, "must be >= 0")


@dataclass(frozen=True)
class DataConfig:
    # Training corpora; the full-scale profiles use [mjsynth, synthtext] (MJ+ST).
    sources: list[Literal["synth", "mjsynth", "synthtext", "lmdb"]] = field(default_factory=lambda: ["synth"])
    root: str = "data"  # relative to the project root
    workers: int = 0  # processes for rendering, conversion and validation; 0 = all cores
    synth: SynthConfig = field(default_factory=SynthConfig)
    mjsynth: SourceConfig = field(default_factory=lambda: SourceConfig(
        url="https://www.robots.ox.ac.uk/~vgg/data/text/mjsynth.tar.gz"))
    synthtext: SourceConfig = field(default_factory=lambda: SourceConfig(
        url="https://thor.robots.ox.ac.uk/~vgg/data/scenetext/SynthText.zip"))
    lmdb: SourceConfig = field(default_factory=SourceConfig)  # a folder of ready-made LMDBs, or an archive URL
    benchmarks: SourceConfig = field(default_factory=SourceConfig)  # empty = the synth test split
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    def validate(self, p: str) -> None:
        _check(self.workers >= 0, f"{p}.workers", self.workers, "must be >= 0")
        _check(len(self.sources) >= 1 and len(set(self.sources)) == len(self.sources), f"{p}.sources",
               self.sources, "must list at least one source, each once")
        for name in self.sources:
            if name != "synth":
                src = getattr(self, name)
                _check(bool(src.url), f"{p}.{name}.url", src.url,
                       f"must name a URL or a local path when {p}.sources lists {name}")


@dataclass(frozen=True)
class TrainConfig:
    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = 5e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0  # decoupled decay for AdamW (all params); Adam uses model.head_l2_decay
    scheduler: Literal["constant", "cosine", "onecycle"] = "constant"
    warmup_steps: int = 0
    batch_size: int = 256
    epochs: int = 72
    max_steps: int = 0  # > 0 overrides epochs
    grad_clip: float = 0.0  # 0 = off
    shuffle: bool = True
    augment: bool = False
    mj_st_ratio: list[float] = field(default_factory=lambda: [0.5, 0.5])
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    compile: bool = False
    channels_last: bool = True  # NHWC activations: oneDNN's depthwise convolutions run much faster on CPU
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    nproc: int = 1  # > 1 launches torchrun with that many processes
    num_workers: int = 2
    threads: int = 0  # torch intra-op threads on CPU; 0 = leave torch's default
    eval_every: int = 500
    val_samples: int = 0  # validation samples scored every eval_every steps (evenly spaced); 0 = all
    checkpoint_every: int = 500
    log_every: int = 50
    max_bad_steps: int = 20  # consecutive non-finite losses before the run stops
    log_model: bool = True  # log the best model to MLflow (pytorch flavour) at the end
    out_dir: str = "runs/train"

    def validate(self, p: str) -> None:
        _check(self.lr > 0, f"{p}.lr", self.lr, "must be > 0")
        _check(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), f"{p}.betas", self.betas,
               "must be two numbers in [0, 1)")
        _check(self.batch_size >= 1, f"{p}.batch_size", self.batch_size, "must be at least 1")
        _check(self.epochs >= 1 or self.max_steps >= 1, f"{p}.epochs", self.epochs,
               "must be at least 1 unless max_steps is set")
        _check(self.max_steps >= 0, f"{p}.max_steps", self.max_steps, "must be >= 0")
        _check(self.warmup_steps >= 0, f"{p}.warmup_steps", self.warmup_steps, "must be >= 0")
        _check(self.grad_clip >= 0, f"{p}.grad_clip", self.grad_clip, "must be >= 0")
        _check(self.nproc >= 1, f"{p}.nproc", self.nproc, "must be at least 1")
        _check(self.num_workers >= 0, f"{p}.num_workers", self.num_workers, "must be >= 0")
        _check(len(self.mj_st_ratio) == 2 and all(r >= 0 for r in self.mj_st_ratio)
               and sum(self.mj_st_ratio) > 0, f"{p}.mj_st_ratio", self.mj_st_ratio,
               "must be two non-negative weights, not both 0")
        _check(self.val_samples >= 0, f"{p}.val_samples", self.val_samples, "must be >= 0")
        _check(self.threads >= 0, f"{p}.threads", self.threads, "must be >= 0")
        for k in ("eval_every", "checkpoint_every", "log_every", "max_bad_steps"):
            _check(getattr(self, k) >= 1, f"{p}.{k}", getattr(self, k), "must be at least 1")
        _check(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
               f"{p}.device", self.device, "must be auto, cpu, cuda or cuda:N")


@dataclass(frozen=True)
class EvalConfig:
    batch_size: int = 256
    gallery_size: int = 24  # worst mistakes shown in the PNG gallery
    out_dir: str = "runs/eval"

    def validate(self, p: str) -> None:
        _check(self.batch_size >= 1, f"{p}.batch_size", self.batch_size, "must be at least 1")
        _check(self.gallery_size >= 0, f"{p}.gallery_size", self.gallery_size, "must be >= 0")


@dataclass(frozen=True)
class ExportConfig:
    opset: int = 17
    max_abs_diff: float = 1e-4
    min_same_text: float = 0.999
    parity_samples: int = 512
    batch_size: int = 32  # parity batches: each batch has its own width, so the dynamic width gets exercised
    out_dir: str = "runs/export"

    def validate(self, p: str) -> None:
        _check(self.opset >= 17, f"{p}.opset", self.opset, "must be at least 17")
        _check(self.max_abs_diff > 0, f"{p}.max_abs_diff", self.max_abs_diff, "must be > 0")
        _check(0 <= self.min_same_text <= 1, f"{p}.min_same_text", self.min_same_text,
               "must be between 0 and 1")
        _check(self.parity_samples >= 1, f"{p}.parity_samples", self.parity_samples, "must be at least 1")
        _check(self.batch_size >= 1, f"{p}.batch_size", self.batch_size, "must be at least 1")


@dataclass(frozen=True)
class RegistryConfig:
    model_name: str = "rosetta"
    metric: str = "accuracy_total"  # the benchmark score compared for promotion
    margin: float = 0.0  # a candidate must beat production by more than this
    alias: str = "production"
    previous_alias: str = "previous"
    out_dir: str = "runs/register"

    def validate(self, p: str) -> None:
        _check(bool(self.model_name), f"{p}.model_name", self.model_name, "must not be empty")
        _check(bool(self.metric), f"{p}.metric", self.metric, "must name a benchmark metric")
        _check(self.margin >= 0, f"{p}.margin", self.margin, "must be >= 0")
        for k in ("alias", "previous_alias"):
            value = getattr(self, k)
            _check(bool(value) and value.replace("_", "").replace("-", "").isalnum(), f"{p}.{k}", value,
                   "must be a non-empty name of letters, digits, - and _")
        _check(self.alias != self.previous_alias, f"{p}.previous_alias", self.previous_alias,
               "must differ from registry.alias")


@dataclass(frozen=True)
class PrefectConfig:
    data_retries: int = 2  # the data task downloads: a retry can outlast a network hiccup
    data_retry_delay_s: float = 30.0
    mlflow_ui_url: Optional[str] = "http://127.0.0.1:5000"  # where `mlflow ui` serves the store; null = no link

    def validate(self, p: str) -> None:
        _check(self.data_retries >= 0, f"{p}.data_retries", self.data_retries, "must be >= 0")
        _check(self.data_retry_delay_s >= 0, f"{p}.data_retry_delay_s", self.data_retry_delay_s, "must be >= 0")


@dataclass(frozen=True)
class MlflowConfig:
    tracking_uri: Optional[str] = None  # None = sqlite file at the project root (absolute)
    experiment: str = "rosetta"
    run_name: Optional[str] = None

    def resolved_tracking_uri(self, root: Path = PROJECT_ROOT) -> str:
        return self.tracking_uri or f"sqlite:///{(root / 'mlflow.db').resolve()}"


@dataclass(frozen=True)
class Config:
    seed: int = 42
    charset: CharsetConfig = field(default_factory=CharsetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    prefect: PrefectConfig = field(default_factory=PrefectConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """Dotted keys -> values, for MLflow params."""
        out: dict[str, Any] = {}

        def walk(prefix: str, obj: Any) -> None:
            if isinstance(obj, dict):
                for k, v in obj.items():
                    walk(f"{prefix}.{k}" if prefix else k, v)
            else:
                out[prefix] = obj

        walk("", self.to_dict())
        return out


# --------------------------------------------------------------------------- building


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(tp)))
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of settings, got {value!r}")
        return _build(tp, value, key)
    if origin is Literal:
        _choice(key, value, typing.get_args(tp))
        return value
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
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            # YAML 1.1 reads '1e-3' (no dot) as a string; accept it as the number it means.
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{key}: {value!r} is not {_type_name(tp)}")


def _build(cls: type, data: dict, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for k in data:
        if k not in names:
            where = f"{prefix}.{k}" if prefix else str(k)
            raise ConfigError(f"{where}: unknown key (known keys: {', '.join(sorted(names))})")
    kwargs = {k: _coerce(hints[k], v, f"{prefix}.{k}" if prefix else k) for k, v in data.items()}
    obj = cls(**kwargs)
    if hasattr(obj, "validate"):
        obj.validate(prefix)
    return obj


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


def config_from_dict(data: dict, overrides: list[str] | None = None) -> Config:
    data = apply_overrides(dict(data or {}), overrides or [])
    return _build(Config, data, "")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read ``path`` (default: params.yaml in the working directory, else the project's)."""
    if path is None:
        path = Path("params.yaml") if Path("params.yaml").exists() else PROJECT_ROOT / "params.yaml"
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: configuration file not found; pass -c with the path to a params.yaml")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return config_from_dict(copy.deepcopy(data), overrides)


def project_path(p: str | Path, root: Path | None = None) -> Path:
    """A params path made absolute against the working directory (DVC runs stages from the repo root)."""
    p = Path(p).expanduser()
    return p if p.is_absolute() else (root or Path.cwd()) / p


@dataclass(frozen=True)
class DataLayout:
    """Where each stage reads and writes below ``data.root``; stages, flows and tests share it."""

    root: Path

    @classmethod
    def from_config(cls, cfg: Config) -> "DataLayout":
        return cls(project_path(cfg.data.root))

    def raw(self, source: str) -> Path:
        return self.root / "raw" / source

    def lmdb(self, source: str) -> Path:
        """LMDBs of one source: ``train/``, ``val/`` and (where the source has one) ``test/``."""
        return self.root / "lmdb" / source

    @property
    def benchmarks(self) -> Path:
        """One LMDB per evaluation set, named by its folder."""
        return self.root / "lmdb" / "benchmarks"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

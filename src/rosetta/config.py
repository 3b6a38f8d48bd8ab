"""The params schema: one frozen dataclass per ``params.yaml`` section, checked once at the edge.

``params.yaml`` is the single source of truth (DVC reads it too). ``load_config`` turns it, or a profile
overlaid on it, plus PaddleOCR-style ``-o section.key=value`` overrides, into the dataclasses below (their
defaults equal params.yaml's); every unknown key, wrong type or impossible value ends in one ``ConfigError``
sentence that names the key (the reading itself is ``rosetta.params``, the paths derived from it
``rosetta.layout``). Which settings are operational, and which set a run's size, is marked here, on the fields
(``OPERATIONAL``, ``SCALE``).
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from rosetta.params import (ConfigError, apply_overrides, build, choice, project_path, project_root, read_params,
                            require, within)
from rosetta_infer.settings import ServeSettings

# Field metadata of an operational setting: it decides how a run executes (device, threads, memory layout, workers,
# compilation), where files go, how often it logs or saves, or how the later stages judge and serve the model, never
# what the trained model computes or how it scores. Settings that change only float rounding (threads, device,
# train.compile, train.channels_last) are operational: the same computation, run another way. Settings that choose
# the model, its data or best.pt are not: train.nproc (the global batch is batch_size x nproc), train.eval_every
# and train.val_samples (the evaluations best.pt is chosen among). One list for every reader: MLflow's params and
# run names (``rosetta.tracking.runs``), the resume fingerprint (``rosetta.training.resume``) and the train stage's
# DVC params (dvc.yaml; tests/test_dvc_deps.py holds it to this). A section marked so is operational whole.
OPERATIONAL = {"operational": True}


def operational(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field marked ``OPERATIONAL``."""
    return field(default=default, default_factory=default_factory, metadata=OPERATIONAL)


# Upper bounds of the settings that start threads or processes: far above any machine's cores, far below what
# crashes a process (torch segfaults at 100000 threads).
MAX_THREADS = 256
MAX_PROCESSES = 256


# Field metadata of a setting that sets how big or long a run is (data sizes, steps, batch, evaluation cadence):
# what a smoke run shrinks, rarely what an experiment compares. Run names list the other changed settings, the
# recipe's, before these (``rosetta.tracking.runs.run_name``), so a tiny run's sizes never hide what it tries.
SCALE = {"scale": True}


def scale(default: Any) -> Any:
    """A dataclass field marked ``SCALE``."""
    return field(default=default, metadata=SCALE)


def check_out_dir(out_dir: str, p: str) -> None:
    """A stage's ``out_dir`` names a folder of its own: an empty one, the project folder, or a folder above it
    (``/``) would write (and clear) outputs among everything else."""
    require(bool(out_dir.strip()), f"{p}.out_dir", out_dir, "must name a folder (e.g. runs/<stage>)")
    folder, root = project_path(out_dir).resolve(), project_root().resolve()
    require(folder not in (root, *root.parents) and folder != Path(folder.anchor), f"{p}.out_dir", out_dir,
            "must name a folder of its own, not the project folder or a folder above it (e.g. runs/<stage>)")


@dataclass(frozen=True)
class CharsetConfig:
    dict_path: Optional[str] = None  # PaddleOCR dictionary file, one character per line; None = 0-9a-z
    use_space: bool = False
    max_text_length: int = 25

    def check(self, p: str) -> None:
        within(f"{p}.max_text_length", self.max_text_length, 1, 1000, "characters a label may hold")


@dataclass(frozen=True)
class MobileNetV3Config:
    """PaddleOCR's ``Backbone: {name: MobileNetV3, scale: 0.5, model_name: large}``."""

    name: Literal["MobileNetV3"] = "MobileNetV3"
    model_name: Literal["large", "small"] = "small"
    scale: float = 0.5

    @property
    def key(self) -> str:
        """The short name reports, registry tags and ``rosetta bench --backbones`` use."""
        return "mobilenet_v3"

    def check(self, p: str) -> None:
        choice(f"{p}.scale", self.scale, (0.35, 0.5, 0.75, 1.0, 1.25))


@dataclass(frozen=True)
class ResNetConfig:
    """PaddleOCR's ``Backbone: {name: ResNet, layers: 34}`` (``rec_resnet_vd.py``: ResNet-vd)."""

    name: Literal["ResNet"] = "ResNet"
    layers: Literal[34] = 34

    @property
    def key(self) -> str:
        return f"resnet{self.layers}_vd"


BackboneConfig = typing.Union[MobileNetV3Config, ResNetConfig]
# Short names for a whole backbone mapping: ``-o model.backbone=resnet34_vd`` and ``rosetta bench --backbones``.
# PaddleOCR's two Rosetta backbones by name: rec_mv3_none_none_ctc (MobileNetV3-large-0.5) and rec_r34_vd_none_none_ctc.
BACKBONE_PRESETS: dict[str, BackboneConfig] = {"mobilenet_v3": MobileNetV3Config(model_name="large", scale=0.5),
                                               "resnet34_vd": ResNetConfig()}


@dataclass(frozen=True)
class ModelConfig:
    # A mapping told apart by ``name``, as PaddleOCR's ``Backbone:`` section, or a BACKBONE_PRESETS name.
    backbone: BackboneConfig = field(default_factory=MobileNetV3Config)
    neck: Literal["reshape"] = "reshape"
    head: Literal["ctc"] = "ctc"
    image_height: int = 32
    image_width: int = 100  # training width; inference accepts any width
    head_l2_decay: float = 4e-4

    def check(self, p: str) -> None:
        require(self.image_height == 32, f"{p}.image_height", self.image_height,
               "must be 32 (the backbones reduce height 32 to 1)")
        within(f"{p}.image_width", self.image_width, 8, 4096, "pixels of the training width")
        require(self.head_l2_decay >= 0, f"{p}.head_l2_decay", self.head_l2_decay, "must be >= 0")


@dataclass(frozen=True)
class SynthEffects:
    """Probability of each optional rendering step of rosetta.prep.render (0 = never)."""

    photo_background: float = 0.8  # a crop of a natural photograph under the text (else flat or ramped colour)
    border: float = 0.2           # an outline around the strokes in a third colour
    shadow: float = 0.2           # a blurred, offset copy of the text under it
    curve: float = 0.1            # an arced or wavy baseline (CUTE80-like)
    perspective: float = 0.35     # a strong projective distortion (IC15-like)
    lighting: float = 0.4         # a brightness gradient across the image
    occlusion: float = 0.08        # a bar or blob covering part of the word
    blur: float = 0.3              # strong Gaussian or motion blur
    low_resolution: float = 0.3    # down to 10-19 px high and back up, with harsher JPEG
    invert: float = 0.4            # a negative of the whole picture: dark and light swap

    def check(self, p: str) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            require(0 <= v <= 1, f"{p}.{f.name}", v, "must be a probability between 0 and 1")


@dataclass(frozen=True)
class SynthConfig:
    train_size: int = scale(30000)
    val_size: int = scale(1000)
    test_size: int = scale(1000)
    vocabulary_size: int = scale(30000)  # most frequent English words (wordfreq) to draw from
    numeric_fraction: float = 0.2  # share of samples that are digit strings or alphanumeric codes
    fonts_dirs: list[str] = field(default_factory=list)
    font_packages: str = "packages/debian-fonts.txt"  # Debian font packages `make install` installs; "" = none
    system_fonts: bool = False  # also every font under /usr/share/fonts (machine-dependent bytes)
    # script faces found inside the declared packages; scene text is print, and joined letters teach little
    exclude_families: list[str] = field(default_factory=lambda: ["TeX Gyre Chorus", "Z003", "Romande ADF Script Std"])
    effects: SynthEffects = field(default_factory=SynthEffects)
    clean_fraction: float = 0.5  # share of words drawn plainly (no effect): the model learns glyphs from these first
    test_font_fraction: float = 0.25  # share of font families held out for the test split
    min_word_len: int = 1
    max_word_len: int = 12
    punctuation: float = 0.2  # share of train/val words drawn with a mark before, after or inside ("SALE!", "$20")

    def check(self, p: str) -> None:
        for k in ("train_size", "val_size", "test_size"):
            within(f"{p}.{k}", getattr(self, k), 1, 100_000_000, "words")
        within(f"{p}.vocabulary_size", self.vocabulary_size, 100, 1_000_000, "words")
        require(0 <= self.numeric_fraction <= 1, f"{p}.numeric_fraction", self.numeric_fraction,
               "must be between 0 and 1")
        require(0 < self.test_font_fraction < 1, f"{p}.test_font_fraction", self.test_font_fraction,
               "must be between 0 and 1")
        require(1 <= self.min_word_len <= self.max_word_len, f"{p}.min_word_len", self.min_word_len,
               "must be between 1 and max_word_len")
        within(f"{p}.max_word_len", self.max_word_len, 1, 100, "characters")
        self.effects.check(f"{p}.effects")
        require(0 <= self.clean_fraction <= 1, f"{p}.clean_fraction", self.clean_fraction, "must be between 0 and 1")
        require(0 <= self.punctuation <= 1, f"{p}.punctuation", self.punctuation, "must be between 0 and 1")


@dataclass(frozen=True)
class SourceConfig:
    """A downloadable archive (or a local path) with an optional checksum."""

    url: str = operational("")
    sha256: Optional[str] = operational(None)


@dataclass(frozen=True)
class ValidationConfig:
    max_undecodable_fraction: float = 0.005
    min_charset_conformity: float = 0.99  # share of labels whose letters and digits are in the charset
    min_height: int = 8
    max_aspect_ratio: float = 25.0
    min_shape_conformity: float = 0.99  # share of decodable images within min_height and max_aspect_ratio
    min_samples: int = 1

    def check(self, p: str) -> None:
        require(0 <= self.max_undecodable_fraction <= 1, f"{p}.max_undecodable_fraction",
               self.max_undecodable_fraction, "must be between 0 and 1")
        require(0 <= self.min_charset_conformity <= 1, f"{p}.min_charset_conformity",
               self.min_charset_conformity, "must be between 0 and 1")
        require(self.min_height >= 1, f"{p}.min_height", self.min_height, "must be at least 1")
        require(self.max_aspect_ratio > 0, f"{p}.max_aspect_ratio", self.max_aspect_ratio, "must be > 0")
        require(0 <= self.min_shape_conformity <= 1, f"{p}.min_shape_conformity",
               self.min_shape_conformity, "must be between 0 and 1")
        require(self.min_samples >= 0, f"{p}.min_samples", self.min_samples, "must be >= 0")


SourceName = Literal["synth", "mjsynth", "synthtext", "lmdb", "real"]


@dataclass(frozen=True)
class DataConfig:
    # Training corpora; the full-scale profiles use [mjsynth, synthtext] (MJ+ST); ``real`` is data.real_train.
    sources: list[SourceName] = field(default_factory=lambda: ["synth", "real"])
    root: str = operational("data")  # relative to the project root
    workers: int = operational(0)  # processes for rendering, conversion and validation; 0 = all cores
    synth: SynthConfig = field(default_factory=SynthConfig)
    mjsynth: SourceConfig = field(default_factory=lambda: SourceConfig(
        url="https://www.robots.ox.ac.uk/~vgg/data/text/mjsynth.tar.gz"))
    synthtext: SourceConfig = field(default_factory=lambda: SourceConfig(
        url="https://thor.robots.ox.ac.uk/~vgg/data/scenetext/SynthText.zip"))
    lmdb: SourceConfig = field(default_factory=SourceConfig)  # a folder of ready-made LMDBs, or an archive URL
    benchmarks: SourceConfig = field(default_factory=SourceConfig)  # empty = the synth test split
    # A folder of real test sets (gt-file sets or LMDBs) outside the repository, relative to the project
    # folder, scored beside data.benchmarks where it exists; empty = none.
    real_benchmarks: str = operational("../shared/benchmarks")
    # A folder of real labelled training sets (gt-file sets or LMDBs) outside the repository, relative to the
    # project folder: the ``real`` source. Missing: training goes on with the other sources; empty = none.
    real_train: str = "../shared/realtrain"
    real_val_fraction: float = 0.08  # of each real training set, held out (seeded) to choose best.pt on
    validation: ValidationConfig = operational(default_factory=ValidationConfig)

    def check(self, p: str) -> None:
        within(f"{p}.workers", self.workers, 0, MAX_PROCESSES, "processes; 0 = all cores")
        require(len(self.sources) >= 1 and len(set(self.sources)) == len(self.sources), f"{p}.sources",
               self.sources, "must list at least one source, each once")
        require(0 < self.real_val_fraction < 1, f"{p}.real_val_fraction", self.real_val_fraction,
              "must be between 0 and 1")
        for name in self.sources:
            if name == "real":
                require(bool(self.real_train), f"{p}.real_train", self.real_train,
                      f"must name the folder of real training sets when {p}.sources lists real")
            elif name != "synth":
                src = getattr(self, name)
                require(bool(src.url), f"{p}.{name}.url", src.url,
                       f"must name a URL or a local path when {p}.sources lists {name}")


@dataclass(frozen=True)
class TrainConfig:
    # Defaults equal params.yaml's (the embedded CPU recipe; tests/test_config.py holds them together);
    # PaddleOCR's recipe is in profiles/.
    optimizer: Literal["adam", "adamw"] = "adamw"
    lr: float = 4e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.05  # decoupled decay for AdamW (all params); Adam uses model.head_l2_decay
    scheduler: Literal["constant", "cosine", "onecycle"] = "cosine"
    warmup_steps: int = scale(400)
    batch_size: int = scale(32)
    epochs: int = scale(72)
    max_steps: int = scale(3600)  # > 0 overrides epochs
    grad_clip: float = 5.0  # 0 = off
    shuffle: bool = True
    curriculum_steps: int = 200  # the first steps read only the head of each training set (the renderer's plain words)
    # RecAug on the streams of these sources (true: all, false: none)
    augment: typing.Union[bool, list[SourceName]] = field(default_factory=lambda: ["real"])
    # Each batch's share from each source of data.sources (DTRB's --batch_ratio; sources not in data.sources are
    # ignored); {} = one stream drawing from all sources together, in proportion to their sizes.
    batch_ratio: dict[SourceName, float] = field(default_factory=lambda: {"synth": 0.7, "real": 0.3})
    # The step at which a source's stream joins the batches (unlisted: 0); before it, its places go to the others.
    source_start_step: dict[SourceName, int] = field(default_factory=lambda: {"real": 300})
    init_from: str = ""  # weights to start from: a checkpoint file or models:/<name>@<alias> (or /<version>)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    compile: bool = operational(False)
    channels_last: bool = operational(True)  # NHWC activations: oneDNN's depthwise convolutions run much faster on CPU
    device: str = operational("auto")  # auto, cpu, cuda, cuda:N
    nproc: int = scale(2)  # > 1 launches torchrun with that many processes
    num_workers: int = operational(0)
    threads: int = operational(1)  # torch intra-op threads on CPU; 0 = leave torch's default
    eval_every: int = scale(1200)
    val_samples: int = scale(0)  # validation samples scored every eval_every steps (evenly spaced); 0 = all
    checkpoint_every: int = operational(500)
    log_every: int = operational(50)
    max_bad_steps: int = operational(20)  # consecutive non-finite losses before the run stops
    log_model: bool = operational(True)  # log the best model to MLflow (pytorch flavour) at the end
    out_dir: str = operational("runs/train")

    def check(self, p: str) -> None:
        require(self.lr > 0, f"{p}.lr", self.lr, "must be > 0")
        require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), f"{p}.betas", self.betas,
               "must be two numbers in [0, 1)")
        within(f"{p}.batch_size", self.batch_size, 1, 65536, "images a step, per process")
        require(self.epochs >= 1 or self.max_steps >= 1, f"{p}.epochs", self.epochs,
               "must be at least 1 unless max_steps is set")
        require(self.max_steps >= 0, f"{p}.max_steps", self.max_steps, "must be >= 0")
        require(self.warmup_steps >= 0, f"{p}.warmup_steps", self.warmup_steps, "must be >= 0")
        require(self.curriculum_steps >= 0, f"{p}.curriculum_steps", self.curriculum_steps, "must be >= 0")
        require(self.grad_clip >= 0, f"{p}.grad_clip", self.grad_clip, "must be >= 0")
        within(f"{p}.nproc", self.nproc, 1, MAX_PROCESSES, "training processes")
        within(f"{p}.num_workers", self.num_workers, 0, MAX_PROCESSES, "DataLoader processes per training process")
        require(all(r >= 0 for r in self.batch_ratio.values()), f"{p}.batch_ratio", self.batch_ratio,
              "must give non-negative shares")
        require(all(s >= 0 for s in self.source_start_step.values()), f"{p}.source_start_step", self.source_start_step,
              "must give steps >= 0")
        require(self.val_samples >= 0, f"{p}.val_samples", self.val_samples, "must be >= 0")
        within(f"{p}.threads", self.threads, 0, MAX_THREADS, "threads per process; 0 = torch's default")
        for k in ("eval_every", "checkpoint_every", "log_every", "max_bad_steps"):
            require(getattr(self, k) >= 1, f"{p}.{k}", getattr(self, k), "must be at least 1")
        require(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
               f"{p}.device", self.device, "must be auto, cpu, cuda or cuda:N")
        check_out_dir(self.out_dir, p)


@dataclass(frozen=True)
class EvalConfig:
    batch_size: int = 256
    gallery_size: int = 24  # worst mistakes shown in the PNG gallery
    threads: int = 0  # CPU threads of inference (evaluate, predict, export's int8 gate); 0 = all cores
    out_dir: str = "runs/eval"

    def check(self, p: str) -> None:
        within(f"{p}.batch_size", self.batch_size, 1, 65536, "images a batch")
        within(f"{p}.gallery_size", self.gallery_size, 0, 1000, "images in the gallery")
        check_out_dir(self.out_dir, p)
        within(f"{p}.threads", self.threads, 0, MAX_THREADS, "threads; 0 = all cores")


@dataclass(frozen=True)
class ExportConfig:
    opset: int = 17
    max_abs_diff: float = 1e-4
    min_same_text: float = 0.999
    parity_samples: int = 512
    batch_size: int = 32  # parity batches, each image at the inference contract's width (rosetta_infer.preprocess)
    int8: bool = False  # also a statically quantized model.int8.onnx, calibrated on validation images
    int8_min_same_text: float = 0.99  # int8 gate: share of validation images read as the float model reads them
    int8_max_accuracy_drop: float = 0.005  # int8 gate: accuracy lost on any benchmark set, at most
    out_dir: str = "runs/export"

    def check(self, p: str) -> None:
        require(self.opset >= 17, f"{p}.opset", self.opset, "must be at least 17")
        check_out_dir(self.out_dir, p)
        require(self.max_abs_diff > 0, f"{p}.max_abs_diff", self.max_abs_diff, "must be > 0")
        require(0 <= self.min_same_text <= 1, f"{p}.min_same_text", self.min_same_text,
               "must be between 0 and 1")
        within(f"{p}.parity_samples", self.parity_samples, 1, 1_000_000, "images")
        within(f"{p}.batch_size", self.batch_size, 1, 65536, "images a batch")
        require(0 <= self.int8_min_same_text <= 1, f"{p}.int8_min_same_text", self.int8_min_same_text,
               "must be between 0 and 1")
        require(0 <= self.int8_max_accuracy_drop <= 1, f"{p}.int8_max_accuracy_drop", self.int8_max_accuracy_drop,
               "must be between 0 and 1")


@dataclass(frozen=True)
class RegistryConfig:
    model_name: str = "rosetta"
    # The benchmark score compared for promotion; auto = accuracy_real (the real sets' total) where the real
    # benchmarks were scored, else accuracy_total.
    metric: str = "auto"
    margin: float = 0.0  # a candidate must beat production by more than this
    max_set_drop: float = 0.01  # and lose at most this much accuracy on any set its metric totals
    # Other scored sets that must not drop either (a user's own test set under data.benchmarks); production's score
    # on one it was never scored on is read from its own files at the decision.
    guarded_sets: list[str] = field(default_factory=list)
    min_score: float = 0.3  # the absolute floor: below it no version is promoted, the first one included
    alias: str = "production"
    previous_alias: str = "previous"
    out_dir: str = "runs/register"

    def check(self, p: str) -> None:
        require(bool(self.model_name), f"{p}.model_name", self.model_name, "must not be empty")
        require(bool(self.metric), f"{p}.metric", self.metric, "must name a benchmark metric")
        require(self.margin >= 0, f"{p}.margin", self.margin, "must be >= 0")
        require(0 <= self.max_set_drop <= 1, f"{p}.max_set_drop", self.max_set_drop,
                "must be an accuracy between 0 and 1 (0.01: one point)")
        require(math.isfinite(self.min_score), f"{p}.min_score", self.min_score, "must be a finite number")
        for k in ("alias", "previous_alias"):
            value = getattr(self, k)
            require(bool(value) and value.replace("_", "").replace("-", "").isalnum(), f"{p}.{k}", value,
                   "must be a non-empty name of letters, digits, - and _")
        require(self.alias != self.previous_alias, f"{p}.previous_alias", self.previous_alias,
               "must differ from registry.alias")
        check_out_dir(self.out_dir, p)


@dataclass(frozen=True)
class ServeConfig(ServeSettings):
    """The ``serve`` section: the inference package's ``ServeSettings`` (its fields and defaults, recorded in the
    registered pyfunc's model_config), checked."""

    def check(self, p: str) -> None:
        within(f"{p}.max_image_side", self.max_image_side, 1, 65535, "pixels")
        within(f"{p}.max_image_pixels", self.max_image_pixels, 1, 100_000_000, "pixels")
        within(f"{p}.max_request_images", self.max_request_images, 1, 100_000, "images")
        within(f"{p}.max_request_mb", self.max_request_mb, 1, 4096, "MB")
        within(f"{p}.max_request_pixels", self.max_request_pixels, self.max_image_pixels, 10_000_000_000,
               "pixels; at least serve.max_image_pixels, so that one image of the largest size is read")
        require(self.precision in ("fp32", "int8"), f"{p}.precision", self.precision, "must be fp32 or int8")
        require(0 <= self.abstain_below <= 1, f"{p}.abstain_below", self.abstain_below, "must be between 0 and 1")


@dataclass(frozen=True)
class PrefectConfig:
    data_retries: int = 2  # the data task downloads: a retry can outlast a network hiccup
    data_retry_delay_s: float = 30.0
    mlflow_ui_url: Optional[str] = "http://127.0.0.1:5000"  # where `mlflow ui` serves the store; null = no link

    def check(self, p: str) -> None:
        require(self.data_retries >= 0, f"{p}.data_retries", self.data_retries, "must be >= 0")
        require(self.data_retry_delay_s >= 0, f"{p}.data_retry_delay_s", self.data_retry_delay_s, "must be >= 0")


@dataclass(frozen=True)
class MlflowConfig:
    tracking_uri: Optional[str] = None  # None = sqlite file at the project root (``project_root()``, absolute)
    experiment: str = "rosetta"
    run_name: Optional[str] = None
    # While the store does not answer, a training keeps its writes in a journal and tries to send them again at its
    # next write once this many seconds have passed since the last try (``rosetta.tracking.journal``).
    retry_every_s: float = 30.0

    def check(self, p: str) -> None:
        within(f"{p}.retry_every_s", self.retry_every_s, 0, 86400, "seconds between tries to reach the store")


@dataclass(frozen=True)
class Config:
    seed: int = 42
    charset: CharsetConfig = field(default_factory=CharsetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = operational(default_factory=EvalConfig)
    export: ExportConfig = operational(default_factory=ExportConfig)
    registry: RegistryConfig = operational(default_factory=RegistryConfig)
    serve: ServeConfig = operational(default_factory=ServeConfig)
    mlflow: MlflowConfig = operational(default_factory=MlflowConfig)
    prefect: PrefectConfig = operational(default_factory=PrefectConfig)

    def check(self, p: str) -> None:
        """Checks across sections: train.batch_ratio gives a share to every source of data.sources (one source
        takes every place whatever its share)."""
        ratio, sources = self.train.batch_ratio, self.data.sources
        if ratio and len(sources) > 1:
            missing = [s for s in sources if s not in ratio]
            require(not missing, "train.batch_ratio", ratio, f"gives no share to {', '.join(missing)} of data.sources; "
                  "add one, or set {} to draw from all sources together")
            require(any(ratio[s] > 0 for s in sources), "train.batch_ratio", ratio,
                  f"gives no source of data.sources {sources} a share above 0")

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


def marked_keys(section: Any, mark: str, prefix: str = "") -> set[str]:
    """Dotted names of the fields of ``section`` (a config dataclass) whose metadata holds ``mark``."""
    keys = set()
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if f.metadata.get(mark):
            keys.add(prefix + f.name)
        elif dataclasses.is_dataclass(value):
            keys |= marked_keys(value, mark, f"{prefix}{f.name}.")
    return keys


def operational_keys(section: Any, prefix: str = "") -> set[str]:
    """Dotted names of the fields of ``section`` (a config dataclass) marked ``OPERATIONAL``; a marked section
    stands for all its keys."""
    return marked_keys(section, "operational", prefix)


def scale_keys(section: Any) -> set[str]:
    """Dotted names of the fields of ``section`` marked ``SCALE``."""
    return marked_keys(section, "scale")


def result_params(cfg: Config) -> dict[str, Any]:
    """The flat params (``Config.flat``) that can change a trained model or its scores: every key not under an
    operational one."""
    marked = operational_keys(cfg)
    return {k: v for k, v in cfg.flat().items()
            if not any(k == m or k.startswith(m + ".") for m in marked)}


def result_fields(section: Any) -> dict[str, Any]:
    """The fields of one section that can change a trained model or its scores, as a (nested) dict."""
    marked = operational_keys(section)
    return {k: v for k, v in dataclasses.asdict(section).items() if k not in marked}


# --------------------------------------------------------------------------- building


def _expand_backbone_preset(data: dict) -> None:
    """``model.backbone: resnet34_vd`` (a BACKBONE_PRESETS name) stands for that preset's whole mapping."""
    model = data.get("model")
    backbone = model.get("backbone") if isinstance(model, dict) else None
    if isinstance(backbone, str):
        if backbone not in BACKBONE_PRESETS:
            raise ConfigError(f"model.backbone: {backbone!r} is not one of {', '.join(BACKBONE_PRESETS)}, nor a "
                              "mapping with a name (MobileNetV3, ResNet)")
        data["model"] = {**model, "backbone": dataclasses.asdict(BACKBONE_PRESETS[backbone])}


def config_from_dict(data: dict, overrides: list[str] | None = None) -> Config:
    data = dict(data or {})
    _expand_backbone_preset(data)
    for override in overrides or []:  # one by one: -o model.backbone=resnet34_vd -o model.backbone.layers=34
        apply_overrides(data, [override])
        _expand_backbone_preset(data)
    return build(Config, data)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read ``path`` (default: the params.yaml of ``project_root()``), then apply
    ``overrides``. A file with a top-level ``base:`` is an overlay (the profiles): only the keys it holds
    change the file ``base`` names, relative to the overlay (``rosetta.params.read_params``)."""
    if path is None:
        path = project_root() / "params.yaml"
    return config_from_dict(read_params(Path(path)), overrides)

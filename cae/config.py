"""Configuration as validated data: frozen dataclasses, loaded from YAML, one name per key.

Defaults live here and only here. ``experiments/*.yaml`` state what differs from them, search
spaces name the same dotted keys (``model.filters``, ``train.learning_rate``), and the same keys
become MLflow params. Unknown keys, wrong types and out-of-range values fail on load with the
file, the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from cae.errors import CAEError
from cae.paths import resolve

IMAGE_SIZE = 32  # CIFAR-10 images are 32×32; depth is limited by it

Normalization = Literal["unit", "standardize"]
Activation = Literal["relu", "elu", "gelu", "swish", "leaky_relu", "tanh", "linear"]
OutputActivation = Literal["sigmoid", "linear"]
Downsample = Literal["maxpool", "avgpool", "stride"]
Upsample = Literal["upsampling", "bilinear", "transpose"]
LRSchedule = Literal["constant", "cosine", "plateau"]
Loss = Literal["mse", "bce"]


@dataclass(frozen=True)
class DataConfig:
    # None = automatic: DATA / CAE_DATA, then the Keras cache, then the Keras download, then the
    # bundled sample (with a warning). A path, "keras" or "sample" pins the source.
    source: str | None = None
    # N training images and N/8 each for validation and test, drawn inside the seeded split so
    # quick runs never mix splits; None = the full 48,000/6,000/6,000.
    subset: int | None = None
    # "unit" scales inputs to [0, 1] (matches a sigmoid output); "standardize" subtracts the
    # training split's per-channel mean and divides by its std. Targets stay in [0, 1] either way.
    normalization: Normalization = "unit"
    # What the network sees: "rgb" (reconstruction), "luma" (BT.601 gray, colorization) or "mean"
    # (the channel average, the seed notebook's grayscale). Targets are always the RGB image.
    input: Literal["rgb", "luma", "mean"] = "rgb"

    @property
    def input_channels(self) -> int:
        return 3 if self.input == "rgb" else 1

    def validate(self) -> None:
        if self.subset is not None and self.subset < 8:
            raise CAEError(f"data.subset must be at least 8 (N/8 images each for val and test), got {self.subset}")


@dataclass(frozen=True)
class ModelConfig:
    # Defaults are the seed assignment's reference CAE: 8 -> 12 filters, latent 8×8×16, 4,911 params.
    depth: int = 2  # pooling (downsampling) stages; 32 / 2**depth is the latent's side
    filters: int = 8  # filters of the first level
    filter_growth: float = 1.5  # level i has round(filters * filter_growth**i) filters
    latent_filters: int = 16  # channels of the latent (code) layer
    kernel_size: int = 3
    convs_per_level: int = 1  # convolutions per level, in the encoder and mirrored in the decoder
    activation: Activation = "relu"
    latent_activation: Activation = "relu"  # "linear" keeps negative code values (no dead units)
    output_activation: OutputActivation = "sigmoid"
    downsample: Downsample = "maxpool"  # "stride" makes the level's last conv strided
    upsample: Upsample = "upsampling"  # nearest-neighbour UpSampling2D, bilinear, or Conv2DTranspose
    batch_norm: bool = False
    # "chroma": predict only U and V and combine them with the input luma (colorization).
    predict: Literal["rgb", "chroma"] = "rgb"
    # U-Net skip connections (encoder level i concatenated into decoder level i). They bypass the
    # bottleneck, so they are for colorization only: a reconstruction with skips compresses nothing.
    skips: bool = False

    def level_filters(self) -> tuple[int, ...]:
        return tuple(max(1, round(self.filters * self.filter_growth**i)) for i in range(self.depth))

    def validate(self) -> None:
        max_depth = IMAGE_SIZE.bit_length() - 1  # 32 -> 5 stages leave 1×1
        if not 1 <= self.depth <= max_depth:
            raise CAEError(
                f"model.depth={self.depth} would shrink the {IMAGE_SIZE}×{IMAGE_SIZE} image below 1×1 "
                f"or leave no pooling stage; allowed: 1..{max_depth}"
            )
        for key in ("filters", "latent_filters", "convs_per_level"):
            if getattr(self, key) < 1:
                raise CAEError(f"model.{key} must be a positive integer, got {getattr(self, key)}")
        if self.filter_growth <= 0:
            raise CAEError(f"model.filter_growth must be > 0, got {self.filter_growth}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise CAEError(f"model.kernel_size must be a positive odd integer, got {self.kernel_size}")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    batch_size: int = 32  # the seed notebook's batch size
    learning_rate: float = 1e-3  # Adam's default, as in the seed
    # "cosine" decays to 0 over the run; "plateau" halves the rate when val_loss stalls 2 epochs.
    lr_schedule: LRSchedule = "constant"
    # Stop after this many epochs without val_loss improvement; None trains all epochs. The best
    # epoch's weights are restored either way.
    early_stopping_patience: int | None = None
    loss: Loss = "mse"  # "bce" is the seed's colorization recipe, kept as a comparison

    def validate(self) -> None:
        if self.epochs < 1:
            raise CAEError(f"train.epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise CAEError(f"train.batch_size must be >= 1, got {self.batch_size}")
        if not self.learning_rate > 0:
            raise CAEError(f"train.learning_rate must be > 0, got {self.learning_rate}")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise CAEError("train.early_stopping_patience must be >= 1 or null")


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = "reference"  # MLflow experiment for `cae train`; run names start with it
    seed: int = 42  # fixes the 80/10/10 split, shuffling and weight initialisation
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        if self.model.skips and self.data.input == "rgb":
            raise CAEError(
                "model.skips bypasses the bottleneck: allowed only for colorization (data.input: luma or mean)"
            )
        if self.model.predict == "chroma" and self.data.input != "luma":
            raise CAEError("model.predict: chroma needs data.input: luma (the luma it keeps)")


@dataclass(frozen=True)
class SamplerConfig:
    name: Literal["tpe", "random", "nsga2"] = "tpe"
    n_startup_trials: int = 6  # random trials before TPE models the space (TPE/NSGA-II)
    # The sampler's own seed; None = the experiment's seed (which also fixes the data split, so
    # repeating a search with other sampler seeds keeps the same split).
    seed: int | None = None


@dataclass(frozen=True)
class PrunerConfig:
    # "median" stops a trial whose val_loss is worse than the median of earlier trials at the
    # same epoch; "hyperband" / "successive_halving" are multi-fidelity; "none" disables it.
    name: Literal["median", "hyperband", "successive_halving", "none"] = "median"
    n_startup_trials: int = 4  # trials that always run to the end before pruning starts
    n_warmup_steps: int = 2  # epochs every trial runs before it may be pruned


@dataclass(frozen=True)
class SearchConfig:
    study: str = "cae-search"  # Optuna study, MLflow experiment and runs/<study>/ folder
    space: str = "search_spaces/reconstruction.yaml"
    engine: Literal["optuna", "keras-tuner"] = "optuna"
    trials: int = 30  # finished trials (COMPLETE + PRUNED) the study should hold in total
    timeout: float | None = None  # seconds per call; None = until `trials` is reached
    # "val_loss" alone is a single-objective search; adding "code_values" (the narrower of the
    # latent and the bottleneck, in values) makes it a two-objective Pareto search.
    objectives: tuple[Literal["val_loss", "code_values"], ...] = ("val_loss",)
    # A sampled point whose code (narrower of latent and bottleneck) exceeds this many values is
    # skipped before training (FAIL "skipped: ...", no run, not counted): "better" only means
    # something at a fixed compression. None = no limit.
    max_code_values: int | None = None
    storage: str | None = None  # Optuna storage URL; None = sqlite:///<repo>/runs/optuna.db
    workers: int = 1  # OS processes on this host, each with its share of CPU threads
    heartbeat_interval: int = 20  # seconds between a running trial's heartbeats
    grace_period: int = 120  # a trial silent this long is failed and retried once
    tuner: Literal["hyperband", "bayesian", "random"] = "hyperband"  # keras-tuner's algorithm
    # Start every new study with the base experiment's point (the reference) as trial 0; the
    # benchmark turns it off so time-to-target measures the search alone.
    enqueue_reference: bool = True
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    pruner: PrunerConfig = field(default_factory=PrunerConfig)
    # Training settings every trial shares: the same keys as experiments/*.yaml.
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)

    def validate(self) -> None:
        if self.trials < 1:
            raise CAEError(f"trials must be >= 1, got {self.trials}")
        if self.workers < 1:
            raise CAEError(f"workers must be >= 1, got {self.workers}")
        if not self.objectives or self.objectives[0] != "val_loss" or len(set(self.objectives)) != len(self.objectives):
            raise CAEError(
                f"objectives must start with val_loss and not repeat, got {list(self.objectives)}; "
                "allowed: [val_loss] or [val_loss, code_values]"
            )
        if not self.study or "/" in self.study or self.study.startswith("."):
            raise CAEError(f"study must be a plain name (no '/'), got {self.study!r}")


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-4`` as a number (YAML 1.1 would make it a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


# --------------------------------------------------------------------------------------------
# Generic loading: YAML mapping -> nested frozen dataclasses, with one-line errors.


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp) if a is not type(None)) + " or null"
    if origin is tuple:
        return f"a list of {_type_name(get_args(tp)[0])}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def coerce(value: Any, tp: Any, key: str, where: str) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _from_dict(tp, value, where, prefix=f"{key}.")
    if origin in (Union, types.UnionType):
        if value is None and type(None) in get_args(tp):
            return None
        inner = [a for a in get_args(tp) if a is not type(None)]
        return coerce(value, inner[0], key, where)
    if origin is Literal:
        if value in get_args(tp) and not isinstance(value, bool):
            return value
    elif origin is tuple:
        if isinstance(value, (list, tuple)):
            return tuple(coerce(v, get_args(tp)[0], key, where) for v in value)
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise CAEError(f"{where}: {key} must be {_type_name(tp)}, got {value!r}")


def _from_dict(cls: type, data: Any, where: str, prefix: str = "") -> Any:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise CAEError(f"{where}: {prefix.rstrip('.') or 'the file'} must be a mapping of keys, got {data!r}")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            raise CAEError(f"{where}: unknown key '{prefix}{key}'; allowed: {', '.join(prefix + n for n in names)}")
    values = {k: coerce(v, hints[k], prefix + k, where) for k, v in data.items()}
    obj = cls(**values)
    if hasattr(obj, "validate"):
        try:
            obj.validate()
        except CAEError as err:
            raise CAEError(f"{where}: {err}") from None
    return obj


T = typing.TypeVar("T")


def from_dict(cls: type[T], data: Mapping[str, Any] | None, where: str = "config") -> T:
    """Build a (nested) config dataclass from plain data; ``where`` names the source in errors."""
    return _from_dict(cls, data, where)


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) that ``from_dict`` reads back to an equal config."""

    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(config))


def flatten(config: Any) -> dict[str, Any]:
    """``{"model.depth": 2, ...}``: the dotted keys used in search spaces and MLflow params."""
    out: dict[str, Any] = {}

    def walk(d: Mapping[str, Any], prefix: str) -> None:
        for k, v in d.items():
            if isinstance(v, Mapping):
                walk(v, f"{prefix}{k}.")
            else:
                out[prefix + k] = v

    walk(to_dict(config), "")
    return out


def field_type(cls: type, dotted: str) -> Any:
    """Type hint of a dotted key (``model.depth`` -> int); CAEError listing the keys if unknown."""
    tp: Any = cls
    for part in dotted.split("."):
        hints = get_type_hints(tp) if dataclasses.is_dataclass(tp) else {}
        if part not in hints:
            allowed = ", ".join(k for k in flatten(cls()) if "." in k) if dataclasses.is_dataclass(cls) else ""
            raise CAEError(f"unknown key '{dotted}'; allowed: {allowed}")
        tp = hints[part]
    return tp


def with_overrides(config: T, overrides: Mapping[str, Any], where: str = "override") -> T:
    """A copy of ``config`` with dotted keys replaced, validated again as a whole."""
    if not overrides:
        return config
    data = to_dict(config)
    for dotted, value in overrides.items():
        field_type(type(config), dotted)  # unknown key -> one-line error
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = list(value) if isinstance(value, tuple) else value
    return from_dict(type(config), data, where)


def parse_assignment(text: str) -> tuple[str, Any]:
    """``"train.epochs=3"`` -> ``("train.epochs", 3)``; values are parsed as YAML scalars."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise CAEError(f"--set expects KEY=VALUE (e.g. train.epochs=3), got {text!r}")
    return key.strip(), yaml_load(raw) if raw.strip() else None


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = resolve(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise CAEError(f"config file {path} does not exist") from None
    except OSError as err:
        raise CAEError(f"cannot read config file {path}: {err.strerror}") from None
    try:
        data = yaml_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise CAEError(f"{path}:{line} {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CAEError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def load_experiment(path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """Defaults, then the YAML file (if any), then ``overrides`` (CLI / make variables)."""
    base = from_dict(ExperimentConfig, read_yaml(path), str(path)) if path else ExperimentConfig()
    return with_overrides(base, overrides or {})


def load_search(path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> SearchConfig:
    base = from_dict(SearchConfig, read_yaml(path), str(path)) if path else SearchConfig()
    return with_overrides(base, overrides or {})

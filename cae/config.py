"""Configuration as validated data: frozen dataclasses, loaded from YAML, one name per key.

Defaults live here and only here. ``experiments/*.yaml`` state what differs from them, search
spaces name the same dotted keys (``model.filters``, ``train.learning_rate``), and the same keys
become MLflow params. Unknown keys, wrong types and out-of-range values fail on load with the
file, the key and what is allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cae.errors import CAEError
from cae.paths import check_study_name
from cae.schema import check_choices, from_dict, read_yaml, with_overrides

IMAGE_SIZE = 32  # CIFAR-10 images are 32×32; depth is limited by it

Normalization = Literal["unit", "standardize"]
Activation = Literal["relu", "elu", "gelu", "swish", "leaky_relu", "tanh", "linear"]
OutputActivation = Literal["sigmoid", "linear"]
Downsample = Literal["maxpool", "avgpool", "stride"]
Upsample = Literal["upsampling", "bilinear", "transpose"]
LRSchedule = Literal["constant", "cosine", "plateau"]
Loss = Literal["mse", "bce", "l1", "huber", "classification"]
Precision = Literal["float32", "mixed_float16", "mixed_bfloat16"]
Objective = Literal["best_val_loss", "code_values", "val_psnr", "colourfulness_gap"]
# Optimisation direction of each objective a study may name.
DIRECTIONS: dict[str, str] = {
    "best_val_loss": "minimize", "code_values": "minimize", "val_psnr": "maximize", "colourfulness_gap": "minimize",
}  # fmt: skip


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
    filter_growth: float = 1.5  # level i has round(filters * filter_growth**i * width_multiplier) filters
    # Scales every level's width (not the latent): searches a found architecture's width around it.
    width_multiplier: float = 1.0
    latent_filters: int = 16  # channels of the latent (code) layer
    # The latent's size in values instead of its channels: latent_filters = code_budget // side²
    # (at least 1). A space that samples it, with `high` at most max_code_values, only draws codes
    # that fit the budget at every depth. None = use latent_filters.
    code_budget: int | None = None
    kernel_size: int = 3
    convs_per_level: int = 1  # convolutions per level, in the encoder and mirrored in the decoder
    activation: Activation = "relu"
    latent_activation: Activation = "relu"  # "linear" keeps negative code values (no dead units)
    output_activation: OutputActivation = "sigmoid"
    downsample: Downsample = "maxpool"  # "stride" makes the level's last conv strided
    upsample: Upsample = "upsampling"  # nearest-neighbour UpSampling2D, bilinear, or Conv2DTranspose
    batch_norm: bool = False
    # "chroma": predict only U and V and combine them with the input luma (colorization); with
    # train.loss "classification" the network predicts a distribution over chroma bins instead.
    predict: Literal["rgb", "chroma"] = "rgb"
    # U-Net skip connections (encoder level i concatenated into decoder level i). They bypass the
    # bottleneck, so they are for colorization only: a reconstruction with skips compresses nothing.
    skips: bool = False
    # "conv": the code is a convolution's output (h × w × channels), the family above. "dense": a
    # linear projection of the whole image to `code_budget` values and back, PCA's form, with
    # residual convolutions around it (cae/hybrid.py); depth, filters and the like do not apply.
    bottleneck: Literal["conv", "dense"] = "conv"
    # Colorization: a global semantic branch (Iizuka et al. 2016): the deepest encoder features pooled
    # over the whole image into this many values, fused into the decoder at the bottleneck; 0 = none.
    # It carries information around the code, so it is for colorization only, like skips.
    semantic: int = 0
    # Colorization, an upper bound only: the branch is fed the image's true class (one-hot) instead of
    # the pooled features. Such a model takes the label as a second input; it is never chosen or saved as one.
    semantic_oracle: bool = False
    # dense: the projection is the training split's PCA basis, kept fixed, so training starts at
    # PCA's error and the convolutions learn what it misses (cae/hybrid.py says why fixed).
    pca_init: bool = False
    # dense: residual convolutions on the image before the projection (a nonlinear code) and on the
    # decoded image after it (what k linear components cannot carry), `refine_width` filters each.
    encode_layers: int = 0
    refine_layers: int = 0
    refine_width: int = 32

    def level_filters(self) -> tuple[int, ...]:
        scale = self.filter_growth
        return tuple(max(1, round(self.filters * scale**i * self.width_multiplier)) for i in range(self.depth))

    def latent_side(self, image_size: int = IMAGE_SIZE) -> int:
        return image_size // 2**self.depth

    def latent_channels(self) -> int:
        if self.code_budget is None:
            return self.latent_filters
        return max(1, self.code_budget // self.latent_side() ** 2)

    def code_values(self) -> int:
        """The code's size in values: a dense code's ``code_budget``, else the latent's h × w × channels."""
        if self.bottleneck == "dense":
            return self.code_budget or self.latent_filters * self.latent_side() ** 2
        return self.latent_channels() * self.latent_side() ** 2

    def validate(self) -> None:
        check_choices(self, "model.")
        max_depth = IMAGE_SIZE.bit_length() - 1  # 32 -> 5 stages leave 1×1
        if not 1 <= self.depth <= max_depth:
            raise CAEError(
                f"model.depth={self.depth} would shrink the {IMAGE_SIZE}×{IMAGE_SIZE} image below 1×1 "
                f"or leave no pooling stage; allowed: 1..{max_depth}"
            )
        for key in ("filters", "latent_filters", "convs_per_level"):
            if getattr(self, key) < 1:
                raise CAEError(f"model.{key} must be a positive integer, got {getattr(self, key)}")
        if self.code_budget is not None and self.code_budget < 1:
            raise CAEError(f"model.code_budget must be a positive integer or null, got {self.code_budget}")
        if self.filter_growth <= 0 or self.width_multiplier <= 0:
            raise CAEError("model.filter_growth and model.width_multiplier must be > 0")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise CAEError(f"model.kernel_size must be a positive odd integer, got {self.kernel_size}")
        for key in ("encode_layers", "refine_layers"):
            if getattr(self, key) < 0:
                raise CAEError(f"model.{key} must be 0 or more, got {getattr(self, key)}")
        if self.refine_width < 1:
            raise CAEError(f"model.refine_width must be a positive integer, got {self.refine_width}")
        if self.bottleneck == "conv" and (self.pca_init or self.encode_layers or self.refine_layers):
            raise CAEError("model.pca_init, model.encode_layers and model.refine_layers need model.bottleneck: dense")
        if self.semantic < 0:
            raise CAEError(f"model.semantic must be 0 (off) or a positive width, got {self.semantic}")
        if self.semantic_oracle and not self.semantic:
            raise CAEError("model.semantic_oracle feeds the semantic branch: it needs model.semantic > 0")
        if self.bottleneck == "dense" and (self.skips or self.semantic):
            raise CAEError("model.skips and model.semantic need model.bottleneck: conv (a dense code has no "
                           "encoder levels)")
        if self.bottleneck == "dense" and not 1 <= self.code_values() <= 3 * IMAGE_SIZE**2:
            raise CAEError(f"model.code_budget of a dense code must be 1..{3 * IMAGE_SIZE**2} values, "
                           f"got {self.code_values()}")


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
    # "mse" (the project's), "bce" (the seed's colorization recipe), "l1", "huber" (delta 0.1 in
    # pixel units: L1 beyond it), or "classification": cross-entropy over quantised chroma
    # (colorization with model.predict: chroma), decoded by an annealed mean.
    loss: Loss = "mse"
    # Classification only: class rebalancing strength (Zhang et al. 2016). Each chroma bin's weight
    # is 1 / (rebalance · p(bin) + (1 − rebalance) / Q): 0 = plain cross-entropy, 1 = inverse
    # frequency, 0.5 = the paper's choice. Rare vivid colours are otherwise averaged away.
    rebalance: float = 0.5
    # Colorization with model.semantic: weight of the auxiliary CIFAR-10 class loss (cross-entropy of a
    # class head on the semantic features, Iizuka et al.) beside the colour loss; 0 = no class head.
    class_weight: float = 0.0
    # Numerics: "mixed_float16" computes in float16 with float32 weights (fast on recent GPUs,
    # slower on CPUs); XLA compiles the train step. Both are measured in `make bench`.
    precision: Precision = "float32"
    jit_compile: bool = False

    def validate(self) -> None:
        check_choices(self, "train.")
        if self.epochs < 1:
            raise CAEError(f"train.epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise CAEError(f"train.batch_size must be >= 1, got {self.batch_size}")
        if not self.learning_rate > 0:
            raise CAEError(f"train.learning_rate must be > 0, got {self.learning_rate}")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise CAEError("train.early_stopping_patience must be >= 1 or null")
        if not 0 <= self.rebalance <= 1:
            raise CAEError(f"train.rebalance must be between 0 and 1, got {self.rebalance}")
        if self.class_weight < 0:
            raise CAEError(f"train.class_weight must be 0 (off) or more, got {self.class_weight}")


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = "reference"  # MLflow experiment for `cae train`; run names start with it
    seed: int = 42  # fixes the 80/10/10 split, shuffling and weight initialisation
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        check_study_name(self.name, "experiment")  # it names runs/train/<name>-... and the MLflow experiment
        if (self.model.skips or self.model.semantic) and self.data.input == "rgb":
            raise CAEError(
                "model.skips and model.semantic bypass the bottleneck: allowed only for colorization (data.input: "
                "luma or mean)"
            )
        if self.train.class_weight and (not self.model.semantic or self.model.semantic_oracle):
            raise CAEError("train.class_weight trains a class head on the semantic features: it needs "
                           "model.semantic > 0 (and no oracle, which is given the class)")
        if self.model.bottleneck == "dense" and self.data.input != "rgb":
            # PCA's basis and the linear code map RGB to RGB; a colorizer needs convolutional features.
            raise CAEError("model.bottleneck: dense is a reconstruction code (RGB in, RGB out): colorization needs "
                           "a conv architecture, e.g. CONFIG=experiments/conv-best.yaml")  # fmt: skip
        if self.model.predict == "chroma" and self.data.input != "luma":
            raise CAEError("model.predict: chroma needs data.input: luma (the luma it keeps)")
        if self.train.loss == "classification" and self.model.predict != "chroma":
            raise CAEError("train.loss: classification classifies chroma: it needs model.predict: chroma")


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
    # Hyperband (min_resource 1 epoch, max the trial's epochs) won the benchmark's pruner rerun.
    name: Literal["median", "hyperband", "successive_halving", "none"] = "hyperband"
    n_startup_trials: int = 4  # trials that always run to the end before pruning starts (median)
    n_warmup_steps: int = 2  # epochs every trial runs before it may be pruned (median; SHA's min_resource)


@dataclass(frozen=True)
class SearchConfig:
    study: str = "cae-search"  # Optuna study, MLflow experiment and runs/<study>/ folder
    space: str = "search_spaces/reconstruction.yaml"
    engine: Literal["optuna", "keras-tuner"] = "optuna"
    # What a trial trains: an autoencoder ("reconstruction") or a gray-to-colour network
    # ("colorization", `make colorize-search`, starting from source_study's best trial).
    stage: Literal["reconstruction", "colorization"] = "reconstruction"
    source_study: str | None = None  # colorization: the reconstruction study whose best it starts from
    trials: int = 30  # finished trials (COMPLETE + PRUNED) the study should hold in total
    # Resume the study although this call's data, subset, epochs or space differ from what its
    # trials were trained on (cae/search/record.py); the change is recorded with the study.
    extend: bool = False
    timeout: float | None = None  # seconds per call; None = until `trials` is reached
    # "best_val_loss" (validation MSE) alone is a single-objective search; adding "code_values" (the
    # narrower of latent and bottleneck) makes it a two-objective Pareto search. Colorization
    # studies trade "val_psnr" against "colourfulness_gap" (|1 − pred/true chroma spread|).
    objectives: tuple[Objective, ...] = ("best_val_loss",)
    # Colorization: the colourfulness a classification model's decoding temperature aims for (the
    # temperature is chosen on validation: the best PSNR among those reaching it).
    vivid: float = 0.7
    # Colorization: train the Pareto front's models again for this many epochs after the study (its
    # trials are short); None keeps the trials' own models.
    final_epochs: int | None = None
    # A sampled point whose code (narrower of latent and bottleneck) exceeds this many values is
    # skipped before training (FAIL "skipped: ...", no run, not counted): "better" only means
    # something at a fixed compression. Spaces that sample model.code_budget never hit it. None = no limit.
    max_code_values: int | None = None
    storage: str | None = None  # Optuna storage URL; None = sqlite:///<repo>/runs/optuna.db
    workers: int = 1  # OS processes on this host, each with its share of CPU threads
    heartbeat_interval: int = 20  # seconds between a running trial's heartbeats
    grace_period: int = 120  # a trial silent this long is failed and retried once
    tuner: Literal["hyperband", "bayesian", "random"] = "hyperband"  # keras-tuner's algorithm
    # Start every new study with the base experiment's point (the reference) as trial 0; the
    # benchmark turns it off so time-to-target measures the search alone.
    enqueue_reference: bool = True
    # Points a new study runs next (after the reference), each as config overrides (dotted keys;
    # unlisted searched keys take the base experiment's values). Their models are kept, so the
    # report can say what each part of a family buys at the same budget.
    enqueue: tuple[dict[str, Any], ...] = ()
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    pruner: PrunerConfig = field(default_factory=PrunerConfig)
    # Training settings every trial shares: the same keys as experiments/*.yaml.
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)

    @property
    def directions(self) -> list[str]:
        return [DIRECTIONS[o] for o in self.objectives]

    @property
    def sampler_seed(self) -> int:
        """The sampler's seed: its own if set, else the experiment's (one per engine and study)."""
        return self.experiment.seed if self.sampler.seed is None else self.sampler.seed

    def validate(self) -> None:
        if self.trials < 1:
            raise CAEError(f"trials must be >= 1, got {self.trials}")
        if self.workers < 1:
            raise CAEError(f"workers must be >= 1, got {self.workers}")
        first = {"reconstruction": "best_val_loss", "colorization": "val_psnr"}[self.stage]
        if not self.objectives or self.objectives[0] != first or len(set(self.objectives)) != len(self.objectives):
            raise CAEError(
                f"objectives of a {self.stage} study must start with {first} and not repeat, got "
                f"{list(self.objectives)}; allowed: [best_val_loss] or [best_val_loss, code_values] "
                "(reconstruction), [val_psnr] or [val_psnr, colourfulness_gap] (colorization)"
            )
        check_study_name(self.study)


def load_experiment(path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """Defaults, then the YAML file (if any), then ``overrides`` (CLI / make variables)."""
    base = from_dict(ExperimentConfig, read_yaml(path), str(path)) if path else ExperimentConfig()
    return with_overrides(base, overrides or {})


def load_search(path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> SearchConfig:
    """A study's settings: defaults, then the YAML file (if any), then ``overrides`` (dotted keys;
    training keys under ``experiment.``, e.g. ``experiment.train.epochs``)."""
    base = from_dict(SearchConfig, read_yaml(path), str(path)) if path else SearchConfig()
    return with_overrides(base, overrides or {})

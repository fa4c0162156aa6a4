"""Configuration as validated data: frozen dataclasses, loaded from YAML, one name per key.

Defaults live here and only here. ``experiments/*.yaml`` state what differs from them, search
spaces name the same dotted keys (``model.filters``, ``train.learning_rate``), and the same keys
become MLflow params. Unknown keys, wrong types and out-of-range values fail on load with the
file, the key and what is allowed. A study's settings (``SearchConfig``) are in
:mod:`cae.search_config`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cae.config_files import read_yaml
from cae.errors import CAEError
from cae.paths import check_study_name
from cae.schema import check_choices, from_dict, with_overrides

IMAGE_SIZE = 32  # CIFAR-10 images are 32×32; depth is limited by it

Normalization = Literal["unit", "standardize"]
Activation = Literal["relu", "elu", "gelu", "swish", "leaky_relu", "tanh", "linear"]
OutputActivation = Literal["sigmoid", "linear"]
Downsample = Literal["maxpool", "avgpool", "stride"]
Upsample = Literal["upsampling", "bilinear", "transpose"]
LRSchedule = Literal["constant", "cosine", "plateau"]
Loss = Literal["mse", "bce", "l1", "huber", "classification"]
Precision = Literal["float32", "mixed_float16", "mixed_bfloat16"]


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
    # dense with pca_init: 0 keeps PCA's code fixed; > 0 adds a zero-started trainable correction to
    # the code and to its reconstruction, trained at this fraction of the learning rate (cae/hybrid.py).
    code_drift: float = 0.0

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
        if not 0 <= self.code_drift <= 1:
            raise CAEError(f"model.code_drift must be between 0 (PCA's code fixed) and 1, got {self.code_drift}")
        if self.code_drift and not (self.bottleneck == "dense" and self.pca_init):
            raise CAEError(
                "model.code_drift corrects PCA's fixed code: it needs model.bottleneck: dense and model.pca_init: true"
            )
        if self.refine_width < 1:
            raise CAEError(f"model.refine_width must be a positive integer, got {self.refine_width}")
        if self.bottleneck == "conv" and (self.pca_init or self.encode_layers or self.refine_layers):
            raise CAEError("model.pca_init, model.encode_layers and model.refine_layers need model.bottleneck: dense")
        if self.semantic < 0:
            raise CAEError(f"model.semantic must be 0 (off) or a positive width, got {self.semantic}")
        if self.semantic_oracle and not self.semantic:
            raise CAEError("model.semantic_oracle feeds the semantic branch: it needs model.semantic > 0")
        if self.bottleneck == "dense" and (self.skips or self.semantic):
            raise CAEError(
                "model.skips and model.semantic need model.bottleneck: conv (a dense code has no encoder levels)"
            )
        if self.bottleneck == "dense" and not 1 <= self.code_values() <= 3 * IMAGE_SIZE**2:
            raise CAEError(
                f"model.code_budget of a dense code must be 1..{3 * IMAGE_SIZE**2} values, got {self.code_values()}"
            )


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
        if not 0 <= self.seed < 2**32:  # what NumPy's and Keras' seeding accept
            raise CAEError(f"seed must be 0 .. 2**32 - 1, got {self.seed}")
        if (self.model.skips or self.model.semantic) and self.data.input == "rgb":
            raise CAEError(
                "model.skips and model.semantic bypass the bottleneck: allowed only for colorization (data.input: "
                "luma or mean)"
            )
        if self.train.class_weight and (not self.model.semantic or self.model.semantic_oracle):
            raise CAEError(
                "train.class_weight trains a class head on the semantic features: it needs "
                "model.semantic > 0 (and no oracle, which is given the class)"
            )
        if self.model.bottleneck == "dense" and self.data.input != "rgb" and self.model.pca_init:
            # PCA's basis maps RGB to RGB: from gray the code is learned (cae/hybrid.py).
            raise CAEError("model.pca_init needs data.input: rgb (PCA's basis is RGB's); from gray the code is learned")
        if self.model.bottleneck == "dense" and self.train.loss == "classification":
            raise CAEError("train.loss: classification needs model.bottleneck: conv (a dense code predicts colours)")
        if self.model.predict == "chroma" and self.data.input != "luma":
            raise CAEError("model.predict: chroma needs data.input: luma (the luma it keeps)")
        if self.train.loss == "classification" and self.model.predict != "chroma":
            raise CAEError("train.loss: classification classifies chroma: it needs model.predict: chroma")


def load_experiment(path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """Defaults, then the YAML file (if any), then ``overrides`` (CLI / make variables)."""
    base = from_dict(ExperimentConfig, read_yaml(path), str(path)) if path else ExperimentConfig()
    return with_overrides(base, overrides or {})

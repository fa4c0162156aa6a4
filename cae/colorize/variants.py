"""Colorization recipes: the variants of `make colorize-best` and the source architecture they start from.

- ``rgb``: predict R, G, B with MSE (the assignment's formulation);
- ``chroma``: keep the given luma, predict only U and V (BT.601), recombined to RGB in the model;
- ``seed``: the seed notebook's recipe as a comparison row: channel-mean gray input, sigmoid RGB
  output, binary cross-entropy;
- ``chroma-warm``: ``chroma`` with the encoder/decoder initialised from the best reconstruction
  weights (first convolution summed over its RGB inputs, which is exact for a gray image);
- ``chroma-skips``: ``chroma`` with U-Net skip connections, so detail need not pass the bottleneck;
- ``chroma-semantic``: ``chroma`` with a global semantic branch (pooled encoder features fused into
  the decoder) and an auxiliary CIFAR-10 class loss (Iizuka et al. 2016);
- ``chroma-oracle``: the same branch fed the *true* class instead: an upper bound on what knowing
  the object buys, reported beside, never a model to use (it needs the label at inference);
- ``conv``: ``chroma`` on the conv-only study's best architecture (``experiments/conv-best.yaml``),
  today's conv recipe beside a source with a dense code;
- ``all``: rgb, chroma and seed (and conv, for a source with a dense code).

A source with a dense code (the default study's PCA code with convolutions around it) is rebuilt for
a 1-channel luma input: its convolutions before the code, a code of the same size learned from gray
(PCA's basis is RGB's), its refinement after (:mod:`cae.hybrid`). Skips and the semantic branch need
encoder levels, which a dense code has not: those variants are conv only.
"""

from __future__ import annotations

from typing import Any

from cae.config import ExperimentConfig, load_experiment
from cae.errors import CAEError
from cae.schema import from_dict, to_dict, with_overrides
from cae.search.best import read_best
from cae.search_config import SearchConfig

VARIANTS: dict[str, dict[str, Any]] = {
    "rgb": {"data.input": "luma", "model.predict": "rgb", "train.loss": "mse"},
    "chroma": {"data.input": "luma", "model.predict": "chroma", "train.loss": "mse"},
    "seed": {"data.input": "mean", "model.predict": "rgb", "model.output_activation": "sigmoid", "train.loss": "bce"},
    "chroma-warm": {"data.input": "luma", "model.predict": "chroma", "train.loss": "mse"},
    "chroma-skips": {"data.input": "luma", "model.predict": "chroma", "train.loss": "mse", "model.skips": True},
    "chroma-semantic": {
        "data.input": "luma",
        "model.predict": "chroma",
        "train.loss": "mse",
        "model.semantic": 128,
        "train.class_weight": 0.1,
    },
    "chroma-oracle": {
        "data.input": "luma",
        "model.predict": "chroma",
        "train.loss": "mse",
        "model.semantic": 128,
        "model.semantic_oracle": True,
    },
}
ALL = ("rgb", "chroma", "seed")
CONV_ONLY = ("chroma-skips", "chroma-semantic", "chroma-oracle")  # they need encoder levels
CONV_RECIPE = "experiments/conv-best.yaml"  # the `conv` variant's architecture
GRAY = {"model.pca_init": False, "model.code_drift": 0.0}  # a dense source rebuilt for a gray input
# A rate tuned for reconstruction can be too high for colour: at the main study's 6.07e-3 the chroma
# head died within the first epoch (constant colour, colourfulness 0.01 on the full split), while
# 1e-3 trained. The cap applies unless the user sets train.learning_rate explicitly.
MAX_LEARNING_RATE = 1e-3
DESCRIPTIONS = {
    "rgb": "luma in, RGB out, MSE",
    "chroma": "luma in, U/V out (luma kept), MSE",
    "seed": "seed recipe: mean-gray in, sigmoid RGB, BCE",
    "chroma-warm": "chroma, warm-started from the reconstruction weights",
    "chroma-skips": "chroma with U-Net skip connections around the bottleneck",
    "chroma-semantic": "chroma with a global semantic branch and a class loss (weight 0.1)",
    "chroma-oracle": "chroma given the true class (upper bound; not a usable model)",
    "conv": "chroma on the conv-only study's best architecture (experiments/conv-best.yaml)",
}
VARIANTS["conv"] = VARIANTS["chroma"]


def dense(config: ExperimentConfig) -> bool:
    return config.model.bottleneck == "dense"


def default_variants(base: ExperimentConfig) -> tuple[str, ...]:
    """``all``: rgb, chroma and seed on the source, and for a dense source the conv recipe beside."""
    return (*ALL, "conv") if dense(base) else ALL


def source_architecture(study: str | None, config_path: str | None) -> tuple[ExperimentConfig, dict[str, Any]]:
    """(config, lineage) from a study's best.json, or from an explicit experiment file."""
    if config_path:
        return load_experiment(config_path), {"source_config": config_path}
    try:
        record = read_best(study or SearchConfig().study)
    except CAEError as err:
        raise CAEError(f"{err}, or pass CONFIG=<experiment yaml> to colorize an explicit architecture") from None
    lineage = {
        "source_study": record["study"],
        "source_trial": record["trial_number"],
        "source_run_id": record["mlflow_run_id"],
    }
    config = from_dict(ExperimentConfig, record["config"], f"runs/{record['study']}/best.json")
    if dense(config):
        lineage["rebuilt"] = "for a 1-channel luma input: a code of the same size learned from gray"
        config = with_overrides(config, GRAY)
    return config, lineage


def check_variants(variants: list[str], base: ExperimentConfig) -> None:
    """One line for a variant that does not exist, or that needs encoder levels a dense source has not."""
    for variant in variants:
        if variant not in VARIANTS:
            raise CAEError(f"unknown colorization variant {variant!r}; allowed: {', '.join(VARIANTS)}, all")
        if variant in CONV_ONLY and dense(base):
            raise CAEError(
                f"variant {variant!r} needs a conv architecture (encoder levels), and the source has a dense code: "
                f"use VARIANT=conv, or CONFIG={CONV_RECIPE}"
            )


def variant_config(base: ExperimentConfig, variant: str, overrides: dict[str, Any]) -> ExperimentConfig:
    check_variants([variant], base)
    if variant == "conv":  # the conv recipe on the conv study's architecture, on the source's data and length
        conv = load_experiment(CONV_RECIPE)
        base = with_overrides(base, {"model": to_dict(conv.model)})
    return with_overrides(base, {**VARIANTS[variant], "name": f"colorize-{variant}", **overrides})


def warm_start(model: Any, source: Any) -> int:
    """Copy matching weights from a reconstruction model; returns how many layers were copied.

    A convolution that saw RGB and now sees gray (R = G = B = Y) answers as a 1-channel kernel summed
    over its input channels, so that sum is the exact adaptation.
    """
    copied = 0
    names = {layer.name for layer in source.layers}
    for layer in model.layers:
        if layer.name not in names or not layer.weights:
            continue
        weights = source.get_layer(layer.name).get_weights()
        gray = len(weights[0].shape) == 4 and weights[0].shape[2] == 3 and layer.weights[0].shape[2] == 1
        if gray:
            weights[0] = weights[0].sum(axis=2, keepdims=True)
        if [w.shape for w in weights] == [tuple(w.shape) for w in layer.weights]:
            layer.set_weights(weights)
            copied += 1
    return copied


def capped(base: ExperimentConfig, lineage: dict[str, Any], overrides: dict[str, Any]) -> ExperimentConfig:
    """``base`` with its learning rate capped for colour (unless the user set one); noted in ``lineage``."""
    if "train.learning_rate" in overrides or base.train.learning_rate <= MAX_LEARNING_RATE:
        return base
    lineage["searched_learning_rate"] = base.train.learning_rate
    return with_overrides(base, {"train.learning_rate": MAX_LEARNING_RATE})

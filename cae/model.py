"""The convolutional autoencoder: built from plain values, knows nothing of training or search.

The defaults of :func:`build_autoencoder` are the seed assignment's reference architecture:

    32×32×3 → Conv3×3(8, relu) → MaxPool2 → Conv3×3(12, relu) → MaxPool2 → Conv3×3(16, relu)
    [latent 8×8×16] → UpSample2 → Conv3×3(12, relu) → UpSample2 → Conv3×3(3, sigmoid)

4,911 parameters. The decoder mirrors the encoder: level i is upsampled and convolved with the width of encoder
level i (``convs_per_level`` convolutions, a transposed convolution counting as the first); with
UpSampling2D the output convolution replaces level 0's last one, as in the reference.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import keras
from keras import layers

from cae.colour import CLASS_LOGITS, chroma_to_rgb
from cae.config import ModelConfig
from cae.data import CLASSES
from cae.errors import CAEError
from cae.hybrid import build_linear_code

NUM_CLASSES = len(CLASSES)
CLASS_HEAD = "class_logits"  # the auxiliary class output's layer (and loss) name


def _conv_block(
    x: keras.KerasTensor,
    width: int,
    kernel_size: int,
    *,
    strides: int,
    activation: str,
    batch_norm: bool,
    transpose: bool,
    name: str,
) -> keras.KerasTensor:
    conv = layers.Conv2DTranspose if transpose else layers.Conv2D
    if batch_norm:  # conv → BN → activation; the BN's shift makes the conv bias redundant
        x = conv(width, kernel_size, strides=strides, padding="same", use_bias=False, name=name)(x)
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
        return layers.Activation(activation, name=f"{name}_act")(x)
    return conv(width, kernel_size, strides=strides, padding="same", activation=activation, name=name)(x)


def build_autoencoder(
    *,
    input_channels: int = 3,
    input_mean: Sequence[float] | None = None,
    input_std: Sequence[float] | None = None,
    chroma_classes: int = 0,
    image_size: int = 32,
    name: str = "cae",
    pca: tuple[Any, Any] | None = None,
    class_head: bool = False,
    **architecture: Any,
) -> keras.Model:
    """A CAE whose input is ``image_size``² × ``input_channels`` and output RGB in [0, 1] units.

    ``architecture`` takes the fields of :class:`ModelConfig` as plain keyword values (``depth=3,
    filters=32, downsample="stride"``); omitted ones take ModelConfig's defaults, the reference CAE.
    An unknown field or mode is a ``ValueError``. ``predict="chroma"`` (colorization from luma): the
    network predicts U and V, combined with the 1-channel input by :func:`cae.colour.chroma_to_rgb`
    (built-in layers), or, with ``chroma_classes`` > 0, it outputs logits over that many chroma
    classes (``cae.colour.decoding_model`` adds the decoding). ``skips`` adds U-Net connections from each
    encoder level to the decoder level of the same resolution. ``input_mean`` / ``input_std`` add a
    Normalization layer, so the saved model always takes [0, 1] pixels. ``bottleneck="dense"`` builds
    the linear-code family (:mod:`cae.hybrid`); ``pca`` = (mean, components) of the training split
    initialises its projection (``pca_init``). ``semantic`` adds the global branch (and, with
    ``semantic_oracle``, a ``label`` input); ``class_head`` a second output, class logits for the
    auxiliary loss.
    """
    try:
        arch = ModelConfig(**architecture)
        arch.validate()
    except (TypeError, CAEError) as err:
        raise ValueError(f"build_autoencoder: {err}") from None
    if arch.bottleneck == "dense":
        return build_linear_code(
            code_values=arch.code_values(),
            encode_layers=arch.encode_layers,
            refine_layers=arch.refine_layers,
            width=arch.refine_width,
            kernel_size=arch.kernel_size,
            activation=arch.activation,
            input_channels=input_channels,
            image_size=image_size,
            input_mean=input_mean,
            input_std=input_std,
            pca=pca,
            code_drift=arch.code_drift,
            predict=arch.predict,
            name=name,
        )
    inputs = keras.Input((image_size, image_size, input_channels), name="image")
    x = inputs
    if input_mean is not None and input_std is not None:
        x = layers.Normalization(mean=list(input_mean), variance=[s * s for s in input_std], name="standardize")(x)
    x, skip_tensors = _encoder(x, arch)
    model_inputs, outputs = [inputs], []
    features = None
    if arch.semantic:  # the global branch reads the deepest encoder features (or, as an oracle, the label)
        label = keras.Input((NUM_CLASSES,), name="label") if arch.semantic_oracle else None
        model_inputs += [label] if label is not None else []
        features = layers.Dense(arch.semantic, activation="relu", name="semantic")(
            label if label is not None else layers.GlobalAveragePooling2D(name="semantic_pool")(x)
        )
    x = layers.Conv2D(
        arch.latent_channels(), arch.kernel_size, padding="same", activation=arch.latent_activation, name="latent"
    )(x)
    if features is not None:
        x = _fuse(x, features, arch.level_filters()[-1])
    x = _decoder(x, arch, skip_tensors)
    outputs.append(_head(x, inputs, arch, chroma_classes))
    if class_head:  # the auxiliary class loss's logits (training only; a saved colorizer has one output)
        outputs.append(layers.Dense(NUM_CLASSES, name=CLASS_HEAD)(features))
    return keras.Model(
        model_inputs if len(model_inputs) > 1 else inputs, outputs if len(outputs) > 1 else outputs[0], name=name
    )


def _encoder(x: keras.KerasTensor, arch: ModelConfig) -> tuple[keras.KerasTensor, list[keras.KerasTensor]]:
    """The encoder levels; returns the deepest features and each level's last full-resolution ones (skips)."""
    block = dict(kernel_size=arch.kernel_size, activation=arch.activation, batch_norm=arch.batch_norm)
    skip_tensors = []
    for i, width in enumerate(arch.level_filters()):
        for j in range(arch.convs_per_level):
            strided = arch.downsample == "stride" and j == arch.convs_per_level - 1
            if strided:
                skip_tensors.append(x)
            x = _conv_block(x, width, strides=2 if strided else 1, transpose=False, name=f"enc{i}_conv{j}", **block)
        if arch.downsample != "stride":
            skip_tensors.append(x)
        if arch.downsample == "maxpool":
            x = layers.MaxPooling2D(2, name=f"enc{i}_pool")(x)
        elif arch.downsample == "avgpool":
            x = layers.AveragePooling2D(2, name=f"enc{i}_pool")(x)
    return x, skip_tensors


def _fuse(x: keras.KerasTensor, features: keras.KerasTensor, width: int) -> keras.KerasTensor:
    """The global features copied to every position of the bottleneck, concatenated, mixed by a 1×1 conv."""
    side_h, side_w = x.shape[1], x.shape[2]
    g = layers.Reshape((1, 1, features.shape[-1]), name="semantic_map")(features)
    g = layers.UpSampling2D((side_h, side_w), name="semantic_spread")(g)
    x = layers.Concatenate(name="semantic_concat")([x, g])
    return layers.Conv2D(width, 1, activation="relu", name="semantic_fuse")(x)


def _decoder(x: keras.KerasTensor, arch: ModelConfig, skip_tensors: list[keras.KerasTensor]) -> keras.KerasTensor:
    """The decoder levels, mirroring the encoder (the output convolution is the head's)."""
    block = dict(kernel_size=arch.kernel_size, activation=arch.activation, batch_norm=arch.batch_norm)
    widths = arch.level_filters()
    for i in reversed(range(arch.depth)):
        if arch.upsample == "transpose":
            x = _conv_block(x, widths[i], strides=2, transpose=True, name=f"dec{i}_up", **block)
        else:
            interpolation = "bilinear" if arch.upsample == "bilinear" else "nearest"
            x = layers.UpSampling2D(interpolation=interpolation, name=f"dec{i}_up")(x)
        if arch.skips:
            x = layers.Concatenate(name=f"dec{i}_skip")([x, skip_tensors[i]])
        if arch.upsample == "transpose":  # the transposed conv is the level's first convolution
            n_convs = arch.convs_per_level - 1
        else:  # level 0's last convolution is the output convolution
            n_convs = arch.convs_per_level if i > 0 else arch.convs_per_level - 1
        for j in range(n_convs):
            x = _conv_block(x, widths[i], strides=1, transpose=False, name=f"dec{i}_conv{j}", **block)
    return x


def _head(x: keras.KerasTensor, inputs: keras.KerasTensor, arch: ModelConfig, chroma_classes: int) -> keras.KerasTensor:
    """The output: RGB, chroma combined with the input luma, or logits over chroma classes."""
    if arch.predict == "chroma" and chroma_classes:
        # A 1×1 convolution gives each pixel its distribution over chroma classes (Zhang et al.).
        return layers.Conv2D(chroma_classes, 1, activation="linear", name=CLASS_LOGITS)(x)
    if arch.predict == "chroma":
        uv = layers.Conv2D(2, arch.kernel_size, padding="same", activation="linear", name="output")(x)
        return chroma_to_rgb(inputs, uv)
    return layers.Conv2D(3, arch.kernel_size, padding="same", activation=arch.output_activation, name="output")(x)


def build_from_config(config: ModelConfig, **inputs: Any) -> keras.Model:
    """:func:`build_autoencoder` with the fields of a :class:`ModelConfig` (``inputs``: its other arguments)."""
    return build_autoencoder(**dataclasses.asdict(config), **inputs)


def code_sizes(model: keras.Model) -> tuple[int, int]:
    """``(latent_values, bottleneck_values)`` of an autoencoder.

    ``latent_values`` is h × w × channels of the layer named ``latent``; ``bottleneck_values`` is
    the narrowest activation anywhere between input and output (the reference pools to 8×8×12 =
    768 values just before its 8×8×16 = 1,024-value latent). A fair code size is the smaller one.
    """
    latent = math.prod(model.get_layer("latent").output.shape[1:])
    side = ("standardize", "label", CLASS_HEAD)  # not on the path from the image to its code
    inner = [
        math.prod(layer.output.shape[1:])
        for layer in model.layers[:-1]
        if not isinstance(layer, keras.layers.InputLayer)
        and layer.name not in side
        and not layer.name.startswith("semantic")
    ]
    return int(latent), int(min(inner))


def split_at_latent(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """(encoder, decoder) of an autoencoder whose output depends on its input only through ``latent``.

    Both share the model's layers (and weights); Keras builds each from the graph between the two
    tensors, so residual branches on either side come along.
    """
    latent = model.get_layer("latent").output
    return keras.Model(model.input, latent, name="encoder"), keras.Model(latent, model.output, name="decoder")

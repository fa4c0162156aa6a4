"""The convolutional autoencoder: built from plain values, knows nothing of training or search.

The defaults of :func:`build_autoencoder` are the seed assignment's reference architecture:

    32×32×3 → Conv3×3(8, relu) → MaxPool2 → Conv3×3(12, relu) → MaxPool2 → Conv3×3(16, relu)
    [latent 8×8×16] → UpSample2 → Conv3×3(12, relu) → UpSample2 → Conv3×3(3, sigmoid)

4,911 parameters. The decoder mirrors the encoder: level i is upsampled and convolved with the width of encoder
level i (``convs_per_level`` convolutions, a transposed convolution counting as the first); with
UpSampling2D the output convolution replaces level 0's last one, as in the reference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np
from keras import layers

from cae.config import ModelConfig

# BT.601 YUV -> RGB, the inverse of tf.image.rgb_to_yuv (rows: Y, U, V contributions).
_YUV_TO_RGB = np.array(
    [[1.0, 1.0, 1.0], [0.0, -0.394642334, 2.03206185], [1.13988303, -0.58062185, 0.0]],
    dtype=np.float32,
)


@keras.saving.register_keras_serializable(package="cae")
class ChromaToRGB(layers.Layer):
    """Combine the given luma with predicted chroma (U, V) into RGB (BT.601).

    The chroma colorization variant predicts only U and V, so the output's luma is exactly the
    input's: the network cannot spend capacity (or error) on brightness it was given.
    """

    def call(self, inputs: Sequence[keras.KerasTensor]) -> keras.KerasTensor:
        y, uv = inputs
        yuv = keras.ops.concatenate([y, uv], axis=-1)
        return keras.ops.matmul(yuv, keras.ops.convert_to_tensor(_YUV_TO_RGB))


def _conv_block(
    x: keras.KerasTensor, width: int, kernel_size: int, *, strides: int, activation: str,
    batch_norm: bool, transpose: bool, name: str,
) -> keras.KerasTensor:  # fmt: skip
    conv = layers.Conv2DTranspose if transpose else layers.Conv2D
    if batch_norm:  # conv → BN → activation; the BN's shift makes the conv bias redundant
        x = conv(width, kernel_size, strides=strides, padding="same", use_bias=False, name=name)(x)
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
        return layers.Activation(activation, name=f"{name}_act")(x)
    return conv(width, kernel_size, strides=strides, padding="same", activation=activation, name=name)(x)


def build_autoencoder(
    *,
    depth: int = 2,
    filters: int = 8,
    filter_growth: float = 1.5,
    latent_filters: int = 16,
    kernel_size: int = 3,
    convs_per_level: int = 1,
    activation: str = "relu",
    latent_activation: str = "relu",
    output_activation: str = "sigmoid",
    downsample: str = "maxpool",
    upsample: str = "upsampling",
    batch_norm: bool = False,
    predict: str = "rgb",
    skips: bool = False,
    input_channels: int = 3,
    input_mean: Sequence[float] | None = None,
    input_std: Sequence[float] | None = None,
    image_size: int = 32,
    name: str = "cae",
) -> keras.Model:
    """A CAE whose input is ``image_size``² × ``input_channels`` and output RGB in [0, 1] units.

    ``predict="chroma"`` (colorization from luma): the network predicts U and V and a
    :class:`ChromaToRGB` layer combines them with the 1-channel input. ``skips`` adds U-Net
    connections from each encoder level to the decoder level of the same resolution. ``input_mean`` /
    ``input_std`` add a Normalization layer, so the saved model always takes [0, 1] pixels.
    """
    widths = ModelConfig(depth=depth, filters=filters, filter_growth=filter_growth).level_filters()
    block = dict(kernel_size=kernel_size, activation=activation, batch_norm=batch_norm)
    inputs = keras.Input((image_size, image_size, input_channels), name="image")
    x = inputs
    if input_mean is not None and input_std is not None:
        x = layers.Normalization(mean=list(input_mean), variance=[s * s for s in input_std], name="standardize")(x)
    skip_tensors = []  # each level's last full-resolution features (used only with skips=True)
    for i, width in enumerate(widths):
        for j in range(convs_per_level):
            strided = downsample == "stride" and j == convs_per_level - 1
            if strided:
                skip_tensors.append(x)
            x = _conv_block(x, width, strides=2 if strided else 1, transpose=False, name=f"enc{i}_conv{j}", **block)
        if downsample != "stride":
            skip_tensors.append(x)
        if downsample == "maxpool":
            x = layers.MaxPooling2D(2, name=f"enc{i}_pool")(x)
        elif downsample == "avgpool":
            x = layers.AveragePooling2D(2, name=f"enc{i}_pool")(x)
    x = layers.Conv2D(latent_filters, kernel_size, padding="same", activation=latent_activation, name="latent")(x)
    for i in reversed(range(depth)):
        if upsample == "transpose":
            x = _conv_block(x, widths[i], strides=2, transpose=True, name=f"dec{i}_up", **block)
        else:
            interpolation = "bilinear" if upsample == "bilinear" else "nearest"
            x = layers.UpSampling2D(interpolation=interpolation, name=f"dec{i}_up")(x)
        if skips:
            x = layers.Concatenate(name=f"dec{i}_skip")([x, skip_tensors[i]])
        if upsample == "transpose":  # the transposed conv is the level's first convolution
            n_convs = convs_per_level - 1
        else:  # level 0's last convolution is the output convolution
            n_convs = convs_per_level if i > 0 else convs_per_level - 1
        for j in range(n_convs):
            x = _conv_block(x, widths[i], strides=1, transpose=False, name=f"dec{i}_conv{j}", **block)
    if predict == "chroma":
        uv = layers.Conv2D(2, kernel_size, padding="same", activation="linear", name="output")(x)
        outputs = ChromaToRGB(name="chroma_to_rgb")([inputs, uv])
    else:
        outputs = layers.Conv2D(3, kernel_size, padding="same", activation=output_activation, name="output")(x)
    return keras.Model(inputs, outputs, name=name)


def build_from_config(
    config: ModelConfig, *, input_channels: int = 3,
    input_mean: Sequence[float] | None = None, input_std: Sequence[float] | None = None,
) -> keras.Model:  # fmt: skip
    """:func:`build_autoencoder` with the fields of a :class:`ModelConfig` as its arguments."""
    return build_autoencoder(
        depth=config.depth, filters=config.filters, filter_growth=config.filter_growth,
        latent_filters=config.latent_filters, kernel_size=config.kernel_size,
        convs_per_level=config.convs_per_level, activation=config.activation,
        latent_activation=config.latent_activation, output_activation=config.output_activation,
        downsample=config.downsample, upsample=config.upsample, batch_norm=config.batch_norm,
        predict=config.predict, skips=config.skips, input_channels=input_channels,
        input_mean=input_mean, input_std=input_std,
    )  # fmt: skip


def code_sizes(model: keras.Model) -> tuple[int, int]:
    """``(latent_values, bottleneck_values)`` of an autoencoder.

    ``latent_values`` is h × w × channels of the layer named ``latent``; ``bottleneck_values`` is
    the narrowest activation anywhere between input and output (the reference pools to 8×8×12 =
    768 values just before its 8×8×16 = 1,024-value latent). A fair code size is the smaller one.
    """
    latent = math.prod(model.get_layer("latent").output.shape[1:])
    inner = [
        math.prod(layer.output.shape[1:])
        for layer in model.layers[:-1]
        if not isinstance(layer, keras.layers.InputLayer) and layer.name != "standardize"
    ]
    return int(latent), int(min(inner))


def split_at_latent(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """(encoder, decoder) of a chain autoencoder, sharing its layers (and weights)."""
    latent = model.get_layer("latent")
    encoder = keras.Model(model.input, latent.output, name="encoder")
    code = keras.Input(latent.output.shape[1:], name="code")
    x = code
    after = False
    for layer in model.layers:
        if after:
            x = layer(x)
        after = after or layer is latent
    return encoder, keras.Model(code, x, name="decoder")

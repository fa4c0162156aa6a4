"""The linear-code family: PCA's form, with convolutions around it that learn what a linear code cannot.

    image → [encode_layers residual 3×3 convs] → Flatten → Dense(k) [the code, linear]
          → Dense(3,072) → Reshape 32×32×3 → [refine_layers residual 3×3 convs] → clip to [0, 1]

With no convolutions this *is* a linear code, and PCA is its optimum for MSE. Given the PCA
basis of the training split (``pca``), the two Dense layers are PCA's projection and
reconstruction, and every residual branch starts at zero (its last convolution's weights are
zero), so the untrained model reproduces PCA exactly: training starts from PCA's error. The PCA
layers are then kept fixed (not trainable): Adam moves every weight by about its learning rate per
step, and at the rates that train the convolutions that knocked a trainable PCA code at 832 values
from 38.8 to 36.5 dB validation PSNR in one epoch (32.7 dB with a warm-up; a 10× lower rate kept
it but trained the convolutions too slowly), while with the code fixed the same network improved
on PCA from its first epoch (measured on the full split). Without ``pca`` the code is learned.
The encoder's convolutions may reshape the image before it is projected (a nonlinear code); the
refinement predicts what the k components miss from what they kept (edges, texture), the part of
the signal a linear decoder must drop. Built from plain values and built-in Keras layers only, so
a saved model loads with ``keras.models.load_model`` without this package.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import layers

from cae.colour import chroma_to_rgb


def _residual(x: Any, n_layers: int, width: int, kernel_size: int, activation: str, name: str) -> Any:
    """``x`` plus ``n_layers`` convolutions of it; the branch's last convolution starts at zero."""
    if n_layers == 0:
        return x
    h = x
    for i in range(n_layers):
        h = layers.Conv2D(width, kernel_size, padding="same", activation=activation, name=f"{name}{i}")(h)
    h = layers.Conv2D(x.shape[-1], kernel_size, padding="same", kernel_initializer="zeros", name=f"{name}_out")(h)
    return layers.Add(name=f"{name}_add")([x, h])


def _drift(x: Any, units: int, scale: float, name: str) -> Any:
    """A linear map of ``x`` that starts at zero and trains at ``scale`` times the learning rate."""
    h = layers.Dense(units, use_bias=False, kernel_initializer="zeros", name=name)(x)
    return layers.Rescaling(scale, name=f"{name}_scale")(h)


def build_linear_code(
    *,
    code_values: int,
    encode_layers: int = 0,
    refine_layers: int = 0,
    width: int = 32,
    kernel_size: int = 3,
    activation: str = "relu",
    input_channels: int = 3,
    image_size: int = 32,
    input_mean: Sequence[float] | None = None,
    input_std: Sequence[float] | None = None,
    pca: tuple[np.ndarray, np.ndarray] | None = None,
    code_drift: float = 0.0,
    predict: str = "rgb",
    name: str = "cae",
) -> keras.Model:
    """A linear-code autoencoder (module docstring) with a ``code_values``-value code named ``latent``.

    ``pca`` = (mean, components): the training split's pixel mean (3,072,) and its principal axes as
    columns (3,072 × ≥ k), in [0, 1] pixel units; the projection starts there (standardised inputs
    are folded into it). ``input_mean`` / ``input_std``: per-channel input standardisation.
    ``code_drift`` > 0 (with ``pca``): the fixed PCA code and reconstruction each get a trainable
    correction that starts at zero and is scaled by ``code_drift``, so the code can move away from
    PCA at that fraction of the learning rate (Adam moves each weight by about the learning rate
    per step, which is what knocks a freely trainable PCA code off its optimum in one epoch).

    For colorization (``input_channels=1``, a BT.601 luma image) the same network is rebuilt from
    gray: its convolutions before the code, a code of the same size learned from gray (PCA's basis is
    RGB's), its refinement after; ``predict="chroma"`` then keeps the given luma and predicts U and V
    from the refined image (:func:`cae.colour.chroma_to_rgb`).
    """
    pixels = image_size * image_size * 3
    if not 1 <= code_values <= pixels:
        raise ValueError(f"build_linear_code: code_values must be 1..{pixels}, got {code_values}")
    if input_channels not in (1, 3) or (input_channels == 1 and pca is not None):
        raise ValueError("build_linear_code: RGB or 1-channel gray in; PCA's basis is for RGB in (input_channels=3)")
    if predict not in ("rgb", "chroma") or (predict == "chroma" and input_channels != 1):
        raise ValueError("build_linear_code: predict is rgb, or chroma from a 1-channel luma input")
    inputs = keras.Input((image_size, image_size, input_channels), name="image")
    x = inputs
    standardized = input_mean is not None and input_std is not None
    if standardized:
        x = layers.Normalization(mean=list(input_mean), variance=[s * s for s in input_std], name="standardize")(x)
    x = _residual(x, encode_layers, width, kernel_size, activation, "enc_res")
    if code_drift and pca is None:
        raise ValueError("build_linear_code: code_drift corrects PCA's fixed code: it needs pca")
    drifting = code_drift > 0
    # linear: PCA's coefficients have both signs; the code is the layer named `latent` either way
    project = layers.Dense(code_values, name="pca_code" if drifting else "latent")
    expand = layers.Dense(pixels, name="expand")
    flat = layers.Flatten(name="flatten")(x)
    code = project(flat)
    if drifting:
        code = layers.Add(name="latent")([code, _drift(flat, code_values, code_drift, "code_drift")])
    decoded = expand(code)
    if drifting:
        decoded = layers.Add(name="expand_add")([decoded, _drift(code, pixels, code_drift, "expand_drift")])
    y = layers.Reshape((image_size, image_size, 3), name="unflatten")(decoded)
    y = _residual(y, refine_layers, width, kernel_size, activation, "refine")
    if predict == "chroma":
        uv = layers.Conv2D(2, kernel_size, padding="same", name="chroma")(y)
        outputs = chroma_to_rgb(inputs, uv)
    else:
        outputs = layers.ReLU(max_value=1.0, name="output")(y)  # the clip PCA's reconstruction gets too
    model = keras.Model(inputs, outputs, name=name)
    if pca is not None:
        mean, components = (np.asarray(a, dtype=np.float64) for a in pca)
        axes = components[:, :code_values]
        if standardized:  # the Dense sees (x - μ)/σ per channel: x = z·σ + μ, folded into its weights
            sigma = np.tile(np.asarray(input_std, dtype=np.float64), pixels // 3)
            mu = np.tile(np.asarray(input_mean, dtype=np.float64), pixels // 3)
            kernel, bias = sigma[:, None] * axes, (mu - mean) @ axes
        else:
            kernel, bias = axes, -mean @ axes
        project.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
        expand.set_weights([axes.T.astype(np.float32), mean.astype(np.float32)])
        project.trainable = expand.trainable = False  # PCA's code, kept (module docstring)
    return model

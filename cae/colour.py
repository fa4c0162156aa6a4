"""Colour for colorization models: BT.601 chroma, quantised chroma classes, their loss and decoding.

The classification formulation follows Zhang et al., "Colorful Image Colorization" (ECCV 2016):
instead of regressing the mean chroma of everything a gray patch could be (sepia), the network
predicts a distribution over quantised chroma, trained with a class-rebalanced cross-entropy, and
is decoded by an *annealed mean* (the mean of the distribution sharpened by a temperature T:
T = 1 is the mean, T → 0 the mode). Chroma here is YUV's U and V (BT.601), as in the metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

# BT.601 YUV -> RGB, the inverse of tf.image.rgb_to_yuv (rows: Y, U, V contributions).
YUV_TO_RGB = np.array(
    [[1.0, 1.0, 1.0], [0.0, -0.394642334, 2.03206185], [1.13988303, -0.58062185, 0.0]], dtype=np.float32
)
RGB_TO_YUV = np.linalg.inv(YUV_TO_RGB).astype(np.float32)
BIN_STEP = 0.06  # chroma grid spacing; 209 in-gamut classes (Zhang et al. keep 313 on a finer a*b* grid)
U_GRID = np.arange(-0.45, 0.45 + 1e-9, BIN_STEP)  # U spans ±0.436 in BT.601
V_GRID = np.arange(-0.62, 0.62 + 1e-9, BIN_STEP)  # V spans ±0.615
DEFAULT_TEMPERATURE = 0.38  # the paper's choice; the colorization study sets it on validation instead


def _in_gamut(u: float, v: float) -> bool:
    lumas = np.linspace(0.0, 1.0, 101)
    rgb = np.stack([lumas, np.full_like(lumas, u), np.full_like(lumas, v)], axis=1) @ YUV_TO_RGB
    return bool(((rgb >= 0) & (rgb <= 1)).all(axis=1).any())


def _classes() -> tuple[np.ndarray, np.ndarray]:
    """(centres of the grid cells some luma turns into a valid RGB colour, grid cell -> nearest such class).

    Fixed by the colour space, not by data, so a model's number of classes never depends on the
    images it was trained on. The lookup table lets the loss find a pixel's classes by arithmetic
    on the regular grid instead of measuring its distance to every class.
    """
    grid = np.array([(u, v) for u in U_GRID for v in V_GRID], dtype=np.float32)
    bins = np.array([c for c in grid if _in_gamut(*c)], dtype=np.float32)
    nearest = np.argmin(((grid[:, None, :] - bins[None]) ** 2).sum(-1), axis=1).astype(np.int32)
    return bins, nearest


CHROMA_BINS, CELL_CLASS = _classes()


def rgb_to_uv(rgb: Any) -> Any:
    """U and V of RGB images in [0, 1] (NumPy or tensors), last axis 2."""
    return keras.ops.matmul(rgb, keras.ops.convert_to_tensor(RGB_TO_YUV[:, 1:]))


def _cells(uv: Any, ops: Any) -> tuple[Any, Any, Any, Any]:
    """Fractional grid coordinates of chroma ``uv`` (clipped to the grid), for NumPy or Keras ops."""
    fu = ops.clip((uv[..., 0] - U_GRID[0]) / BIN_STEP, 0.0, len(U_GRID) - 1.0)
    fv = ops.clip((uv[..., 1] - V_GRID[0]) / BIN_STEP, 0.0, len(V_GRID) - 1.0)
    iu = ops.minimum(ops.floor(fu), len(U_GRID) - 2.0)
    iv = ops.minimum(ops.floor(fv), len(V_GRID) - 2.0)
    return fu, fv, iu, iv


def nearest_class(uv: np.ndarray) -> np.ndarray:
    """The class of each chroma value (NumPy), through the grid's lookup table."""
    fu, fv, _, _ = _cells(uv, np)
    return CELL_CLASS[(np.round(fu) * len(V_GRID) + np.round(fv)).astype(np.int32)]


def chroma_prior(images: np.ndarray, max_images: int = 5000) -> np.ndarray:
    """Empirical frequency of each chroma class over (up to ``max_images``) uint8 training images."""
    uv = (images[:max_images].reshape(-1, 3).astype(np.float32) / 255.0) @ RGB_TO_YUV[:, 1:]
    counts = np.bincount(nearest_class(uv), minlength=len(CHROMA_BINS)).astype(np.float64)
    return counts / counts.sum()


def class_weights(prior: np.ndarray, rebalance: float) -> np.ndarray:
    """Zhang et al.'s rebalancing: 1 / (rebalance · p + (1 − rebalance) / Q), normalised to E_p[w] = 1."""
    weights = 1.0 / (rebalance * prior + (1.0 - rebalance) / len(prior))
    return (weights / (prior * weights).sum()).astype(np.float32)


@keras.saving.register_keras_serializable(package="cae")
class ChromaToRGB(keras.layers.Layer):
    """Combine the given luma with predicted chroma (U, V) into RGB (BT.601).

    Predicting only U and V keeps the output's luma exactly the input's: the network cannot spend
    capacity (or error) on brightness it was given.
    """

    def call(self, inputs: Sequence[Any]) -> Any:
        y, uv = inputs
        yuv = keras.ops.concatenate([y, keras.ops.cast(uv, y.dtype)], axis=-1)
        return keras.ops.matmul(yuv, keras.ops.convert_to_tensor(YUV_TO_RGB, dtype=y.dtype))


@keras.saving.register_keras_serializable(package="cae")
class AnnealedMean(keras.layers.Layer):
    """Chroma-class logits -> (U, V): the mean of softmax(logits / T) over the class centres.

    The temperature is part of the layer's config, so a saved model carries the one chosen for it.
    """

    def __init__(self, temperature: float = DEFAULT_TEMPERATURE, bins: Sequence[Sequence[float]] | None = None,
                 **kwargs: Any):  # fmt: skip
        super().__init__(**kwargs)
        self.temperature = float(temperature)
        self.bins = np.asarray(CHROMA_BINS if bins is None else bins, dtype=np.float32)

    def call(self, logits: Any) -> Any:
        probs = keras.ops.softmax(keras.ops.cast(logits, "float32") / self.temperature, axis=-1)
        return keras.ops.matmul(probs, keras.ops.convert_to_tensor(self.bins))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "temperature": self.temperature, "bins": self.bins.tolist()}


@keras.saving.register_keras_serializable(package="cae")
class UnitClip(keras.layers.Layer):
    """Clips to [0, 1]: luma plus predicted chroma can leave the RGB cube; saved colorizers never do."""

    def call(self, x: Any) -> Any:
        return keras.ops.clip(x, 0.0, 1.0)


def self_contained(model: keras.Model) -> keras.Model:
    """``model`` for saving: luma in [0, 1] -> RGB in [0, 1], decoding included, in built-in layers only.

    Training and scoring decode with this module's layers (:class:`AnnealedMean`, :class:`ChromaToRGB`,
    :class:`UnitClip`), which ``keras.models.load_model`` can rebuild only after ``import cae``. A saved
    colorizer is for anyone with Keras, so its decoding is rebuilt from their built-in equivalents,
    the same arithmetic on the same trained layers: Rescaling(1/T) + Softmax + a fixed Dense onto
    the class centres (the annealed mean), Concatenate + a fixed Dense (BT.601 YUV -> RGB), and
    ReLU(max_value=1) (the clip).
    """
    layers = {layer.name: layer for layer in model.layers}
    if "annealed_mean" in layers:
        mean = layers["annealed_mean"]
        uv = _fixed_dense(_softmax_at(mean.input, mean.temperature), mean.bins, "decode_mean")
        rgb = _yuv_to_rgb(model.input, uv)
    elif "chroma_to_rgb" in layers:
        rgb = _yuv_to_rgb(model.input, layers["chroma_to_rgb"].input[1])
    else:  # predicts RGB itself
        rgb = model.layers[-1].input if isinstance(model.layers[-1], UnitClip) else model.output
    clipped = keras.layers.ReLU(max_value=1.0, dtype="float32", name="clip_to_unit")(rgb)
    return keras.Model(model.input, clipped, name=model.name)


def _softmax_at(logits: Any, temperature: float) -> Any:
    scaled = keras.layers.Rescaling(1.0 / temperature, dtype="float32", name="decode_temperature")(logits)
    return keras.layers.Softmax(axis=-1, dtype="float32", name="decode_softmax")(scaled)


def _fixed_dense(x: Any, kernel: np.ndarray, name: str) -> Any:
    """``x @ kernel`` as a frozen bias-free Dense layer (saved with its weights, loaded by plain Keras)."""
    layer = keras.layers.Dense(kernel.shape[1], use_bias=False, trainable=False, dtype="float32", name=name)
    out = layer(x)
    layer.set_weights([np.asarray(kernel, dtype=np.float32)])
    return out


def _yuv_to_rgb(luma: Any, uv: Any) -> Any:
    yuv = keras.layers.Concatenate(axis=-1, dtype="float32", name="decode_yuv")([luma, uv])
    return _fixed_dense(yuv, YUV_TO_RGB, "decode_yuv_to_rgb")


def decoding_model(logits_model: keras.Model, temperature: float = DEFAULT_TEMPERATURE) -> keras.Model:
    """The self-contained colorizer of a classification network: luma in [0,1] -> RGB in [0,1].

    Shares the trained layers (and weights) of ``logits_model``; only decoding is added.
    """
    uv = AnnealedMean(temperature, name="annealed_mean")(logits_model.output)
    rgb = ChromaToRGB(name="chroma_to_rgb")([logits_model.input, uv])
    return keras.Model(logits_model.input, UnitClip(name="unit_clip")(rgb), name=logits_model.name)


def logits_model_of(model: keras.Model) -> keras.Model:
    """The class-logits network inside a decoding model (or the model itself)."""
    try:
        return keras.Model(model.input, model.get_layer("chroma_logits").output, name=model.name)
    except ValueError:
        return model


def classification_loss(weights: np.ndarray) -> Any:
    """Rebalanced cross-entropy between predicted class logits and the soft-encoded true chroma.

    ``y_true`` is the RGB target image (the pipeline's target for every model). Its chroma is
    soft-encoded bilinearly over the four surrounding grid cells (their classes; Zhang et al. use a
    Gaussian over the 5 nearest, which needs a distance to every class for every pixel), and each
    pixel is weighted by the rebalancing weight of its nearest class. Dense one-hot targets: on a
    CPU, 3× faster per step than gathering the four log-probabilities (measured).
    """
    table = keras.ops.convert_to_tensor(CELL_CLASS)
    w = keras.ops.convert_to_tensor(weights)
    nv, classes = len(V_GRID), len(CHROMA_BINS)

    def loss(y_true: Any, logits: Any) -> Any:
        ops = keras.ops
        fu, fv, iu, iv = _cells(rgb_to_uv(ops.cast(y_true, "float32")), ops)
        a, b = fu - iu, fv - iv
        target = 0.0
        for du, dv, share in ((0, 0, (1 - a) * (1 - b)), (1, 0, a * (1 - b)), (0, 1, (1 - a) * b), (1, 1, a * b)):
            cls = ops.take(table, ops.cast((iu + du) * nv + iv + dv, "int32"))
            target = target + ops.one_hot(cls, classes) * ops.expand_dims(share, -1)
        cross_entropy = -ops.sum(target * ops.log_softmax(ops.cast(logits, "float32"), axis=-1), axis=-1)
        nearest = ops.take(table, ops.cast(ops.round(fu) * nv + ops.round(fv), "int32"))
        return ops.mean(cross_entropy * ops.take(w, nearest))

    return loss

"""Colour for colorization models: BT.601 chroma, quantised chroma classes, their loss and decoding.

The classification formulation follows Zhang et al., "Colorful Image Colorization" (ECCV 2016):
instead of regressing the mean chroma of everything a gray patch could be (sepia), the network
predicts a distribution over quantised chroma, trained with a class-rebalanced cross-entropy, and
is decoded by an *annealed mean* (the mean of the distribution sharpened by a temperature T:
T = 1 is the mean, T → 0 the mode). Chroma here is YUV's U and V (BT.601), as in the metrics.
"""

from __future__ import annotations

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


# --------------------------------------------------------------------------------------------
# Decoding, in built-in Keras layers only: the one decoder that training, scoring and saving use,
# so a saved colorizer loads with plain ``keras.models.load_model`` (no ``import cae``).


def _fixed_dense(x: Any, kernel: np.ndarray, name: str) -> Any:
    """``x @ kernel`` as a frozen bias-free Dense layer (saved with its weights, loaded by plain Keras)."""
    layer = keras.layers.Dense(kernel.shape[1], use_bias=False, trainable=False, dtype="float32", name=name)
    out = layer(x)
    layer.set_weights([np.asarray(kernel, dtype=np.float32)])
    return out


def chroma_to_rgb(luma: Any, uv: Any, name: str = "decode") -> Any:
    """The given luma and predicted chroma (U, V) -> RGB (BT.601), clipped to [0, 1].

    Predicting only U and V keeps the output's luma exactly the input's: the network cannot spend
    capacity (or error) on brightness it was given. The clip is part of the model: luma plus chroma
    can leave the RGB cube, and a saved colorizer's output is always a valid image.
    """
    uv = keras.layers.Activation("linear", dtype="float32", name=f"{name}_uv")(uv)  # float32 under mixed precision
    yuv = keras.layers.Concatenate(axis=-1, dtype="float32", name=f"{name}_yuv")([luma, uv])
    rgb = _fixed_dense(yuv, YUV_TO_RGB, f"{name}_yuv_to_rgb")
    return keras.layers.ReLU(max_value=1.0, dtype="float32", name=f"{name}_clip")(rgb)


def annealed_mean(logits: Any, temperature: float, name: str = "decode") -> Any:
    """Chroma-class logits -> (U, V): the mean of softmax(logits / T) over the class centres.

    T = 1 is the distribution's mean, T -> 0 its mode (Zhang et al.); the temperature is a Rescaling
    layer's scale, so a saved model carries the one chosen for it.
    """
    scaled = keras.layers.Rescaling(1.0 / temperature, dtype="float32", name=f"{name}_temperature")(logits)
    probs = keras.layers.Softmax(axis=-1, dtype="float32", name=f"{name}_softmax")(scaled)
    return _fixed_dense(probs, CHROMA_BINS, f"{name}_mean")


def class_decoder(temperature: float, image_size: int = 32) -> keras.Model:
    """(luma, chroma-class logits) -> RGB at ``temperature``: the decoding of a classification colorizer.

    Scoring runs the logits network once and this small model per temperature; saving and the
    trained model use the same layers through :func:`decoding_model`.
    """
    luma = keras.Input((image_size, image_size, 1), name="luma")
    logits = keras.Input((image_size, image_size, len(CHROMA_BINS)), name="logits")
    return keras.Model([luma, logits], chroma_to_rgb(luma, annealed_mean(logits, temperature)), name="class_decoder")


def decoding_model(logits_model: keras.Model, temperature: float = DEFAULT_TEMPERATURE) -> keras.Model:
    """The self-contained colorizer of a classification network: luma in [0,1] -> RGB in [0,1].

    Shares the trained layers (and weights) of ``logits_model``; only decoding is added.
    """
    inputs = logits_model.inputs  # the luma first (a semantic oracle also takes its label)
    rgb = chroma_to_rgb(inputs[0], annealed_mean(logits_model.output, temperature))
    return keras.Model(inputs if len(inputs) > 1 else inputs[0], rgb, name=logits_model.name)


CLASS_LOGITS = "chroma_logits"  # the layer a classification colorizer's class logits come out of


def logits_network(model: keras.Model) -> keras.Model:
    """The class-logits network inside a classification colorizer (its ``chroma_logits`` layer)."""
    inputs = model.inputs if len(model.inputs) > 1 else model.inputs[0]
    return keras.Model(inputs, model.get_layer(CLASS_LOGITS).output, name=model.name)


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

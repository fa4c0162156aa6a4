"""How a colorizer is scored: PSNR/SSIM, colourfulness, the no-learning baselines, decoding choices.

Names follow the conventions: ``<split>_psnr``, ``<split>_ssim``, ``<split>_colourfulness`` (the
spread of the predicted chroma over the true chroma's, BT.601 U/V over all pixels),
``<split>_hasler_cf`` / ``true_hasler_cf`` (Hasler & Süsstrunk 2003, mean over images). The
colourfulness gap a study minimises is |1 − colourfulness|.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cae.colour import class_decoder, decoding_model, logits_network
from cae.data import Splits, luma, make_dataset, to_unit
from cae.metrics import (
    colourfulness_ratio,
    hasler_colourfulness,
    image_metrics,
    mse,
    per_class,
    per_class_mse,
    psnr_from_mse,
)
from cae.train import predict

# Annealed-mean temperatures tried on validation (Zhang et al. show 1 … 0; 0.38 is their choice).
TEMPERATURES = (1.0, 0.77, 0.58, 0.38, 0.29, 0.2, 0.14)
# Colourfulness below this: one colour for every pixel (a dead chroma head measures about 0.01; a
# healthy network is above 0.1 after its first epoch).
COLLAPSED = 0.02


def colour_scores(pred: np.ndarray, truth: np.ndarray, split: str = "test") -> dict[str, float]:
    """MSE, PSNR, SSIM, colourfulness ratio and Hasler–Süsstrunk colourfulness of predictions."""
    pred = np.clip(pred, 0.0, 1.0)
    return {
        **image_metrics(pred, truth, prefix=f"{split}_"),
        f"{split}_colourfulness": colourfulness_ratio(pred, truth),
        f"{split}_hasler_cf": float(hasler_colourfulness(pred).mean()),
        # The truth's colourfulness, beside it: `true_hasler_cf` on test (the conventions' name).
        "true_hasler_cf" if split == "test" else f"{split}_true_hasler_cf": float(hasler_colourfulness(truth).mean()),
    }


def per_class_colour(pred: np.ndarray, truth: np.ndarray, labels: np.ndarray) -> dict[str, dict[str, float]]:
    """Per class: Hasler–Süsstrunk colourfulness of predictions and truth, and the MSE."""
    return {
        "hasler_cf": per_class(hasler_colourfulness(pred), labels),
        "true_hasler_cf": per_class(hasler_colourfulness(truth), labels),
        "mse": per_class_mse(pred, truth, labels),
    }


def baselines(splits: Splits) -> dict[str, dict[str, float]]:
    """No-learning rows: gray copied into RGB; gray plus the training split's mean chroma."""
    import tensorflow as tf

    truth = to_unit(splits.x_test)
    gray = luma(truth)
    train_uv = tf.image.rgb_to_yuv(to_unit(splits.x_train[:10000])).numpy()[..., 1:].reshape(-1, 2).mean(axis=0)
    yuv = np.concatenate([gray, np.broadcast_to(train_uv, (*gray.shape[:-1], 2))], axis=-1)
    rows = {}
    for name, pred in (
        ("gray copied to RGB", np.repeat(gray, 3, axis=-1)),
        ("gray + mean training chroma", tf.image.yuv_to_rgb(yuv).numpy()),
    ):
        rows[name] = colour_scores(pred, truth)
    return rows


def saturate(rgb: np.ndarray, gain: float) -> np.ndarray:
    """Scale the chroma (U, V) of RGB images by ``gain``, keeping their luma; clipped to [0, 1]."""
    import tensorflow as tf

    yuv = tf.image.rgb_to_yuv(rgb).numpy()
    yuv[..., 1:] *= gain
    return np.clip(tf.image.yuv_to_rgb(yuv).numpy(), 0.0, 1.0)


def calibrate_gain(pred: np.ndarray, truth: np.ndarray, target: float) -> float:
    """The chroma gain that brings colourfulness to ``target`` on these (validation) images."""
    gain = target / max(colourfulness_ratio(pred, truth), 1e-6)
    # Clipping to [0, 1] eats a little of the gain: one correction step gets within ~1 %.
    return gain * target / max(colourfulness_ratio(saturate(pred, gain), truth), 1e-6)


def decode_at(
    model: Any,
    images: np.ndarray,
    input_transform: str,
    temperatures: Sequence[float],
    batch_size: int = 250,
    labels: np.ndarray | None = None,
) -> dict[float, np.ndarray]:
    """RGB predictions of a classification colorizer at each annealed-mean temperature.

    One forward pass of its logits network; then, per temperature, the same built-in-layer decoder
    that a saved model carries (:func:`cae.colour.class_decoder`), on those logits. ``labels``: a
    semantic oracle's second input.
    """
    logits_model = logits_network(model)
    decoders = {t: class_decoder(t) for t in temperatures}
    ds = make_dataset(
        images,
        batch_size,
        shuffle=False,
        seed=0,
        input_transform=input_transform,
        labels=labels,
        label_input=labels is not None,
    )
    out: dict[float, list[np.ndarray]] = {t: [] for t in temperatures}
    for x, _ in ds:
        logits = logits_model(x, training=False)
        gray = x["image"] if labels is not None else x
        for t, decoder in decoders.items():
            out[t].append(np.asarray(decoder([gray, logits], training=False), dtype=np.float32))
    return {t: np.concatenate(v) for t, v in out.items()}


def curve_point(temperature: float, pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    return {
        "temperature": temperature,
        "psnr": psnr_from_mse(mse(pred, truth)),
        "colourfulness": colourfulness_ratio(pred, truth),
    }


def vivid_enough(colourfulness: float, vivid: float) -> bool:
    """Within ``1 − vivid`` of the truth's colour spread (0.7 .. 1.43 for vivid = 0.7): neither dull nor
    over-saturated noise."""
    return abs(1.0 - colourfulness) <= 1.0 - vivid


def choose_temperature(curve: list[dict[str, float]], vivid: float) -> dict[str, float]:
    """The best PSNR among temperatures vivid enough, else the one closest to the truth's colour spread."""
    vivid_ones = [c for c in curve if vivid_enough(c["colourfulness"], vivid)]
    if vivid_ones:
        return max(vivid_ones, key=lambda c: c["psnr"])
    return min(curve, key=lambda c: abs(1.0 - c["colourfulness"]))


def predict_rgb(model: Any, images: np.ndarray, config: Any, labels: np.ndarray | None = None) -> np.ndarray:
    """RGB in [0, 1] from a colorizer (every colorizer the harness returns maps its input to RGB);
    ``labels`` are used only by a semantic oracle, whose second input is the true class."""
    given = labels if config.model.semantic_oracle else None
    return np.clip(predict(model, images, config.data.input, given), 0.0, 1.0)


def validation_scores(
    model: Any, config: Any, splits: Splits, vivid: float
) -> tuple[Any, dict[str, float], dict[str, Any]]:
    """(model to keep, ``val_*`` metrics, attrs) of a trained colorizer.

    A chroma-class model is decoded at the temperature chosen here, on validation (the best PSNR
    among temperatures reaching ``vivid`` colourfulness), and the returned model carries it.
    """
    truth = to_unit(splits.x_val)
    if config.train.loss != "classification":
        return model, colour_scores(predict_rgb(model, splits.x_val, config, splits.y_val), truth, split="val"), {}
    labels = splits.y_val if config.model.semantic_oracle else None
    decoded = decode_at(model, splits.x_val, config.data.input, TEMPERATURES, labels=labels)  # one pass for all T
    curve = [curve_point(t, pred, truth) for t, pred in decoded.items()]
    chosen = choose_temperature(curve, vivid)["temperature"]
    attrs = {"temperature": chosen, "temperature_curve": curve}
    return decoding_model(logits_network(model), chosen), colour_scores(decoded[chosen], truth, split="val"), attrs

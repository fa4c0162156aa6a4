"""Scores in [0, 1] pixel units, over a whole split (so they compare with the baselines).

``test_psnr`` is 10·log10(1 / MSE) of the split's overall MSE, not a mean of per-image PSNRs
(on CIFAR-10 the two differ by more than 3 dB).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cae.data import CLASSES


def psnr_from_mse(mse: float) -> float:
    return 10.0 * math.log10(1.0 / mse) if mse > 0 else float("inf")


def mse(pred: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean((pred.astype(np.float64) - target.astype(np.float64)) ** 2))


def ssim(pred: np.ndarray, target: np.ndarray, batch: int = 2000) -> float:
    """Mean SSIM (``tf.image.ssim``, 11×11 Gaussian window) over the images."""
    import tensorflow as tf

    def as_tensor(images: np.ndarray) -> Any:  # float32: tf.image.ssim refuses float64 against float32
        return tf.constant(images, tf.float32)

    values = [
        tf.image.ssim(as_tensor(pred[i : i + batch]), as_tensor(target[i : i + batch]), max_val=1.0)
        for i in range(0, len(pred), batch)
    ]
    return float(tf.reduce_mean(tf.concat(values, axis=0)))


def chroma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 U and V of RGB images in [0, 1] (``tf.image.rgb_to_yuv``)."""
    import tensorflow as tf

    return tf.image.rgb_to_yuv(tf.constant(rgb, dtype=tf.float32)).numpy()[..., 1:]


def colourfulness_ratio(pred: np.ndarray, target: np.ndarray) -> float:
    """Spread of the predicted chroma over that of the true chroma, over all pixels.

    1.0 = as colourful as the truth; a grey or sepia output (what MSE regression to the mean
    produces) scores near 0.
    """

    def spread(uv: np.ndarray) -> float:
        flat = uv.reshape(-1, 2).astype(np.float64)
        return float(np.sqrt(((flat - flat.mean(axis=0)) ** 2).sum(axis=1).mean()))

    return spread(chroma(pred)) / max(spread(chroma(target)), 1e-12)


def hasler_colourfulness(rgb: np.ndarray) -> np.ndarray:
    """Hasler & Süsstrunk (2003) colourfulness of each image (RGB in [0, 1], computed on 0–255).

    M = sqrt(σ_rg² + σ_yb²) + 0.3 · sqrt(μ_rg² + μ_yb²), with rg = R − G and yb = (R + G)/2 − B
    over the image's pixels: 0 for a gray image, about 20–60 for ordinary photos.
    """
    x = np.asarray(rgb, dtype=np.float64).reshape(len(rgb), -1, 3) * 255.0
    rg = x[..., 0] - x[..., 1]
    yb = 0.5 * (x[..., 0] + x[..., 1]) - x[..., 2]
    spread = np.sqrt(rg.std(axis=1) ** 2 + yb.std(axis=1) ** 2)
    mean = np.sqrt(rg.mean(axis=1) ** 2 + yb.mean(axis=1) ** 2)
    return spread + 0.3 * mean


def image_metrics(pred: np.ndarray, target: np.ndarray, prefix: str = "test_") -> dict[str, float]:
    """``{prefix}mse``, ``{prefix}psnr``, ``{prefix}ssim`` of predictions clipped to [0, 1]."""
    pred = np.clip(pred, 0.0, 1.0)
    m = mse(pred, target)
    return {f"{prefix}mse": m, f"{prefix}psnr": psnr_from_mse(m), f"{prefix}ssim": ssim(pred, target)}


def per_class_mse(pred: np.ndarray, target: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    err = ((np.clip(pred, 0, 1).astype(np.float64) - target) ** 2).reshape(len(pred), -1).mean(axis=1)
    return per_class(err, labels)


def per_class(values: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The mean of a per-image value within each class present."""
    return {CLASSES[c]: float(values[labels == c].mean()) for c in np.unique(labels)}

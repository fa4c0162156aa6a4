"""The no-learning codec an autoencoder must beat, and the latent quantised to 8 bits.

Baseline: PIL bicubic downsample to s×s, bicubic upsample back to 32×32. An s×s RGB thumbnail
holds 3·s² values, so it compares with an autoencoder whose code (the narrower of its latent and
its bottleneck) has as many values; between squares, PSNR is interpolated linearly in values.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from cae.metrics import mse, psnr_from_mse

SIDES = tuple(range(8, 27))  # 192 .. 2,028 values: the span of interesting CAE code sizes


@dataclass(frozen=True)
class BaselinePoint:
    side: int
    values: int
    mse: float
    psnr: float


def bicubic_thumbnail(images: np.ndarray, side: int) -> np.ndarray:
    """uint8 images -> bicubic side×side thumbnails (uint8) -> bicubic 32×32, float in [0, 1]."""
    size = images.shape[1:3][::-1]
    out = np.empty(images.shape, dtype=np.float32)
    for i, img in enumerate(images):
        small = Image.fromarray(img).resize((side, side), Image.BICUBIC)
        out[i] = np.asarray(small.resize(size, Image.BICUBIC), dtype=np.float32) / 255.0
    return out


def baseline_curve(images: np.ndarray, sides: Iterable[int] = SIDES) -> list[BaselinePoint]:
    target = images.astype(np.float32) / 255.0
    points = []
    for s in sides:
        m = mse(bicubic_thumbnail(images, s), target)
        points.append(BaselinePoint(s, 3 * s * s, m, psnr_from_mse(m)))
    return points


def baseline_psnr_at(values: float, curve: list[BaselinePoint]) -> float:
    """The thumbnail baseline's PSNR at a code size, linear in values between the squares."""
    xs = [p.values for p in curve]
    if not xs[0] <= values <= xs[-1]:
        raise ValueError(f"code size {values} is outside the baseline's range {xs[0]}..{xs[-1]} values")
    return float(np.interp(values, xs, [p.psnr for p in curve]))


def quantize_codes(codes: np.ndarray, low: np.ndarray, high: np.ndarray, bits: int = 8) -> np.ndarray:
    """Uniform per-channel quantisation of latent codes to ``bits`` bits, returned dequantised.

    ``low`` / ``high`` (per channel) come from the training split, never from the scored images.
    """
    levels = 2**bits - 1
    scale = np.where(high > low, high - low, 1.0)
    q = np.clip(np.round((codes - low) / scale * levels), 0, levels)
    return (q / levels * scale + low).astype(np.float32)


def quantized_metrics(model: Any, splits: Any, input_transform: str = "rgb", bits: int = 8) -> dict[str, float]:
    """Test scores with the latent stored as ``bits``-bit integers (per-channel range from train).

    This compares the autoencoder with a uint8 thumbnail at equal bytes, not just equal values.
    """
    from cae.data import make_dataset, to_unit
    from cae.metrics import image_metrics
    from cae.model import split_at_latent

    encoder, decoder = split_at_latent(model)

    def codes(images: np.ndarray) -> np.ndarray:
        ds = make_dataset(images, 500, shuffle=False, seed=0, input_transform=input_transform).map(lambda x, y: x)
        return np.asarray(encoder.predict(ds, verbose=0))

    calibration = codes(splits.x_train[:5000])
    axes = tuple(range(calibration.ndim - 1))
    low, high = calibration.min(axis=axes), calibration.max(axis=axes)
    decoded = np.asarray(
        decoder.predict(quantize_codes(codes(splits.x_test), low, high, bits), batch_size=500, verbose=0)
    )
    return image_metrics(decoded, to_unit(splits.x_test), prefix=f"test_q{bits}_")

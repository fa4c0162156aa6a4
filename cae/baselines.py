"""The codecs an autoencoder must beat, and the latent quantised to 8 bits.

Two baselines for a code of k values (k = the narrower of a model's latent and bottleneck):

- **PCA** (the headline): the mean and eigenvectors of the training split's pixel covariance
  (3,072 × 3,072, accumulated in float64), the first k components, reconstruction clipped to
  [0, 1] — the optimal *linear* code for MSE. With 8-bit coefficients, each component's range is
  taken from the training split. Fitted once per split and cached beside the decoded images
  (``runs/data-cache/pca/``, or under ``CAE_DATA_CACHE``): it depends on the data and the split only.
- **the thumbnail** (no learning at all): PIL bicubic downsample to s×s, bicubic upsample back to
  32×32. An s×s RGB thumbnail holds 3·s² values; between squares, PSNR is interpolated linearly
  in values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from cae.data import make_dataset, to_unit
from cae.metrics import image_metrics, mse, psnr_from_mse
from cae.sources import default_cache_dir, save_cache

SIDES = tuple(range(8, 27))  # 192 .. 2,028 values: the span of interesting CAE code sizes
# Code sizes the PCA curve of a figure is drawn at (any other size is computed exactly where needed).
PCA_VALUES = (64, 96, 128, 160, *range(192, 1025, 64), 1152, 1280, 1536, 1792, 2048)  # fmt: skip
_CHUNK = 4096  # images per float64 block: the covariance of 48,000 images never needs a 1.2 GB copy


@dataclass(frozen=True)
class BaselinePoint:
    side: int | None  # the thumbnail's side; None for PCA
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
    from cae.model import split_at_latent  # lazy: Keras; the PCA and thumbnail baselines need no TensorFlow

    encoder, decoder = split_at_latent(model)

    def codes(images: np.ndarray) -> np.ndarray:
        ds = make_dataset(images, 500, shuffle=False, seed=0, input_transform=input_transform).map(lambda x, y: x)
        return np.asarray(encoder.predict(ds, verbose=0))

    calibration = codes(splits.x_train)  # the whole training split, as PCA's 8-bit ranges are
    axes = tuple(range(calibration.ndim - 1))
    low, high = calibration.min(axis=axes), calibration.max(axis=axes)
    decoded = np.asarray(
        decoder.predict(quantize_codes(codes(splits.x_test), low, high, bits), batch_size=500, verbose=0)
    )
    return image_metrics(decoded, to_unit(splits.x_test), prefix=f"test_q{bits}_")


# --------------------------------------------------------------------------------------------
# PCA (the Karhunen–Loève transform of the training split)


@dataclass(frozen=True)
class PCABasis:
    """Mean, principal axes (columns, largest variance first) and 8-bit ranges of a training split."""

    mean: np.ndarray  # (3072,) float64, [0, 1] pixel units, H×W×C flattened
    components: np.ndarray  # (3072, 3072) float64, orthonormal columns
    variances: np.ndarray  # (3072,) eigenvalues, descending
    low: np.ndarray  # (3072,) each component's smallest coefficient over the training split
    high: np.ndarray  # (3072,) and its largest (the 8-bit code's range)
    key: str  # the split it was fitted on (see :func:`split_key`)

    def encode(self, images: np.ndarray, k: int) -> np.ndarray:
        """(n, k) float64 coefficients of uint8 (or [0, 1] float) images on the first ``k`` axes."""
        axes = self.components[:, :k]
        flat = images.reshape(len(images), -1)
        scale = 255.0 if images.dtype == np.uint8 else 1.0
        out = np.empty((len(flat), k))
        for i in range(0, len(flat), _CHUNK):
            out[i : i + _CHUNK] = (flat[i : i + _CHUNK].astype(np.float64) / scale - self.mean) @ axes
        return out

    def decode(self, coefficients: np.ndarray) -> np.ndarray:
        """Images in [0, 1] (float32, clipped) from (n, k) coefficients."""
        k = coefficients.shape[1]
        flat = coefficients @ self.components[:, :k].T + self.mean
        return np.clip(flat, 0.0, 1.0).astype(np.float32).reshape(len(coefficients), 32, 32, 3)

    def reconstruct(self, images: np.ndarray, k: int, bits: int | None = None) -> np.ndarray:
        """``images`` through the k-value PCA code; with ``bits``, coefficients stored as integers."""
        codes = self.encode(images, k)
        if bits is not None:
            codes = quantize_codes(codes, self.low[:k], self.high[:k], bits).astype(np.float64)
        return self.decode(codes)


def fit_pca(images: np.ndarray, key: str = "") -> PCABasis:
    """PCA of uint8 images: mean and covariance accumulated in float64 chunks, one eigendecomposition."""
    flat = images.reshape(len(images), -1)
    n, d = flat.shape
    total, scatter = np.zeros(d), np.zeros((d, d))
    for i in range(0, n, _CHUNK):
        block = flat[i : i + _CHUNK].astype(np.float64) / 255.0
        total += block.sum(axis=0)
        scatter += block.T @ block
    mean = total / n
    covariance = scatter / n - np.outer(mean, mean)
    variances, vectors = np.linalg.eigh(covariance)  # ascending: reversed below
    order = np.argsort(variances)[::-1]
    variances, vectors = np.maximum(variances[order], 0.0), vectors[:, order]
    low, high = np.full(d, np.inf), np.full(d, -np.inf)
    for i in range(0, n, _CHUNK):  # the 8-bit ranges: every training image's coefficients
        coefficients = (flat[i : i + _CHUNK].astype(np.float64) / 255.0 - mean) @ vectors
        low, high = np.minimum(low, coefficients.min(axis=0)), np.maximum(high, coefficients.max(axis=0))
    return PCABasis(mean, vectors, variances, low, high, key)


def split_key(splits: Any) -> str:
    """What identifies a training split: the data's digest, the seed and the split's sizes."""
    text = f"{splits.digest}/{splits.seed}/{'x'.join(map(str, splits.sizes))}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


BASIS_ARRAYS = ("mean", "components", "variances", "low", "high")  # what the cache file holds, with the key


def pca_basis(splits: Any) -> PCABasis:
    """The PCA of ``splits``' training images, fitted once and cached in ``<data cache>/pca/<split key>.npz``
    (:func:`cae.sources.default_cache_dir`), so a runs/ folder started afresh does not fit it again.

    A cache that is missing, damaged or from another split is (re)built: ~20 s for 48,000 images. A
    data cache that cannot be written (read-only, shared) costs a fit per process, not the run.
    """
    key = split_key(splits)
    path = default_cache_dir() / "pca" / f"{key}.npz"
    try:
        with np.load(path) as cached:
            basis = PCABasis(*(cached[f] for f in BASIS_ARRAYS), key=str(cached["key"]))
        if basis.key == key and basis.components.shape == (basis.mean.size, basis.mean.size):
            return basis
    except (OSError, ValueError, KeyError, EOFError):
        pass  # none yet, or a damaged file: fit it again
    basis = fit_pca(splits.x_train, key)
    save_cache(path, "PCA cache", **{f: getattr(basis, f) for f in BASIS_ARRAYS}, key=np.array(key))
    return basis


def pca_point(basis: PCABasis, images: np.ndarray, k: int, bits: int | None = None) -> BaselinePoint:
    """PCA at exactly ``k`` values on uint8 ``images`` (float or ``bits``-bit coefficients)."""
    m = mse(basis.reconstruct(images, k, bits), images.astype(np.float32) / 255.0)
    return BaselinePoint(None, int(k), m, psnr_from_mse(m))


def baseline_scores(splits: Any, code_values: int, split: str = "test") -> dict[str, float]:
    """PSNR of PCA (float and 8-bit coefficients) and of the thumbnail at ``code_values`` on a split.

    ``thumbnail_psnr`` is NaN outside the thumbnail's sizes (192..2,028 values).
    """
    images = getattr(splits, f"x_{split}")
    basis = pca_basis(splits)
    try:
        thumb = baseline_psnr_at(code_values, baseline_curve(images))
    except ValueError:
        thumb = float("nan")
    return {
        "pca_psnr": pca_point(basis, images, code_values).psnr,
        "pca_q8_psnr": pca_point(basis, images, code_values, bits=8).psnr,
        "thumbnail_psnr": thumb,
    }


@dataclass(frozen=True)
class BaselineTable:
    """Both baselines' PSNR on one set of images, at the code sizes a report needs (computed once).

    What a report's measuring step reads: plain numbers, so it needs no images, basis or model.
    """

    images: str  # what they were measured on: "test", "validation", "photo tiles"
    pca: dict[int, float]  # code size -> PCA's PSNR with float coefficients
    pca_q8: dict[int, float]  # the same with 8-bit coefficients (each component's training range)
    thumbnail: list[BaselinePoint]  # the thumbnail's curve (sizes 192..2,028)

    def thumb(self, values: int) -> float | None:
        """The thumbnail's PSNR at ``values`` (interpolated), None outside its sizes."""
        try:
            return baseline_psnr_at(values, self.thumbnail)
        except ValueError:
            return None


def baseline_table(basis: PCABasis, images: np.ndarray, sizes: Iterable[int], name: str) -> BaselineTable:
    """PCA (float and 8-bit) at each of ``sizes`` and the thumbnail curve, on uint8 ``images``."""
    sizes = sorted({int(k) for k in sizes if 1 <= k <= basis.mean.size})
    return BaselineTable(
        name,
        {k: pca_point(basis, images, k).psnr for k in sizes},
        {k: pca_point(basis, images, k, bits=8).psnr for k in sizes},
        baseline_curve(images),
    )

"""cae.metrics: scores in [0, 1] pixel units over a whole split; no training needed."""

import math

import numpy as np
import pytest

from cae.metrics import (
    colourfulness_ratio,
    hasler_colourfulness,
    image_metrics,
    mse,
    per_class,
    per_class_mse,
    psnr_from_mse,
)

RNG = np.random.default_rng(0)


def _images(n: int) -> np.ndarray:
    return RNG.random((n, 32, 32, 3)).astype(np.float32)


def test_psnr_of_an_mse():
    assert psnr_from_mse(0.01) == pytest.approx(20.0)
    assert psnr_from_mse(1.0) == 0.0
    assert psnr_from_mse(0.0) == math.inf  # a perfect reconstruction, not a ZeroDivisionError


def test_mse_is_computed_in_float64():
    target = np.full((1, 4, 4, 3), 0.5, np.float32)
    assert mse(target + np.float32(0.1), target) == pytest.approx(0.01, rel=1e-6)


def test_psnr_is_of_the_split_mse_not_a_mean_of_per_image_psnrs():
    target = np.full((2, 32, 32, 3), 0.5, np.float32)
    pred = target.copy()
    pred[0] += 0.1  # one poor image (20 dB) ...
    pred[1] += 0.001  # ... and one nearly perfect one (60 dB)
    scores = image_metrics(pred, target)
    split_mse = (0.1**2 + 0.001**2) / 2
    assert scores["test_mse"] == pytest.approx(split_mse, rel=1e-4)
    assert scores["test_psnr"] == pytest.approx(10 * math.log10(1 / split_mse), rel=1e-4)  # ≈ 23 dB
    assert abs(scores["test_psnr"] - (20 + 60) / 2) > 10  # the mean of per-image PSNRs would flatter


def test_image_metrics_clip_predictions_and_name_the_split():
    target = _images(2)
    pred = target + np.where(target > 0.5, 5.0, 0.0)  # a linear output far above white
    scores = image_metrics(pred, target, prefix="val_")
    assert set(scores) == {"val_mse", "val_psnr", "val_ssim"}
    assert scores["val_mse"] == pytest.approx(mse(np.clip(pred, 0, 1), target))  # scored as the image shown
    assert scores["val_mse"] < mse(pred, target) / 10
    perfect = image_metrics(target, target)
    assert perfect["test_mse"] == 0 and perfect["test_ssim"] == pytest.approx(1.0, abs=1e-6)
    assert 0 < scores["val_ssim"] < perfect["test_ssim"]


def test_hasler_colourfulness_of_a_gray_image_is_zero():
    ramp = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(1, 32, 32, 1)
    gray = np.repeat(ramp, 3, axis=-1)  # R = G = B, any brightness: no colour at all
    assert hasler_colourfulness(gray) == pytest.approx([0.0], abs=1e-9)


def test_hasler_colourfulness_matches_a_hand_computation():
    # Two pixels, pure red and pure blue (0–255): rg = R − G = (255, 0); yb = (R + G)/2 − B = (127.5, −255).
    # σ_rg = 127.5, σ_yb = 191.25 (population std); μ_rg = 127.5, μ_yb = −63.75.
    image = np.array([[[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]]])
    expected = math.sqrt(127.5**2 + 191.25**2) + 0.3 * math.sqrt(127.5**2 + 63.75**2)  # ≈ 272.62
    gray = np.full((1, 1, 2, 3), 0.4)
    np.testing.assert_allclose(hasler_colourfulness(np.concatenate([image, gray])), [expected, 0.0], atol=1e-9)


def test_colourfulness_ratio_is_the_spread_of_predicted_over_true_chroma():
    target = _images(3)
    y = target @ np.array([0.299, 0.587, 0.114], np.float32)
    half = y[..., None] + 0.5 * (target - y[..., None])  # halfway to gray: U and V halve, luma kept
    gray = np.repeat(y[..., None], 3, axis=-1)
    assert colourfulness_ratio(target, target) == pytest.approx(1.0, rel=1e-5)
    assert colourfulness_ratio(half, target) == pytest.approx(0.5, rel=1e-4)
    assert colourfulness_ratio(gray, target) == pytest.approx(0.0, abs=1e-3)  # sepia/gray regression scores ~0


def test_per_class_means_only_the_classes_present():
    values, labels = np.array([1.0, 3.0, 10.0]), np.array([0, 0, 9])
    assert per_class(values, labels) == {"airplane": 2.0, "truck": 10.0}
    target = np.zeros((2, 2, 2, 3))
    pred = np.stack([np.full((2, 2, 3), 0.1), np.full((2, 2, 3), 2.0)])  # the second clips to 1
    assert per_class_mse(pred, target, np.array([3, 5])) == pytest.approx({"cat": 0.01, "dog": 1.0})

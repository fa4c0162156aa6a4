"""cae.baselines: the bicubic-thumbnail baseline and the latent stored as few-bit integers."""

import numpy as np
import pytest
from PIL import Image

from cae.baselines import baseline_curve, baseline_psnr_at, bicubic_thumbnail, quantize_codes, quantized_metrics


@pytest.fixture(scope="module")
def images(sample_splits):
    return sample_splits.x_test[:40]


def test_thumbnail_baseline_matches_a_direct_pil_computation(images):
    side = 13
    expected = []
    for img in images:
        small = Image.fromarray(img).resize((side, side), Image.BICUBIC).resize((32, 32), Image.BICUBIC)
        expected.append(np.asarray(small, dtype=np.float64) / 255.0)
    direct = float(np.mean((np.stack(expected) - images / 255.0) ** 2))
    assert float(np.mean((bicubic_thumbnail(images, side) - images / 255.0) ** 2)) == pytest.approx(direct, rel=1e-6)
    curve = baseline_curve(images, sides=[13])
    assert curve[0].values == 507 and curve[0].mse == pytest.approx(direct, rel=1e-6)
    assert curve[0].psnr == pytest.approx(10 * np.log10(1 / direct))


def test_more_values_reconstruct_better_and_interpolation_is_linear_in_values(images):
    curve = baseline_curve(images, sides=[8, 16, 24])
    assert curve[0].psnr < curve[1].psnr < curve[2].psnr
    middle = (curve[0].values + curve[1].values) / 2
    assert baseline_psnr_at(middle, curve) == pytest.approx((curve[0].psnr + curve[1].psnr) / 2)
    assert baseline_psnr_at(768, curve) == pytest.approx(curve[1].psnr)
    with pytest.raises(ValueError, match="outside the baseline's range"):
        baseline_psnr_at(100, curve)


def test_8_bit_quantisation_error_is_bounded_by_half_a_step():
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(10, 8, 8, 4)).astype(np.float32)
    low, high = codes.min(axis=(0, 1, 2)), codes.max(axis=(0, 1, 2))
    q = quantize_codes(codes, low, high)
    step = (high - low) / 255
    assert np.all(np.abs(q - codes) <= step / 2 + 1e-6)
    assert len(np.unique(q[..., 0])) <= 256


def test_a_constant_channel_survives_quantisation():
    codes = np.zeros((3, 4, 4, 2), np.float32)
    codes[..., 0] = 0.7  # a dead unit: one value everywhere, no range to divide by
    codes[..., 1] = np.linspace(-1, 1, 48).reshape(3, 4, 4)
    low, high = codes.min(axis=(0, 1, 2)), codes.max(axis=(0, 1, 2))
    q = quantize_codes(codes, low, high)
    assert np.isfinite(q).all()
    np.testing.assert_allclose(q[..., 0], 0.7, atol=1e-6)


def test_a_thumbnail_as_large_as_the_image_loses_nothing(images):
    assert baseline_curve(images, sides=[32])[0].mse == 0.0


def test_quantised_latents_score_close_to_the_float_model_and_fewer_bits_cost_more(sample_splits):
    import keras

    from cae.metrics import image_metrics
    from cae.model import build_autoencoder
    from cae.train import predict

    keras.utils.set_random_seed(0)  # an untrained reference CAE: what matters is the code's rounding
    model = build_autoencoder()
    exact = image_metrics(predict(model, sample_splits.x_test), sample_splits.x_test / 255.0)["test_mse"]
    q8 = quantized_metrics(model, sample_splits)
    q2 = quantized_metrics(model, sample_splits, bits=2)
    assert set(q8) == {"test_q8_mse", "test_q8_psnr", "test_q8_ssim"}
    assert abs(q8["test_q8_mse"] - exact) < 0.01 * exact
    assert abs(q2["test_q2_mse"] - exact) > abs(q8["test_q8_mse"] - exact)


# --------------------------------------------------------------------------------------------
# PCA


@pytest.fixture(scope="module")
def basis(sample_splits):
    from cae.baselines import pca_basis

    return pca_basis(sample_splits)


def test_the_pca_basis_is_orthonormal_and_all_components_reconstruct_the_input(basis, images):
    assert basis.components.shape == (3072, 3072)
    np.testing.assert_allclose(basis.components.T @ basis.components, np.eye(3072), atol=1e-9)
    assert np.all(np.diff(basis.variances) <= 1e-12)  # largest variance first
    full = basis.reconstruct(images, 3072)
    np.testing.assert_allclose(full, images / 255.0, atol=1e-5)  # float32 output of float64 arithmetic


def test_pca_at_k_values_equals_a_hand_computed_projection():
    from cae.baselines import fit_pca, pca_point

    rng = np.random.default_rng(0)
    # A tiny synthetic set: 200 images whose pixels mix 5 random patterns, plus noise.
    patterns = rng.uniform(0, 1, size=(5, 3072))
    weights = rng.dirichlet(np.ones(5), size=200)
    images = np.clip(weights @ patterns + rng.normal(0, 0.02, (200, 3072)), 0, 1)
    images = np.round(images * 255).astype(np.uint8).reshape(200, 32, 32, 3)
    basis = fit_pca(images)
    x = images.reshape(200, -1).astype(np.float64) / 255.0
    mean = x.mean(axis=0)
    # The first k right singular vectors of the centred data span the same subspace as PCA's first k axes.
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    for k in (1, 3, 5):
        by_hand = np.clip((x - mean) @ vt[:k].T @ vt[:k] + mean, 0, 1)
        np.testing.assert_allclose(basis.reconstruct(images, k).reshape(200, -1), by_hand, atol=1e-5)
        assert pca_point(basis, images, k).mse == pytest.approx(float(np.mean((by_hand - x) ** 2)), rel=1e-4)


def test_8_bit_pca_codes_use_each_components_training_range(basis, sample_splits):
    from cae.baselines import pca_point

    codes = basis.encode(sample_splits.x_train, 64)
    np.testing.assert_allclose(codes.min(axis=0), basis.low[:64])
    np.testing.assert_allclose(codes.max(axis=0), basis.high[:64])
    test = sample_splits.x_test
    exact, q8 = pca_point(basis, test, 256), pca_point(basis, test, 256, bits=8)
    assert q8.psnr <= exact.psnr + 1e-9 and exact.psnr - q8.psnr < 0.5  # 8 bits cost a little
    assert pca_point(basis, test, 128).psnr < exact.psnr  # more values reconstruct better


def test_the_cached_basis_is_reused_and_rebuilt_when_the_split_changes(basis, sample_splits, tmp_path, monkeypatch):
    from cae.baselines import pca_basis, split_key
    from cae.data import load_splits

    monkeypatch.setenv("CAE_DATA_CACHE", str(tmp_path))  # this test's own cache: it damages a file in it
    path = tmp_path / "pca" / f"{split_key(sample_splits)}.npz"
    assert np.allclose(pca_basis(sample_splits).mean, basis.mean) and path.exists()
    stamp = path.stat().st_mtime_ns
    again = pca_basis(sample_splits)
    assert path.stat().st_mtime_ns == stamp and np.array_equal(again.components, basis.components)  # reused
    other = load_splits("sample", seed=1)  # another split of the same data: its own basis
    assert split_key(other) != split_key(sample_splits)
    rebuilt = pca_basis(other)
    assert rebuilt.key == split_key(other) and not np.allclose(rebuilt.mean, basis.mean)
    path.write_bytes(b"damaged")  # a damaged cache is fitted again, not fatal
    assert np.allclose(pca_basis(sample_splits).mean, basis.mean)


def test_a_data_cache_that_cannot_be_written_still_gives_the_basis(basis, sample_splits, tmp_path, monkeypatch, capsys):
    from cae.baselines import pca_basis

    (tmp_path / "file").write_text("")
    monkeypatch.setenv("CAE_DATA_CACHE", str(tmp_path / "file" / "cache"))  # unwritable, even as root
    assert np.allclose(pca_basis(sample_splits).mean, basis.mean)
    assert "note: could not write the PCA cache" in capsys.readouterr().err

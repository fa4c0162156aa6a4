"""cae.hybrid: the linear-code family starts at PCA exactly and is made of built-in Keras layers."""

import numpy as np
import pytest

from cae.baselines import pca_basis, pca_point
from cae.hybrid import build_linear_code


@pytest.fixture(scope="module")
def basis(sample_splits):
    return pca_basis(sample_splits)


def predict(model, images):
    return np.asarray(model.predict(images.astype(np.float32) / 255.0, batch_size=200, verbose=0), dtype=np.float64)


@pytest.mark.parametrize("layers", [(0, 0), (2, 3)])
def test_a_pca_initialised_model_scores_pcas_mse_before_training(basis, sample_splits, layers):
    encode, refine = layers
    model = build_linear_code(
        code_values=192, encode_layers=encode, refine_layers=refine, width=8, pca=(basis.mean, basis.components)
    )
    images = sample_splits.x_test
    mse = float(np.mean((predict(model, images) - images / 255.0) ** 2))
    assert mse == pytest.approx(pca_point(basis, images, 192).mse, abs=1e-6)


def test_standardised_inputs_are_folded_into_the_projection(basis, sample_splits):
    splits = sample_splits
    plain = build_linear_code(code_values=64, pca=(basis.mean, basis.components))
    standardized = build_linear_code(
        code_values=64, pca=(basis.mean, basis.components), input_mean=splits.mean, input_std=splits.std
    )
    images = splits.x_test[:50]
    np.testing.assert_allclose(predict(standardized, images), predict(plain, images), atol=1e-5)


def test_the_code_is_the_narrowest_layer_and_the_model_reloads_without_cae(tmp_path):
    import subprocess
    import sys

    from cae.model import code_sizes

    model = build_linear_code(code_values=100, encode_layers=1, refine_layers=1, width=4)
    assert code_sizes(model) == (100, 100)
    path = tmp_path / "linear.keras"
    model.save(path)
    x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.asarray(model.predict(x, verbose=0)))
    script = (
        "import sys, numpy as np, keras; m = keras.models.load_model(sys.argv[1]); "
        "x = np.load(sys.argv[2]); assert 'cae' not in sys.modules; "
        "print(float(np.abs(m.predict(x, verbose=0) - np.load(sys.argv[3])).max()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(path), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert float(out.stdout.strip().splitlines()[-1]) < 1e-6


def test_bad_values_are_refused():
    with pytest.raises(ValueError, match="code_values must be"):
        build_linear_code(code_values=0)
    with pytest.raises(ValueError, match="PCA's basis is for RGB in"):
        build_linear_code(code_values=10, input_channels=1, pca=(np.zeros(3072), np.eye(3072)))
    with pytest.raises(ValueError, match="chroma from a 1-channel luma input"):
        build_linear_code(code_values=10, predict="chroma")


def test_a_dense_code_rebuilt_for_gray_learns_its_code_and_keeps_the_given_luma_with_chroma():
    from cae.data import luma

    model = build_linear_code(
        code_values=64, input_channels=1, encode_layers=1, refine_layers=1, width=4, predict="chroma"
    )
    assert model.get_layer("latent").output.shape[-1] == 64 and model.get_layer("latent").trainable
    gray = np.random.default_rng(0).random((2, 32, 32, 1)).astype("float32")
    rgb = model.predict(gray, verbose=0)
    assert rgb.shape == (2, 32, 32, 3)
    inside = (rgb > 0.01).all(axis=-1) & (rgb < 0.99).all(axis=-1)  # where the clip left the colour alone
    np.testing.assert_allclose(luma(rgb)[inside], gray[inside], atol=1e-4)


def test_a_pca_code_is_kept_fixed_while_the_convolutions_train(basis, sample_splits):
    model = build_linear_code(
        code_values=64, encode_layers=1, refine_layers=1, width=4, pca=(basis.mean, basis.components)
    )
    before = [w.copy() for w in model.get_layer("latent").get_weights()]
    model.compile("adam", "mse")
    x = sample_splits.x_train[:64].astype(np.float32) / 255.0
    model.fit(x, x, epochs=1, batch_size=32, verbose=0)
    for was, now in zip(before, model.get_layer("latent").get_weights(), strict=True):
        np.testing.assert_array_equal(was, now)
    assert model.get_layer("refine0").trainable and not model.get_layer("expand").trainable

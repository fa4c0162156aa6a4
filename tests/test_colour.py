"""cae.colour: the one colour decoder (built-in Keras layers) equals the arithmetic it stands for."""

import numpy as np
import pytest

from cae.colour import CHROMA_BINS, YUV_TO_RGB, class_decoder, decoding_model, logits_network
from cae.model import build_autoencoder


def numpy_decode(luma: np.ndarray, logits: np.ndarray, temperature: float) -> np.ndarray:
    """The oracle: softmax(logits / T) @ class centres, with the luma, @ BT.601 YUV -> RGB, clipped."""
    z = logits.astype(np.float64) / temperature
    p = np.exp(z - z.max(axis=-1, keepdims=True))
    uv = (p / p.sum(axis=-1, keepdims=True)) @ CHROMA_BINS
    return np.clip(np.concatenate([luma, uv], axis=-1) @ YUV_TO_RGB, 0.0, 1.0)


@pytest.mark.parametrize("temperature", [1.0, 0.38, 0.14])
def test_the_class_decoder_equals_a_direct_numpy_computation(temperature):
    rng = np.random.default_rng(0)
    luma = rng.uniform(0, 1, (3, 32, 32, 1)).astype(np.float32)
    logits = rng.normal(0, 3, (3, 32, 32, len(CHROMA_BINS))).astype(np.float32)
    keras_rgb = np.asarray(class_decoder(temperature)([luma, logits]))
    np.testing.assert_allclose(keras_rgb, numpy_decode(luma, logits, temperature), atol=1e-5)


def test_trained_saved_and_scored_colorizers_decode_alike(tmp_path):
    """A classification network with random weights: its decoding model (what training returns and
    what is saved) and the scoring path (logits network + class decoder) agree with the oracle."""
    import keras

    keras.utils.set_random_seed(1)
    logits_model = build_autoencoder(input_channels=1, predict="chroma", chroma_classes=len(CHROMA_BINS))
    luma = np.random.default_rng(1).uniform(0, 1, (2, 32, 32, 1)).astype(np.float32)
    model = decoding_model(logits_model, 0.38)
    logits = np.asarray(logits_network(model)(luma))
    oracle = numpy_decode(luma, logits, 0.38)
    np.testing.assert_allclose(np.asarray(model(luma)), oracle, atol=1e-5)
    model.save(tmp_path / "colorizer.keras")
    reloaded = keras.models.load_model(tmp_path / "colorizer.keras", compile=False)
    np.testing.assert_allclose(np.asarray(reloaded(luma)), oracle, atol=1e-5)


def test_a_chroma_regression_keeps_the_given_luma_and_stays_in_the_rgb_cube():
    rng = np.random.default_rng(2)
    model = build_autoencoder(input_channels=1, predict="chroma")
    luma = rng.uniform(0.2, 0.8, (2, 32, 32, 1)).astype(np.float32)
    rgb = np.asarray(model(luma), dtype=np.float64)
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0
    unclipped = (rgb > 0) & (rgb < 1)
    got_luma = (rgb * np.array([0.299, 0.587, 0.114])).sum(axis=-1, keepdims=True)
    inside = unclipped.all(axis=-1, keepdims=True)
    np.testing.assert_allclose(got_luma[inside], luma[inside], atol=1e-5)  # where no channel was clipped


@pytest.mark.parametrize("trial", [0, 10])
def test_the_committed_colorizers_load_with_plain_keras_and_reproduce_their_scores(trial):
    """results/cae-search-colorize: saved before the decoder was unified; they still load without cae and
    score what their JSON says on the real test split."""
    import json
    from pathlib import Path

    import keras

    from cae.colorize.scoring import colour_scores
    from cae.data import load_splits, luma, to_unit

    from .conftest import shared_archive

    folder = Path(__file__).resolve().parent.parent / "results" / "cae-search-colorize"
    record = json.loads((folder / f"trial-{trial}.json").read_text())
    splits = load_splits(str(shared_archive()), record["config"]["seed"])
    model = keras.models.load_model(folder / f"trial-{trial}.keras", compile=False)
    assert {type(layer).__module__.split(".")[0] for layer in model.layers} == {"keras"}  # built-in layers only
    truth = to_unit(splits.x_test)
    pred = np.asarray(model.predict(luma(truth), batch_size=500, verbose=0))
    scores = colour_scores(pred, truth)
    assert scores["test_psnr"] == pytest.approx(record["test_psnr"], abs=1e-3)
    assert scores["test_colourfulness"] == pytest.approx(record["test_colourfulness"], abs=1e-3)

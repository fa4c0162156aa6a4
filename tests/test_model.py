import numpy as np
import pytest

from cae.config import ModelConfig
from cae.model import build_autoencoder, build_from_config, code_sizes, split_at_latent


def test_reference_has_4911_params_and_an_8x8x16_latent():
    model = build_from_config(ModelConfig())
    assert model.count_params() == 4911
    assert tuple(model.get_layer("latent").output.shape[1:]) == (8, 8, 16)
    assert tuple(model.output.shape[1:]) == (32, 32, 3)
    assert [layer.__class__.__name__ for layer in model.layers[1:]] == [
        "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Conv2D",
        "UpSampling2D", "Conv2D", "UpSampling2D", "Conv2D",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "latent", "bottleneck"),
    [
        ({}, 1024, 768),  # the reference: latent 8×8×16, pooled 8×8×12 before it
        ({"depth": 3, "filters": 16, "filter_growth": 2.0, "latent_filters": 8}, 128, 128),
        # the hand design: 32 → 32/2 → 64 → 64/2 → 16 (linear), transposed convs back
        (
            {
                "filters": 32,
                "filter_growth": 2.0,
                "convs_per_level": 2,
                "downsample": "stride",
                "upsample": "transpose",
                "latent_activation": "linear",
            },
            1024,
            1024,
        ),
        ({"depth": 1, "filters": 8, "latent_filters": 2}, 512, 512),
    ],
)
def test_code_sizes(kwargs, latent, bottleneck):
    assert code_sizes(build_autoencoder(**kwargs)) == (latent, bottleneck)


def test_hand_design_is_about_150k_params():
    model = build_autoencoder(
        filters=32,
        filter_growth=2.0,
        convs_per_level=2,
        downsample="stride",
        upsample="transpose",
        latent_activation="linear",
    )
    assert model.count_params() == 149_587  # measured for that design in the table (150k)


@pytest.mark.parametrize(
    "options",
    [
        {"batch_norm": True},
        {"upsample": "bilinear"},
        {"downsample": "avgpool"},
        {"kernel_size": 5},
        {"activation": "gelu"},
        {"depth": 5, "filters": 4},
    ],
)
def test_variants_build_and_keep_shapes(options):
    model = build_autoencoder(**options)
    assert tuple(model.output.shape[1:]) == (32, 32, 3)


def test_standardisation_layer_is_inside_the_model():
    model = build_autoencoder(input_mean=[0.5, 0.5, 0.5], input_std=[0.25, 0.25, 0.25])
    layer = model.get_layer("standardize")
    out = layer(np.array([[[[0.5, 0.75, 0.25]]]], dtype="float32"))
    np.testing.assert_allclose(np.asarray(out)[0, 0, 0], [0.0, 1.0, -1.0], atol=1e-6)
    assert model.count_params() == 4911  # fixed statistics are constants, not parameters
    assert code_sizes(model) == (1024, 768)


def test_chroma_model_keeps_the_input_luma():
    model = build_autoencoder(input_channels=1, predict="chroma")
    gray = np.random.default_rng(0).random((4, 32, 32, 1)).astype("float32")
    rgb = model.predict(gray, verbose=0)
    assert rgb.shape == (4, 32, 32, 3)
    y = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    np.testing.assert_allclose(y, gray[..., 0], atol=1e-4)


def test_split_at_latent_reproduces_the_autoencoder():
    model = build_autoencoder(batch_norm=True)
    encoder, decoder = split_at_latent(model)
    x = np.random.default_rng(1).random((3, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        decoder.predict(encoder.predict(x, verbose=0), verbose=0), model.predict(x, verbose=0), atol=1e-5
    )


def test_skips_connect_each_encoder_level_to_its_decoder_level():
    plain = build_autoencoder(input_channels=1, predict="chroma")
    unet = build_autoencoder(input_channels=1, predict="chroma", skips=True)
    assert [layer.name for layer in unet.layers if layer.name.endswith("_skip")] == ["dec1_skip", "dec0_skip"]
    assert unet.count_params() > plain.count_params()
    strided = build_autoencoder(input_channels=1, skips=True, downsample="stride", convs_per_level=2)
    assert tuple(strided.output.shape[1:]) == (32, 32, 3)


def test_skips_are_refused_for_reconstruction():
    from cae.config import ExperimentConfig
    from cae.errors import CAEError
    from cae.schema import with_overrides

    with pytest.raises(CAEError, match=r"model\.skips bypasses the bottleneck"):
        with_overrides(ExperimentConfig(), {"model.skips": True})
    assert with_overrides(ExperimentConfig(), {"model.skips": True, "data.input": "luma"}).model.skips

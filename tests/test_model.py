"""cae.model: the CAE built from plain values (ModelConfig's fields), its code sizes and its halves."""

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
        "Conv2D",
        "MaxPooling2D",
        "Conv2D",
        "MaxPooling2D",
        "Conv2D",
        "UpSampling2D",
        "Conv2D",
        "UpSampling2D",
        "Conv2D",
    ]


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


def _types(model) -> set[str]:
    return {layer.__class__.__name__ for layer in model.layers}


@pytest.mark.parametrize(
    ("options", "check"),
    [
        (
            {"batch_norm": True},
            lambda m: "BatchNormalization" in _types(m) and not m.get_layer("enc0_conv0").use_bias,
        ),
        ({"upsample": "bilinear"}, lambda m: m.get_layer("dec0_up").interpolation == "bilinear"),
        (
            {"downsample": "avgpool"},
            lambda m: "AveragePooling2D" in _types(m) and "MaxPooling2D" not in _types(m),
        ),
        (
            {"downsample": "stride"},
            lambda m: m.get_layer("enc0_conv0").strides == (2, 2) and "MaxPooling2D" not in _types(m),
        ),
        ({"kernel_size": 5}, lambda m: m.get_layer("latent").kernel_size == (5, 5)),
        ({"activation": "gelu"}, lambda m: m.get_layer("enc1_conv0").activation.__name__ == "gelu"),
        ({"depth": 5, "filters": 4}, lambda m: tuple(m.get_layer("latent").output.shape[1:]) == (1, 1, 16)),
    ],
    ids=["batch_norm", "bilinear", "avgpool", "stride", "kernel_size", "activation", "depth 5"],
)
def test_each_option_changes_the_model_and_keeps_its_shapes(options, check):
    model = build_autoencoder(**options)
    assert tuple(model.output.shape[1:]) == (32, 32, 3)
    assert check(model), options


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"downsample": "maxpol"}, "build_autoencoder: model.downsample must be one of 'maxpool', 'avgpool', 'stride'"),
        ({"upsample": "nearest"}, "build_autoencoder: model.upsample must be one of 'upsampling'"),
        ({"dpth": 3}, "unexpected keyword argument 'dpth'"),
        ({"depth": 6}, "model.depth=6 would shrink the 32×32 image below 1×1"),
    ],
    ids=["unknown downsample", "unknown upsample", "unknown field", "too deep"],
)
def test_unknown_fields_and_modes_are_a_value_error(kwargs, message):
    # Before, an unknown mode silently built a model without pooling.
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        build_autoencoder(**kwargs)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("budget", [256, 700, 1024])
def test_code_budget_keeps_the_latent_within_it_at_every_depth(depth, budget):
    latent, _ = code_sizes(build_autoencoder(depth=depth, code_budget=budget, latent_filters=64))
    side2 = (32 // 2**depth) ** 2
    assert latent <= budget
    assert latent == budget // side2 * side2  # the most whole channels that fit, not fewer


def test_a_budget_below_one_channel_gets_one_channel():
    # depth 1 leaves 16×16: one channel is 256 values, the smallest latent this depth can have.
    assert code_sizes(build_autoencoder(depth=1, code_budget=64))[0] == 256


def test_width_multiplier_widens_every_level_and_keeps_the_latent():
    wide = build_autoencoder(width_multiplier=2.0)
    assert [wide.get_layer(n).filters for n in ("enc0_conv0", "enc1_conv0", "dec1_conv0")] == [16, 24, 24]
    assert tuple(wide.get_layer("latent").output.shape[1:]) == (8, 8, 16)
    assert wide.count_params() > 4911


def test_standardisation_layer_is_inside_the_model():
    model = build_autoencoder(input_mean=[0.5, 0.5, 0.5], input_std=[0.25, 0.25, 0.25])
    layer = model.get_layer("standardize")
    out = layer(np.array([[[[0.5, 0.75, 0.25]]]], dtype="float32"))
    np.testing.assert_allclose(np.asarray(out)[0, 0, 0], [0.0, 1.0, -1.0], atol=1e-6)
    assert model.count_params() == 4911  # fixed statistics are constants, not parameters
    assert code_sizes(model) == (1024, 768)


def test_chroma_model_keeps_the_input_luma():
    model = build_autoencoder(input_channels=1, predict="chroma")
    gray = np.random.default_rng(0).uniform(0.3, 0.7, (4, 32, 32, 1)).astype("float32")
    rgb = model.predict(gray, verbose=0)
    assert rgb.shape == (4, 32, 32, 3) and rgb.min() >= 0 and rgb.max() <= 1  # the decoder clips to the RGB cube
    y = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    inside = ((rgb > 0) & (rgb < 1)).all(axis=-1)  # where no channel was clipped, the luma is the input's
    assert inside.mean() > 0.2
    np.testing.assert_allclose(y[inside], gray[..., 0][inside], atol=1e-4)


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

    with pytest.raises(CAEError, match=r"model\.skips and model\.semantic bypass the bottleneck"):
        with_overrides(ExperimentConfig(), {"model.skips": True})
    assert with_overrides(ExperimentConfig(), {"model.skips": True, "data.input": "luma"}).model.skips

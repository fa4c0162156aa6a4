"""cae.data: the seeded 80/10/10 split, subsets inside it, pixel transforms and the tf.data pipelines.

Where the images come from (formats, cache, bad files) is tests/test_sources.py.
"""

import numpy as np
import pytest

from cae.data import TRANSFORMS, load_splits, luma, make_dataset, make_labelled_dataset, split
from cae.errors import CAEError
from cae.sources import Dataset

from .conftest import shared_archive

RNG = np.random.default_rng(0)


def _images(n: int) -> np.ndarray:
    return RNG.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


def _dataset(n: int) -> Dataset:
    return Dataset(_images(n), (np.arange(n) % 10).astype(np.uint8), "path", "x", "d")


def test_split_is_80_10_10_disjoint_and_deterministic():
    ds = _dataset(1000)
    a, b, c = split(ds, seed=7), split(ds, seed=7), split(ds, seed=8)
    assert a.sizes == (800, 100, 100)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert not np.array_equal(a.x_train, c.x_train)
    keys = [set(map(bytes, x)) for x in (a.x_train, a.x_val, a.x_test)]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])


def test_subset_stays_inside_the_split_and_is_stratified():
    ds = _dataset(2000)
    full, sub = split(ds, seed=3), split(ds, seed=3, subset=400)
    assert sub.sizes == (400, 50, 50)
    assert np.bincount(sub.y_train).tolist() == [40] * 10
    for part, whole in ((sub.x_train, full.x_train), (sub.x_val, full.x_val), (sub.x_test, full.x_test)):
        assert set(map(bytes, part)) <= set(map(bytes, whole))
    with pytest.raises(CAEError, match="SUBSET=5000 is larger than the 1600 training images"):
        split(ds, seed=3, subset=5000)


def test_normalisation_statistics_come_from_train_only():
    ds = _dataset(1000)
    s = split(ds, seed=1)
    expected = s.x_train.reshape(-1, 3).mean(axis=0) / 255
    np.testing.assert_allclose(s.mean, expected, rtol=1e-6)
    everything = ds.images.reshape(-1, 3).mean(axis=0) / 255
    assert not np.allclose(s.mean, everything, rtol=1e-7, atol=0)


def test_luma_is_bt601():
    rgb = np.array([[[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0]]]], dtype=np.float32)
    np.testing.assert_allclose(luma(rgb)[..., 0], [[[0.299, 0.587, 0.114, 1.0]]], rtol=1e-6)


def test_pipeline_yields_unit_range_input_target_pairs():
    images = _images(10)
    x, y = next(iter(make_dataset(images, 4, shuffle=False, seed=0, input_transform="luma")))
    assert x.shape == (4, 32, 32, 1) and y.shape == (4, 32, 32, 3)
    np.testing.assert_allclose(y.numpy(), images[:4] / 255.0, atol=1e-6)


@pytest.mark.slow  # decodes and splits all 60,000 real images
def test_the_real_archive_splits_48k_6k_6k_and_subsets_stay_balanced():
    # Read from the session's shared cache (test_sources decoded it), whatever CAE_RUNS_DIR is.
    full = load_splits(str(shared_archive()), seed=42)
    assert full.sizes == (48000, 6000, 6000) and full.data_source == "path"
    sub = load_splits(str(shared_archive()), seed=42, subset=800)
    assert sub.sizes == (800, 100, 100) and np.bincount(sub.y_train).tolist() == [80] * 10
    assert sub.describe()["derived.data_file"] == shared_archive().name  # a file name, not a machine's path


def test_mean_transform_is_the_plain_channel_average_not_luma():
    rgb = np.array([[[[1.0, 0.0, 0.0]]]], dtype=np.float32)
    assert TRANSFORMS["mean"](rgb)[0, 0, 0, 0] == pytest.approx(1 / 3)
    assert luma(rgb)[0, 0, 0, 0] == pytest.approx(0.299)


def test_describe_puts_data_facts_in_the_derived_namespace():
    s = split(_dataset(1000), seed=1, subset=80)
    described = s.describe()
    assert all(k.startswith("derived.") for k in described)  # never mistaken for config keys
    assert (described["derived.n_train"], described["derived.n_val"], described["derived.n_test"]) == (80, 10, 10)


def test_labelled_pipeline_keeps_each_image_with_its_label():
    images, labels = _images(6), np.arange(6, dtype=np.uint8)
    x, y = next(iter(make_labelled_dataset(images, labels, 6, shuffle=True, seed=0)))
    for image, label in zip(x.numpy(), y.numpy(), strict=True):  # shuffled, but pairs stay together
        np.testing.assert_allclose(image, images[label] / 255.0, atol=1e-6)

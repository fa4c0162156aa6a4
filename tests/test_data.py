import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cae.data import CLASSES, Dataset, load_cifar10, luma, make_dataset, split
from cae.errors import CAEError

from .conftest import shared_archive

RNG = np.random.default_rng(0)


def _images(n: int) -> np.ndarray:
    return RNG.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


def write_batches(root: Path, per_batch: int = 20) -> tuple[Path, np.ndarray]:
    """The official python format: cifar-10-batches-py/{data_batch_1..5,test_batch}."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    all_images = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images = _images(per_batch)
        all_images.append(images)
        data = images.transpose(0, 3, 1, 2).reshape(per_batch, -1)
        labels = [i % 10 for i in range(per_batch)]
        (folder / name).write_bytes(pickle.dumps({b"data": data, b"labels": labels}))
    return folder, np.concatenate(all_images)


def write_class_tree(root: Path, per_class: int = 3, fmt: str = "PNG") -> Path:
    for split_name in ("train", "test"):
        for cls in CLASSES:
            d = root / split_name / cls
            d.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(_images(1)[0]).save(d / f"{i:04d}.{fmt.lower()}", fmt)
    return root


def tar_of(folder: Path, target: Path) -> Path:
    with tarfile.open(target, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return target


def test_batches_folder_and_official_tarball_load_identically(tmp_path):
    folder, images = write_batches(tmp_path / "src")
    from_dir = load_cifar10(str(folder), cache_dir=tmp_path / "cache")
    from_parent = load_cifar10(str(tmp_path / "src"), cache_dir=tmp_path / "cache")
    from_tar = load_cifar10(str(tar_of(folder, tmp_path / "cifar-10-python.tar.gz")), cache_dir=tmp_path / "cache")
    for ds in (from_dir, from_parent, from_tar):
        assert ds.images.shape == (120, 32, 32, 3) and ds.images.dtype == np.uint8
        np.testing.assert_array_equal(ds.images, images)  # channel order and pixel layout kept
        assert ds.labels[:10].tolist() == list(range(10))
        assert ds.data_source == "path"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_class_folder_tree_and_its_tarball(tmp_path, fmt):
    root = write_class_tree(tmp_path / "cifar10-images", fmt=fmt)
    ds = load_cifar10(str(root), cache_dir=tmp_path / "cache")
    assert ds.images.shape == (60, 32, 32, 3)
    assert np.bincount(ds.labels).tolist() == [6] * 10
    ds_tar = load_cifar10(str(tar_of(root, tmp_path / "imgs.tar.gz")), cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(ds.images, ds_tar.images)
    np.testing.assert_array_equal(ds.labels, ds_tar.labels)


def test_decoded_arrays_are_cached_by_content(tmp_path):
    root = write_class_tree(tmp_path / "imgs")
    cache = tmp_path / "cache"
    first = load_cifar10(str(root), cache_dir=cache)
    files = list(cache.glob("*.npz"))
    assert len(files) == 1 and first.digest in files[0].name
    second = load_cifar10(str(root), cache_dir=cache)
    np.testing.assert_array_equal(first.images, second.images)
    # Changing the source changes the key: a new cache entry, not a stale hit.
    Image.fromarray(_images(1)[0]).save(root / "train" / "cat" / "extra.png")
    third = load_cifar10(str(root), cache_dir=cache)
    assert len(third.images) == 61 and len(list(cache.glob("*.npz"))) == 2


def test_bundled_sample_is_real_and_small():
    from cae.sources import SAMPLE_PATH

    assert SAMPLE_PATH.stat().st_size < 2_000_000
    ds = load_cifar10("sample")
    assert ds.images.shape == (2000, 32, 32, 3) and ds.data_source == "sample"
    assert np.bincount(ds.labels).tolist() == [200] * 10
    assert 80 < ds.images.mean() < 160  # natural images, not noise or blanks
    assert ds.images.std() > 40


def test_fallback_to_sample_warns_loudly(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "nokeras"))
    ds = load_cifar10(None, cache_dir=tmp_path / "cache")
    assert ds.data_source == "sample"
    assert "Falling back to the bundled SAMPLE" in capsys.readouterr().err


def test_keras_cache_is_found(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    write_batches(tmp_path / "keras" / "datasets" / "cifar-10-batches-py-target")
    ds = load_cifar10(None, cache_dir=tmp_path / "cache")
    assert ds.data_source == "keras" and len(ds.images) == 120


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


def test_the_real_archive_gives_60000_images_split_48k_6k_6k():
    ds = load_cifar10(str(shared_archive()))
    assert ds.images.shape == (60000, 32, 32, 3)
    assert np.bincount(ds.labels).tolist() == [6000] * 10
    assert split(ds, seed=42).sizes == (48000, 6000, 6000)


# ---- bad input: one line naming the file, nothing cached -------------------------------------


def _expect(tmp_path: Path, source: Path | str, message: str) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(CAEError) as err:
        load_cifar10(str(source), cache_dir=cache)
    assert message in str(err.value), str(err.value)
    assert "\n" not in str(err.value)
    assert not list(cache.glob("*.npz"))


def test_missing_path(tmp_path):
    _expect(tmp_path, tmp_path / "nope", "does not exist; supply CIFAR-10 with DATA=")


def test_truncated_tarball(tmp_path):
    good = tar_of(write_class_tree(tmp_path / "imgs"), tmp_path / "imgs.tar.gz")
    bad = tmp_path / "truncated.tar.gz"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    _expect(tmp_path, bad, "truncated.tar.gz: archive is truncated or corrupt")


def test_wrong_image_size(tmp_path):
    root = write_class_tree(tmp_path / "imgs")
    Image.new("RGB", (64, 48)).save(root / "train" / "dog" / "big.png")
    _expect(tmp_path, root, "train/dog/big.png: expected a 32×32 image, got 64×48")


def test_unreadable_image(tmp_path):
    root = write_class_tree(tmp_path / "imgs")
    (root / "test" / "cat" / "broken.png").write_bytes(b"not a png")
    _expect(tmp_path, root, "test/cat/broken.png: unreadable image")


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    _expect(tmp_path, tmp_path / "empty", "no images found; expected {train,test}/<class>/*.png|jpg")


def test_unknown_class_folder_layout(tmp_path):
    (tmp_path / "flat" / "train" / "spaceship").mkdir(parents=True)
    Image.fromarray(_images(1)[0]).save(tmp_path / "flat" / "train" / "spaceship" / "a.png")
    _expect(tmp_path, tmp_path / "flat", "is not in a CIFAR-10 class folder")


def test_incomplete_batches_folder(tmp_path):
    folder, _ = write_batches(tmp_path / "src")
    (folder / "data_batch_3").unlink()
    _expect(tmp_path, folder, "cifar-10-batches-py is incomplete, missing data_batch_3")


def test_not_a_dataset_file(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    _expect(tmp_path, tmp_path / "notes.txt", "not a CIFAR-10 source")


def test_corrupt_pickle_batch(tmp_path):
    folder, _ = write_batches(tmp_path / "src")
    (folder / "test_batch").write_bytes(io.BytesIO(b"garbage").getvalue())
    _expect(tmp_path, folder, "test_batch: not a CIFAR-10 python batch")

"""cae.sources: finding CIFAR-10, decoding every format it comes in, and the content-keyed cache."""

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cae.sources as sources
from cae.errors import CAEError
from cae.sources import CLASSES, load_cifar10

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


@pytest.fixture
def fresh_memory(monkeypatch):
    """No dataset held in memory, so a load goes to the cache file (or the source) again."""
    monkeypatch.setattr(sources, "_LOADED", {})


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


def test_decoded_arrays_are_cached_by_content(tmp_path, fresh_memory, monkeypatch):
    root = write_class_tree(tmp_path / "imgs")
    cache = tmp_path / "cache"
    first = load_cifar10(str(root), cache_dir=cache)
    files = list(cache.glob("*.npz"))
    assert len(files) == 1 and first.digest in files[0].name
    # The second load must come from the file: decoding is made impossible and memory emptied.
    monkeypatch.setattr(sources, "_LOADED", {})
    with monkeypatch.context() as m:
        m.setattr(sources, "decode", lambda path: pytest.fail("decoded again despite the cache"))
        second = load_cifar10(str(root), cache_dir=cache)
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.labels, second.labels)
    # Changing the source changes the key: a new cache entry, not a stale hit.
    Image.fromarray(_images(1)[0]).save(root / "train" / "cat" / "extra.png")
    third = load_cifar10(str(root), cache_dir=cache)
    assert len(third.images) == 61 and len(list(cache.glob("*.npz"))) == 2


def test_the_default_cache_folder_is_cae_data_cache(tmp_path, fresh_memory, monkeypatch):
    """Tests and users with another runs/ folder still share one decode (CAE_DATA_CACHE)."""
    monkeypatch.setenv("CAE_DATA_CACHE", str(tmp_path / "shared-cache"))
    monkeypatch.setenv("CAE_RUNS_DIR", str(tmp_path / "runs"))
    ds = load_cifar10(str(write_class_tree(tmp_path / "imgs")))
    assert [p.name for p in (tmp_path / "shared-cache").iterdir()] == [f"cifar10-{ds.digest}.npz"]
    assert not (tmp_path / "runs").exists()
    monkeypatch.delenv("CAE_DATA_CACHE")
    assert sources.default_cache_dir() == tmp_path / "runs" / "data-cache"


def _truncate(cache: Path) -> None:
    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])  # a write cut off (disk full, kill)


def _wrong_shape(cache: Path) -> None:
    np.savez(cache, images=np.zeros((4, 32, 32), np.uint8), labels=np.zeros(4, np.uint8))  # hand-made


def _labels_out_of_range(cache: Path) -> None:
    np.savez(cache, images=np.zeros((60, 32, 32, 3), np.uint8), labels=np.full(60, 12, np.uint8))


@pytest.mark.parametrize("damage", [_truncate, _wrong_shape, _labels_out_of_range])
def test_a_damaged_cache_is_rebuilt_with_a_note(tmp_path, fresh_memory, monkeypatch, capsys, damage):
    root = write_class_tree(tmp_path / "imgs")
    cache_dir = tmp_path / "cache"
    original = load_cifar10(str(root), cache_dir=cache_dir)
    (cache,) = cache_dir.glob("*.npz")
    damage(cache)
    monkeypatch.setattr(sources, "_LOADED", {})
    capsys.readouterr()
    rebuilt = load_cifar10(str(root), cache_dir=cache_dir)
    np.testing.assert_array_equal(rebuilt.images, original.images)
    np.testing.assert_array_equal(rebuilt.labels, original.labels)
    note = capsys.readouterr().err.strip()
    assert note.startswith(f"note: {cache} is damaged (") and note.endswith(f"; rebuilding it from {root}")
    assert "\n" not in note
    images, labels = sources.read_cache(cache)  # the rewritten file is whole again
    assert images.shape == (60, 32, 32, 3) and len(labels) == 60


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


def test_the_real_archive_gives_60000_labelled_images():
    # Default cache folder: the session's CAE_DATA_CACHE, so test_data's use of it decodes nothing.
    ds = load_cifar10(str(shared_archive()))
    assert ds.images.shape == (60000, 32, 32, 3) and ds.data_source == "path"
    assert np.bincount(ds.labels).tolist() == [6000] * 10
    assert (sources.default_cache_dir() / f"cifar10-{ds.digest}.npz").exists()


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


# ---- decoded data validated: dtype, labels, every class present and readable -------------------


def _rewrite_batch(folder: Path, name: str, key: bytes, value) -> None:
    batch = pickle.loads((folder / name).read_bytes(), encoding="bytes")
    (folder / name).write_bytes(pickle.dumps({**batch, key: value}))


def test_float_pixels_in_a_batch_are_refused_not_turned_into_black_images(tmp_path):
    folder, _ = write_batches(tmp_path / "src")
    batch = pickle.loads((folder / "data_batch_2").read_bytes(), encoding="bytes")
    _rewrite_batch(folder, "data_batch_2", b"data", batch[b"data"] / 255.0)  # pixels in [0, 1]
    _expect(tmp_path, folder, "data_batch_2: pixels are float64, expected uint8 values 0-255")


@pytest.mark.parametrize(("labels", "message"), [
    ([10] * 20, "labels must be class indices 0-9, got 10..10"),
    ([-1] + [i % 10 for i in range(19)], "labels must be class indices 0-9, got -1..9"),
    ([0.5] * 20, "labels must be class indices 0-9, got float64"),
    ([1] * 20, "test_batch: no images of class airplane, bird, cat"),
])  # fmt: skip
def test_labels_of_a_batch_are_class_indices_of_every_class(tmp_path, labels, message):
    folder, _ = write_batches(tmp_path / "src")
    _rewrite_batch(folder, "test_batch", b"labels", labels)
    _expect(tmp_path, folder, message)


def test_a_linked_class_folder_is_read_not_skipped(tmp_path):
    root = write_class_tree(tmp_path / "imgs")
    (root / "train" / "cat").rename(tmp_path / "cats-elsewhere")
    (root / "train" / "cat").symlink_to(tmp_path / "cats-elsewhere", target_is_directory=True)
    ds = load_cifar10(str(root), cache_dir=tmp_path / "cache")
    assert len(ds.images) == 60 and np.bincount(ds.labels).tolist() == [6] * 10


def test_a_broken_link_in_a_class_folder_is_named(tmp_path):
    root = write_class_tree(tmp_path / "imgs")
    (root / "train" / "dog" / "0009.png").symlink_to(tmp_path / "unmounted" / "0009.png")
    _expect(tmp_path, root, "train/dog/0009.png: a broken link (its target ")


def test_a_class_folder_read_only_in_part_is_refused(tmp_path):
    root = write_class_tree(tmp_path / "imgs")
    for name in ("0001.png", "0002.png"):
        (root / "train" / "cat" / name).unlink()
    _expect(tmp_path, root, "imgs/train: class cat has 1 images, others up to 3; a class folder read only in part?")


def test_a_missing_class_folder_is_refused(tmp_path):
    root = write_class_tree(tmp_path / "imgs")
    for f in (root / "test" / "ship").iterdir():
        f.unlink()
    _expect(tmp_path, root, "imgs/test: no images of class ship; CIFAR-10 has all 10 classes")

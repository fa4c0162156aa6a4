"""cae.sources: finding CIFAR-10, decoding every format it comes in, and the content-keyed cache."""

import contextlib
import io
import os
import pickle
import shlex
import signal
import tarfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cae.formats as formats
import cae.sources as sources
from cae.errors import CAEError
from cae.formats import BATCH_FILE, IMAGE_FILE
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
        # Pickle protocol 2, as the official files were written.
        (folder / name).write_bytes(pickle.dumps({b"data": data, b"labels": labels}, protocol=2))
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


def test_nested_lists_are_refused_before_they_become_an_array(tmp_path):
    """Lists that share their items pickle in a few bytes and expand to 2**40 labels as an array."""
    folder, _ = write_batches(tmp_path / "src")
    nested: list = [0]
    for _ in range(40):
        nested = [nested, nested]
    _rewrite_batch(folder, "data_batch_4", b"labels", nested)
    _expect(tmp_path, folder, "data_batch_4: labels must be a list of class indices 0-9")
    _rewrite_batch(folder, "data_batch_4", b"labels", list(range(10)) * 2)
    _rewrite_batch(folder, "data_batch_5", b"data", nested)
    _expect(tmp_path, folder, "data_batch_5: data is a list, expected an N×3072 uint8 array")


# ---- untrusted files: a pickle runs nothing, only regular files of bounded size are read ----------


class _Payload:
    """Pickles as a shell command that creates ``target``, run by whoever unpickles it."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.target))}",)


@pytest.mark.parametrize("packed", [False, True], ids=["folder", "tar.gz"])
def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path, packed):
    folder, _ = write_batches(tmp_path / "src")
    payload = pickle.dumps({b"data": _Payload(tmp_path / "pwned"), b"labels": [0]}, protocol=2)
    pickle.loads(payload)  # the payload is real: plain pickle runs it
    assert (tmp_path / "pwned").exists()
    (tmp_path / "pwned").unlink()
    (folder / "data_batch_1").write_bytes(payload)
    source = tar_of(folder, tmp_path / "cifar-10-python.tar.gz") if packed else folder
    with pytest.raises(CAEError) as err:
        load_cifar10(str(source), cache_dir=tmp_path / "cache")
    message = str(err.value)
    assert message.startswith(f"{source}/data_batch_1: refused, the pickle calls {os.system.__module__}.system; ")
    assert "\n" not in message
    assert not (tmp_path / "pwned").exists()


def _tar_with(target: Path, extra: tarfile.TarInfo, data: bytes | None = None) -> Path:
    """A class-folder archive with one more member, written as given."""
    root = write_class_tree(target.parent / "imgs")
    with tarfile.open(target, "w:gz", compresslevel=1) as tar:
        tar.add(root, arcname="imgs")
        tar.addfile(extra, io.BytesIO(data) if data is not None else None)
    return target


def _member(name: str, kind: bytes, **fields) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    for key, value in fields.items():
        setattr(info, key, value)
    return info


@pytest.mark.parametrize(
    ("kind", "fields", "what"),
    [(tarfile.SYMTYPE, {"linkname": "/etc/passwd"}, "a symbolic link"),
     (tarfile.LNKTYPE, {"linkname": "imgs/train/cat/0000.png"}, "a hard link"),
     (tarfile.FIFOTYPE, {}, "a FIFO (named pipe)"),
     (tarfile.CHRTYPE, {"devmajor": 1, "devminor": 5}, "a character device")],
    ids=["symlink", "hardlink", "fifo", "device"],
)  # fmt: skip
def test_an_archive_member_that_is_not_a_regular_file_is_refused(tmp_path, kind, fields, what):
    archive = _tar_with(tmp_path / "imgs.tar.gz", _member("imgs/train/cat/9999.png", kind, **fields))
    _expect(tmp_path, archive, f"imgs.tar.gz/imgs/train/cat/9999.png: {what}; only regular files and folders")


def test_an_archive_member_too_large_for_an_image_is_refused_unread(tmp_path):
    size = IMAGE_FILE.limit + 1
    archive = _tar_with(tmp_path / "imgs.tar.gz", _member("imgs/train/cat/big.png", tarfile.REGTYPE, size=size),
                        bytes(size))  # fmt: skip
    _expect(tmp_path, archive, f"imgs/train/cat/big.png: {size:,} bytes, more than the {IMAGE_FILE.limit:,} allowed")


def test_a_batch_member_too_large_is_refused_before_it_is_read(tmp_path):
    folder, _ = write_batches(tmp_path / "src")
    size = BATCH_FILE.limit + 1  # zeros: a few hundred KB compressed
    (folder / "data_batch_2").write_bytes(bytes(size))
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        tar.add(folder, arcname=folder.name)
    (folder / "data_batch_2").unlink()
    assert archive.stat().st_size < 2_000_000
    tracemalloc.start()
    try:
        _expect(tmp_path, archive, f"data_batch_2: {size:,} bytes, more than the {BATCH_FILE.limit:,} allowed")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < size // 4  # the member was never read into memory


@pytest.mark.parametrize(("name", "bound"), [("data_batch_3", BATCH_FILE), ("train/dog/0001.png", IMAGE_FILE)])
def test_a_file_too_large_in_a_folder_is_refused_before_it_is_read(tmp_path, name, bound):
    folder = write_batches(tmp_path / "src")[0] if name.startswith("data") else write_class_tree(tmp_path / "src")
    with (folder / name).open("r+b") as fh:
        fh.truncate(2 << 30)  # 2 GiB, sparse: nothing of it is on disk
    _expect(tmp_path, folder, f"{name}: 2,147,483,648 bytes, more than the {bound.limit:,} allowed for ")


@contextlib.contextmanager
def _deadline(seconds: int):
    """Fails the test instead of hanging it forever (opening a FIFO waits for a writer)."""

    def expired(signum, frame):
        raise TimeoutError(f"still waiting after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_a_fifo_in_a_class_folder_is_refused_unopened(tmp_path):
    root = write_class_tree(tmp_path / "imgs")
    os.mkfifo(root / "train" / "cat" / "0005.png")
    with _deadline(30):
        _expect(tmp_path, root, "train/cat/0005.png: a FIFO (named pipe), not a regular file; a data folder holds ")


def test_a_fifo_as_a_batch_or_as_the_source_is_refused_unopened(tmp_path):
    folder, _ = write_batches(tmp_path / "src")
    (folder / "test_batch").unlink()
    os.mkfifo(folder / "test_batch")
    os.mkfifo(tmp_path / "data.tar.gz")
    with _deadline(30):
        _expect(tmp_path, folder, "test_batch: a FIFO (named pipe), not a regular file; a data folder holds ")
        with pytest.raises(CAEError) as err:
            formats.decode(folder)  # the decoder on its own, without the listing that the cache key makes
        assert "test_batch: a FIFO (named pipe), not a regular file; expected a CIFAR-10 python" in str(err.value)
        _expect(tmp_path, tmp_path / "data.tar.gz", "data.tar.gz: a FIFO (named pipe); supply CIFAR-10 with DATA=")


def test_16_bit_pngs_train_as_their_colours_not_white(tmp_path):
    root = write_class_tree(tmp_path / "imgs")
    gray = RNG.integers(0, 65536, size=(32, 32)).astype(np.uint16)
    Image.fromarray(gray).save(root / "train" / "cat" / "0000.png")  # a 16-bit gray PNG (mode I;16)
    ds = load_cifar10(str(root), cache_dir=tmp_path / "cache")
    cat = CLASSES.index("cat")
    first_cat = ds.images[int(np.flatnonzero(ds.labels == cat)[3])]  # test/cat has 3, then train/cat/0000.png
    np.testing.assert_array_equal(first_cat[..., 0], np.round(gray / 257).astype(np.uint8))
    assert (first_cat == 255).mean() < 0.01

"""CIFAR-10's on-disk formats, decoded to one uint8 array: the official python pickles
(``cifar-10-batches-py``, as a folder or ``cifar-10-python.tar.gz``) and class-folder image trees
``[root/]{train,test}/<class>/<image>`` (as a folder or a ``.tar.gz``). Train and test are merged.
"""

from __future__ import annotations

import io
import pickle
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from cae.errors import CAEError

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGE_SHAPE = (32, 32, 3)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def decode(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if path.is_dir():
        if (path / "data_batch_1").exists():
            return _from_batches(((f.name, f.read_bytes) for f in sorted(path.iterdir())), str(path))
        inner = path / "cifar-10-batches-py"
        if (inner / "data_batch_1").exists():
            return decode(inner)
        return _from_image_files(
            ((str(f.relative_to(path)), f.read_bytes) for f in path.rglob("*") if f.is_file()), str(path)
        )
    if tarfile.is_tarfile(path) or path.name.endswith((".tar.gz", ".tgz", ".tar")):
        return _decode_tar(path)
    raise CAEError(
        f"{path}: not a CIFAR-10 source; expected a cifar-10-batches-py folder, cifar-10-python.tar.gz, "
        "or a {train,test}/<class>/*.png|jpg folder or .tar.gz"
    )


def _decode_tar(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with tarfile.open(path, "r:*") as tar:
            members = [m for m in tar.getmembers() if m.isfile()]

            def reader(m: tarfile.TarInfo) -> Callable[[], bytes]:
                def read() -> bytes:
                    fh = tar.extractfile(m)
                    assert fh is not None  # regular files always have a stream
                    return fh.read()

                return read

            if any(Path(m.name).name == "data_batch_1" for m in members):
                return _from_batches(((Path(m.name).name, reader(m)) for m in members), str(path))
            return _from_image_files(((m.name, reader(m)) for m in members), str(path))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise CAEError(f"{path}: archive is truncated or corrupt ({type(err).__name__}: {err})") from None


def _from_batches(files: Iterable[tuple[str, Callable[[], bytes]]], where: str) -> tuple[np.ndarray, np.ndarray]:
    """The official python pickles: data_batch_1..5 then test_batch, each 10,000×3072 uint8."""
    wanted = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    found = {name: read for name, read in files if name in wanted}
    missing = [w for w in wanted if w not in found]
    if missing:
        raise CAEError(f"{where}: cifar-10-batches-py is incomplete, missing {', '.join(missing)}")
    images, labels = [], []
    for name in wanted:
        try:
            batch = pickle.loads(found[name](), encoding="bytes")
            data = np.asarray(batch[b"data"], dtype=np.uint8)
            lab = np.asarray(batch[b"labels"], dtype=np.uint8)
        except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as err:
            raise CAEError(f"{where}/{name}: not a CIFAR-10 python batch ({type(err).__name__})") from None
        if data.ndim != 2 or data.shape[1] != 3072 or len(lab) != len(data):
            raise CAEError(f"{where}/{name}: expected N×3072 uint8 images and N labels, got {data.shape}")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(lab)
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def _class_index(name: str) -> int | None:
    name = name.lower()
    if name in CLASSES:
        return CLASSES.index(name)
    if name.isdigit() and int(name) < len(CLASSES):
        return int(name)
    return None


def _from_image_files(files: Iterator[tuple[str, Callable[[], bytes]]], where: str) -> tuple[np.ndarray, np.ndarray]:
    """A class-folder tree: ``[root/]{train,test}/<class>/<image>``; train and test merged."""
    from PIL import Image, UnidentifiedImageError

    entries = []
    for name, read in files:
        p = Path(name)
        if p.suffix.lower() not in IMAGE_SUFFIXES or p.name.startswith("."):
            continue
        label = _class_index(p.parent.name)
        if label is None:
            raise CAEError(
                f"{where}: image {name} is not in a CIFAR-10 class folder; expected "
                f"{{train,test}}/<class>/<image> with <class> one of {', '.join(CLASSES)} (or 0-9)"
            )
        entries.append((tuple(p.parts[:-2]), p.parent.name, p.name, label, read, name))
    if not entries:
        raise CAEError(
            f"{where}: no images found; expected {{train,test}}/<class>/*.png|jpg, "
            "a cifar-10-batches-py folder or cifar-10-python.tar.gz"
        )
    entries.sort(key=lambda e: (e[0], e[1], e[2]))  # a fixed order whatever the listing order
    images = np.empty((len(entries), *IMAGE_SHAPE), dtype=np.uint8)
    labels = np.empty(len(entries), dtype=np.uint8)
    for i, (_, _, _, label, read, name) in enumerate(entries):
        try:
            with Image.open(io.BytesIO(read())) as im:
                if im.size != IMAGE_SHAPE[:2]:
                    raise CAEError(f"{where}/{name}: expected a 32×32 image, got {im.size[0]}×{im.size[1]}")
                images[i] = np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            raise CAEError(f"{where}/{name}: unreadable image ({type(err).__name__})") from None
        labels[i] = label
    return images, labels

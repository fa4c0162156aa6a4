"""CIFAR-10's on-disk formats, decoded to one uint8 array: the official python pickles
(``cifar-10-batches-py``, as a folder or ``cifar-10-python.tar.gz``) and class-folder image trees
``[root/]{train,test}/<class>/<image>`` (as a folder or a ``.tar.gz``). Train and test are merged.
"""

from __future__ import annotations

import io
import os
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
        return _from_image_files(((str(f.relative_to(path)), f.read_bytes) for f in tree_files(path)), str(path))
    if tarfile.is_tarfile(path) or path.name.endswith((".tar.gz", ".tgz", ".tar")):
        return _decode_tar(path)
    raise CAEError(
        f"{path}: not a CIFAR-10 source; expected a cifar-10-batches-py folder, cifar-10-python.tar.gz, "
        "or a {train,test}/<class>/*.png|jpg folder or .tar.gz"
    )


def tree_files(root: Path) -> list[Path]:
    """Every file under ``root`` in a fixed order, following links to folders (a class folder is often one).

    ``Path.rglob`` skips what it cannot read: a linked class folder, a folder without read permission
    and a broken link all vanished without a word, and a study trained on the rest. Here a folder
    that cannot be listed and a broken link are one-line errors naming them.
    """
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()

    def unreadable(err: OSError) -> None:
        raise CAEError(f"{err.filename}: cannot read this folder ({err.strerror or err}); fix its permissions")

    for folder, dirs, files in os.walk(root, followlinks=True, onerror=unreadable):
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in seen:  # a link back up the tree: walked once already
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs.sort()
        for name in sorted(files):
            f = Path(folder) / name
            if f.is_symlink() and not f.exists():
                raise CAEError(f"{f}: a broken link (its target {os.readlink(f)} does not exist)")
            found.append(f)
    return found


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
            # As stored, not converted: np.uint8(0.7) is 0, so float pixels would train as black images.
            data, lab = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
        except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as err:
            raise CAEError(f"{where}/{name}: not a CIFAR-10 python batch ({type(err).__name__})") from None
        if data.dtype != np.uint8:
            raise CAEError(f"{where}/{name}: pixels are {data.dtype}, expected uint8 values 0-255 (the official "
                           "format)")  # fmt: skip
        if data.ndim != 2 or data.shape[1] != 3072 or lab.shape != (len(data),):
            raise CAEError(f"{where}/{name}: expected N×3072 uint8 images and N labels, got {data.shape} and "
                           f"{lab.shape}")  # fmt: skip
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(_checked_labels(lab, f"{where}/{name}"))
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def _checked_labels(labels: np.ndarray, where: str) -> np.ndarray:
    """``labels`` as uint8 class indices, refused unless they are integers 0-9 (a cast would wrap 300 to 44)."""
    if not np.issubdtype(labels.dtype, np.integer) or (len(labels) and (labels.min() < 0 or labels.max() >= 10)):
        shown = f"{labels.dtype}" if not np.issubdtype(labels.dtype, np.integer) else f"{labels.min()}..{labels.max()}"
        raise CAEError(f"{where}: labels must be class indices 0-9, got {shown}")
    labels = labels.astype(np.uint8)
    check_classes(labels, where)
    return labels


def check_classes(labels: np.ndarray, where: str) -> None:
    """Every class present, none with less than half the images of the largest (CIFAR-10 is balanced:
    a class folder read in part, or a batch of the wrong dataset, shows here)."""
    counts = np.bincount(labels, minlength=len(CLASSES))
    missing = [CLASSES[c] for c in np.flatnonzero(counts == 0)]
    if missing:
        raise CAEError(f"{where}: no images of class {', '.join(missing)}; CIFAR-10 has all 10 classes")
    low = int(np.argmin(counts))
    if counts[low] * 2 < counts.max():
        raise CAEError(f"{where}: class {CLASSES[low]} has {counts[low]} images, others up to {counts.max()}; "
                       "a class folder read only in part?")  # fmt: skip


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
    # After the images (a damaged file is the more precise message), each split on its own: train and
    # test must both be complete.
    for split_name in sorted({e[0] for e in entries}):
        check_classes(labels[[e[0] == split_name for e in entries]], "/".join((where, *split_name)))
    return images, labels

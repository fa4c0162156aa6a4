"""CIFAR-10's on-disk formats, decoded to one uint8 array: the official python pickles
(``cifar-10-batches-py``, as a folder or ``cifar-10-python.tar.gz``) and class-folder image trees
``[root/]{train,test}/<class>/<image>`` (as a folder or a ``.tar.gz``). Train and test are merged.

Everything read is treated as untrusted: only regular files are opened, each is refused above a size
bound before it is read, a pickle may name only the few globals a CIFAR-10 batch holds, and an image
must be 32×32 in a known mode before its pixels are decoded.
"""

from __future__ import annotations

import functools
import os
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cae.batch_pickle import RefusedGlobal, load_batch
from cae.errors import CAEError
from cae.image_file import IMAGE_SHAPE, decode_image
from cae.paths import file_kind

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")  # what image_file.IMAGE_FORMATS reads


@dataclass(frozen=True)
class Bound:
    """The most bytes a file of one kind may have; a larger one is refused before it is read, so a huge
    member of a small compressed archive never reaches memory."""

    limit: int
    what: str


IMAGE_FILE = Bound(1 << 20, "a 32×32 image file (CIFAR-10's are about 3 KB)")
BATCH_FILE = Bound(64 << 20, "a CIFAR-10 python batch (the official ones are about 31 MB)")

# Reads one file whole, refusing it (CAEError naming it) unless it is a regular file within the bound.
Reader = Callable[[Bound], bytes]


def decode(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if path.is_dir():
        if (path / "data_batch_1").exists():
            return _from_batches(((f.name, _file_reader(f)) for f in sorted(path.iterdir())), str(path))
        inner = path / "cifar-10-batches-py"
        if (inner / "data_batch_1").exists():
            return decode(inner)
        files = ((str(f.relative_to(path)), _file_reader(f)) for f in tree_files(path))
        return _from_image_files(files, str(path))
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):  # tarfile.is_tarfile would open it, and opening a FIFO waits for a writer
        raise CAEError(f"{path}: {file_kind(mode)}; a CIFAR-10 source is a regular file or a folder")
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
    that cannot be listed and a broken link are one-line errors naming them. Anything but a regular
    file (or a link to one) is refused from its ``stat``, unopened: opening a FIFO waits for a writer
    and opening a device can act on it.
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
            try:
                mode = os.stat(f).st_mode  # a link's target: a link to an image is read as that image
            except FileNotFoundError:
                if f.is_symlink():
                    raise CAEError(f"{f}: a broken link (its target {os.readlink(f)} does not exist)") from None
                raise CAEError(f"{f}: vanished while the folder was read") from None
            except OSError as err:
                raise CAEError(f"{f}: cannot read ({err.strerror or err})") from None
            if not stat.S_ISREG(mode):
                raise CAEError(
                    f"{f}: {file_kind(mode)}, not a regular file; a data folder holds only image or batch "
                    "files (or links to them)"
                )
            found.append(f)
    return found


def _too_large(name: str, size: int, bound: Bound) -> CAEError:
    return CAEError(f"{name}: {size:,} bytes, more than the {bound.limit:,} allowed for {bound.what}")


def _open_nonblocking(path: str, flags: int) -> int:
    # Regular files ignore O_NONBLOCK; a FIFO put in place after the check opens at once instead of
    # waiting for a writer, and is then refused by fstat.
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0))


def _read_file(path: Path, bound: Bound) -> bytes:
    """``path`` whole. Its kind and size are checked from ``stat`` before it is opened (opening a FIFO
    waits for a writer, opening a device can act on it) and again once open, in case it was swapped."""

    def check(st: os.stat_result) -> None:
        if not stat.S_ISREG(st.st_mode):
            raise CAEError(f"{path}: {file_kind(st.st_mode)}, not a regular file; expected {bound.what}")
        if st.st_size > bound.limit:
            raise _too_large(str(path), st.st_size, bound)

    try:
        check(os.stat(path))
        with open(path, "rb", opener=_open_nonblocking) as fh:
            st = os.fstat(fh.fileno())
            check(st)
            # A read allocates what it asks for, so ask for the size fstat gives; more comes only from
            # a file that grew since, or whose file system does not know its size in advance.
            data = fh.read(st.st_size + 1)
            if len(data) > st.st_size:
                data += fh.read(bound.limit + 1 - len(data))
    except OSError as err:
        raise CAEError(f"{path}: cannot read ({err.strerror or err})") from None
    if len(data) > bound.limit:
        raise _too_large(str(path), len(data), bound)
    return data


def _file_reader(path: Path) -> Reader:
    return functools.partial(_read_file, path)


def _member_kind(member: tarfile.TarInfo) -> str:
    kinds = [
        (member.issym, "a symbolic link"),
        (member.islnk, "a hard link"),
        (member.isfifo, "a FIFO (named pipe)"),
        (member.ischr, "a character device"),
        (member.isblk, "a block device"),
    ]
    return next((name for test, name in kinds if test()), f"an entry of tar type {member.type!r}")


def _decode_tar(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with tarfile.open(path, "r:*") as tar:
            members = []
            for m in tar.getmembers():
                if m.isdir():
                    continue
                if not m.isfile():
                    raise CAEError(
                        f"{path}/{m.name}: {_member_kind(m)}; only regular files and folders are read from "
                        "an archive (tar --dereference stores the files that links point to)"
                    )
                members.append(m)

            def reader(m: tarfile.TarInfo) -> Reader:
                def read(bound: Bound) -> bytes:
                    if m.size > bound.limit:  # from the header: nothing of it is read
                        raise _too_large(f"{path}/{m.name}", m.size, bound)
                    fh = tar.extractfile(m)
                    assert fh is not None  # regular files always have a stream
                    return fh.read(m.size)  # the member's stream ends there

                return read

            if any(Path(m.name).name == "data_batch_1" for m in members):
                return _from_batches(((Path(m.name).name, reader(m)) for m in members), str(path))
            return _from_image_files(((m.name, reader(m)) for m in members), str(path))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise CAEError(f"{path}: archive is truncated or corrupt ({type(err).__name__}: {err})") from None


def _from_batches(files: Iterable[tuple[str, Reader]], where: str) -> tuple[np.ndarray, np.ndarray]:
    """The official python pickles: data_batch_1..5 then test_batch, each 10,000×3072 uint8."""
    wanted = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    found = {name: read for name, read in files if name in wanted}
    missing = [w for w in wanted if w not in found]
    if missing:
        raise CAEError(f"{where}: cifar-10-batches-py is incomplete, missing {', '.join(missing)}")
    images, labels = [], []
    for name in wanted:
        raw = found[name](BATCH_FILE)
        try:
            batch = load_batch(raw)
            data, lab = batch[b"data"], batch[b"labels"]
        except RefusedGlobal as err:
            raise CAEError(
                f"{where}/{name}: refused, the pickle calls {err.name}; a CIFAR-10 python batch holds only "
                "dicts, lists, bytes, numbers and NumPy arrays (nothing of it was run)"
            ) from None
        except Exception as err:  # a damaged pickle fails in any of pickle's ways (IndexError, struct.error…)
            raise CAEError(f"{where}/{name}: not a CIFAR-10 python batch ({type(err).__name__})") from None
        # Checked before np.asarray: nested lists that share their items are small as a pickle and
        # huge as an array.
        if not isinstance(data, np.ndarray):
            raise CAEError(f"{where}/{name}: data is a {type(data).__name__}, expected an N×3072 uint8 array")
        if not (
            isinstance(lab, np.ndarray) or (isinstance(lab, list) and all(isinstance(v, int | float) for v in lab))
        ):
            raise CAEError(f"{where}/{name}: labels must be a list of class indices 0-9")
        lab = np.asarray(lab)
        # As stored, not converted: np.uint8(0.7) is 0, so float pixels would train as black images.
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


def _from_image_files(files: Iterator[tuple[str, Reader]], where: str) -> tuple[np.ndarray, np.ndarray]:
    """A class-folder tree: ``[root/]{train,test}/<class>/<image>``; train and test merged."""
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
        images[i] = decode_image(read(IMAGE_FILE), f"{where}/{name}")
        labels[i] = label
    # After the images (a damaged file is the more precise message), each split on its own: train and
    # test must both be complete.
    for split_name in sorted({e[0] for e in entries}):
        check_classes(labels[[e[0] == split_name for e in entries]], "/".join((where, *split_name)))
    return images, labels

"""CIFAR-10 from wherever the user has it: finding the source, decoding it, caching the pixels.

Sources, in order: an explicit path (``--data`` / ``DATA=`` / ``CAE_DATA``) to a
``cifar-10-batches-py`` directory, the official ``cifar-10-python.tar.gz``, or a class-folder image
tree ``{train,test}/<class>/*.png|jpg`` (directory or ``.tar.gz``); then the Keras cache; then the
Keras download; and, when none of those exists, the bundled 2,000-image sample with a loud warning.
Decoded images are cached as ``.npz`` under ``runs/data-cache/`` (``CAE_DATA_CACHE`` moves it, e.g.
one folder shared by a test session) keyed by the source's content, so a second load of 60,000 JPEGs
takes a fraction of a second. A cache read back is checked; a damaged one is rebuilt with a note.
The PCA bases fitted on the data's splits live there too (``pca/``, :func:`cae.baselines.pca_basis`).
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket
import stat
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cae.errors import CAEError, first_line
from cae.formats import CLASSES, decode, tree_files
from cae.image_file import IMAGE_SHAPE
from cae.paths import atomic_path, file_kind, runs_dir

SAMPLE_PATH = Path(__file__).parent / "assets" / "cifar10-sample.tar.gz"
HOW_TO_SUPPLY = (
    "supply CIFAR-10 with DATA=<path> (a cifar-10-batches-py folder, cifar-10-python.tar.gz, or a "
    "{train,test}/<class>/*.png|jpg tree or .tar.gz), put it in the Keras cache (~/.keras/datasets), "
    "or allow keras.datasets.cifar10 to download it; DATA=sample runs the bundled demo sample"
)


@dataclass(frozen=True)
class Dataset:
    """All images of a source, train and test merged, in a fixed order."""

    images: np.ndarray  # uint8 (N, 32, 32, 3)
    labels: np.ndarray  # uint8 (N,), indices into CLASSES
    data_source: str  # "path", "keras" or "sample" (the MLflow tag)
    location: str  # the file or folder it came from
    digest: str  # content hash of the source (cache key, logged with runs)


# --------------------------------------------------------------------------------------------
# Finding the source


def _keras_home() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))


def keras_cache_candidates() -> list[Path]:
    """Where Keras 2 and Keras 3 leave CIFAR-10 after ``keras.datasets.cifar10.load_data()``."""
    d = _keras_home() / "datasets"
    return [
        d / "cifar-10-batches-py-target" / "cifar-10-batches-py",  # Keras 3
        d / "cifar-10-batches-py-target_extracted" / "cifar-10-batches-py",
        d / "cifar-10-batches-py",  # Keras 2
        d / "cifar-10-batches-py.tar.gz",
    ]


def warn(message: str) -> None:
    bar = "!" * 78
    print(f"\n{bar}\n{message}\n{bar}\n", file=sys.stderr, flush=True)


def load_cifar10(source: str | None = None, cache_dir: Path | None = None) -> Dataset:
    """Load all 60,000 images (or whatever the source holds) as one merged uint8 array.

    ``source``: a path, ``"keras"``, ``"sample"`` or None (then ``CAE_DATA``, the Keras cache, the
    Keras download and finally the bundled sample, in that order).
    """
    cache_dir = cache_dir or default_cache_dir()
    path, data_source = resolve_source(source or os.environ.get("CAE_DATA") or None)
    return _load_path(path, data_source, cache_dir)


def default_cache_dir() -> Path:
    """``CAE_DATA_CACHE``, else ``runs/data-cache``: the decoded arrays and their PCA bases outlive a runs/
    folder moved for tests."""
    return Path(os.environ.get("CAE_DATA_CACHE") or runs_dir() / "data-cache")


@functools.lru_cache(maxsize=8)
def _resolve_auto(source: str | None, keras_home: str) -> tuple[Path, str]:
    """Keras cache, download or sample: decided once per process (one download try, one warning)."""
    for candidate in keras_cache_candidates():
        if candidate.exists():
            return candidate, "keras"
    downloaded = _keras_download()
    if downloaded is not None:
        return downloaded, "keras"
    if source == "keras":
        raise CAEError(f"CIFAR-10 is not in the Keras cache and could not be downloaded; {HOW_TO_SUPPLY}")
    warn(
        "No CIFAR-10 found (no DATA/CAE_DATA, nothing in the Keras cache, download failed).\n"
        f"Falling back to the bundled SAMPLE of {SAMPLE_PATH.name}: 2,000 images, results are a demo only.\n"
        "To use the real data: " + HOW_TO_SUPPLY
    )
    return SAMPLE_PATH, "sample"


def resolve_source(source: str | None) -> tuple[Path, str]:
    """(path, data_source tag) of a source: an explicit path, "sample", or the automatic order."""
    if source == "sample":
        return SAMPLE_PATH, "sample"
    if source not in (None, "keras"):
        path = Path(source).expanduser()
        if not path.exists():
            raise CAEError(f"data path {path} does not exist; {HOW_TO_SUPPLY}")
        return path, "path"
    return _resolve_auto(source, str(_keras_home()))


def _keras_download() -> Path | None:
    """Let Keras download CIFAR-10 into its cache; None when offline (``CAE_OFFLINE=1`` skips)."""
    if os.environ.get("CAE_OFFLINE") == "1":
        return None
    from keras.datasets import cifar10

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(15)  # an offline machine must fall back quickly, not hang
    try:
        cifar10.load_data()
    except Exception as err:  # any network/HTTP/extraction failure means "not available"
        print(f"keras.datasets.cifar10 download failed: {first_line(err)}", file=sys.stderr)
        return None
    finally:
        socket.setdefaulttimeout(previous)
    return next((c for c in keras_cache_candidates() if c.exists()), None)


# --------------------------------------------------------------------------------------------
# Decoding, with a content-keyed cache


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    if path.is_dir():
        # The files the decoder reads (linked folders too), in the order rglob's sorted list had, so a
        # study's recorded data digest is unchanged for the trees it read before.
        for f in sorted(tree_files(path)):
            st = f.stat()
            h.update(f"{f.relative_to(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    else:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):  # opening a FIFO would wait for a writer, a device might never end
            raise CAEError(f"{path}: {file_kind(mode)}; {HOW_TO_SUPPLY}")
        with path.open("rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()[:16]
    return h.hexdigest()[:16]


def _load_path(path: Path, data_source: str, cache_dir: Path) -> Dataset:
    try:
        digest = _digest(path)
    except OSError as err:
        raise CAEError(f"cannot read data at {path}: {err.strerror or err}") from None
    if (digest, data_source) in _LOADED:  # a search loads the data in several places
        return _LOADED[(digest, data_source)]
    dataset = _load_cached(path, data_source, cache_dir, digest)
    _LOADED.clear()  # keep at most one dataset (~180 MB) in memory
    _LOADED[(digest, data_source)] = dataset
    return dataset


_LOADED: dict[tuple[str, str], Dataset] = {}


def read_cache(cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of a cache file, checked; CAEError naming the file if it is damaged."""
    try:
        with np.load(cache, allow_pickle=False) as z:
            images, labels = z["images"], z["labels"]
    except (OSError, EOFError, ValueError, KeyError, zlib.error, zipfile.BadZipFile) as err:
        raise CAEError(f"{cache} is damaged ({type(err).__name__})") from None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
        raise CAEError(f"{cache} is damaged (images are {images.dtype} {images.shape}, not uint8 N×32×32×3)")
    if labels.dtype != np.uint8 or labels.shape != (len(images),) or (labels >= len(CLASSES)).any():
        raise CAEError(f"{cache} is damaged (labels are not {len(images)} class indices 0-9)")
    return images, labels


def _load_cached(path: Path, data_source: str, cache_dir: Path, digest: str) -> Dataset:
    cache = cache_dir / f"cifar10-{digest}.npz"
    if cache.exists():
        try:
            return Dataset(*read_cache(cache), data_source, str(path), digest)
        except CAEError as err:  # the source is still there: decode it again instead of failing
            print(f"note: {err}; rebuilding it from {path}", file=sys.stderr)
            cache.unlink(missing_ok=True)
    images, labels = decode(path)
    save_cache(cache, "data cache", images=images, labels=labels)
    return Dataset(images, labels, data_source, str(path), digest)


def save_cache(path: Path, what: str, **arrays: np.ndarray) -> None:
    """``arrays`` written to the ``.npz`` cache ``path`` at once or not at all. A cache that cannot be
    written (a read-only checkout, a shared folder) is a note, not a failure: the caller has the arrays."""
    try:
        with atomic_path(path) as tmp, tmp.open("wb") as fh:  # a file object: np.savez would append ".npz"
            np.savez(fh, **arrays)
    except (OSError, CAEError) as err:
        print(f"note: could not write the {what} {path}: {first_line(err)}", file=sys.stderr)

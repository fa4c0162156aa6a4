"""The seeded 80/10/10 split of all 60,000 images, the pixel transforms, and the tf.data pipelines.

Where the images come from is :mod:`cae.sources`; everything here starts from its merged arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cae.errors import CAEError
from cae.sources import CLASSES, Dataset, load_cifar10, warn

__all__ = ["CLASSES", "TRANSFORMS", "Splits", "load_splits", "luma", "make_dataset", "split", "splits_for", "to_unit"]

SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601


@dataclass(frozen=True)
class Splits:
    """The seeded 80/10/10 split (or a subset drawn inside it); uint8 images, labels kept."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    data_source: str
    location: str
    digest: str
    seed: int
    mean: tuple[float, float, float]  # per-channel statistics of the training split, in [0, 1]
    std: tuple[float, float, float]

    @property
    def sizes(self) -> tuple[int, int, int]:
        return len(self.x_train), len(self.x_val), len(self.x_test)

    def describe(self) -> dict[str, Any]:
        """What MLflow records about the data of a run (``derived.``: values, not config keys)."""
        n_train, n_val, n_test = self.sizes
        return {
            "derived.data_file": Path(self.location).name,
            "derived.data_digest": self.digest,
            "derived.n_train": n_train,
            "derived.n_val": n_val,
            "derived.n_test": n_test,
            "derived.data_mean": [round(m, 6) for m in self.mean],
            "derived.data_std": [round(s, 6) for s in self.std],
        }


# --------------------------------------------------------------------------------------------
# Splitting and normalisation


def _stratified_take(indices: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` of already-shuffled ``indices``, interleaving classes so counts are balanced."""
    lab = labels[indices]
    rank = np.zeros(len(indices), dtype=np.int64)
    for c in np.unique(lab):
        where = np.flatnonzero(lab == c)
        rank[where] = np.arange(len(where))
    order = np.lexsort((np.arange(len(indices)), rank))
    return indices[order[:k]]


def split(dataset: Dataset, seed: int, subset: int | None = None) -> Splits:
    """Seeded 80/10/10 split of all images; ``subset`` = N train and N/8 val/test from inside it."""
    n = len(dataset.images)
    perm = np.random.default_rng(seed).permutation(n)
    n_train, n_val = int(n * SPLIT_FRACTIONS[0]), int(n * SPLIT_FRACTIONS[1])
    parts = [perm[:n_train], perm[n_train : n_train + n_val], perm[n_train + n_val :]]
    if subset is not None and subset > n_train and dataset.data_source == "sample":
        warn(f"SUBSET={subset} is more than the bundled sample's {n_train} training images: using all of them")
        subset = None
    if subset is not None:
        if subset > n_train:
            raise CAEError(
                f"SUBSET={subset} is larger than the {n_train} training images of this source "
                f"({dataset.location}); use at most {n_train}"
            )
        wanted = [subset, max(1, subset // 8), max(1, subset // 8)]
        parts = [_stratified_take(p, dataset.labels, k) for p, k in zip(parts, wanted, strict=True)]
    train, val, test = parts
    if min(len(train), len(val), len(test)) == 0:
        raise CAEError(f"{dataset.location}: {n} images are too few for an 80/10/10 split")
    x_train = dataset.images[train]
    mean, std = channel_stats(x_train)
    return Splits(
        x_train,
        dataset.labels[train],
        dataset.images[val],
        dataset.labels[val],
        dataset.images[test],
        dataset.labels[test],
        dataset.data_source,
        dataset.location,
        dataset.digest,
        seed,
        mean,
        std,
    )


def channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] of uint8 images, summed a chunk at a time: a float64 copy
    of the whole training split would be 1.2 GB and ~20 s on a loaded machine."""
    total = np.zeros(3)
    squares = np.zeros(3)
    for start in range(0, len(images), chunk):
        block = images[start : start + chunk].reshape(-1, 3).astype(np.float64)
        total += block.sum(axis=0)
        squares += (block * block).sum(axis=0)
    count = images.size / 3
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean * mean, 0.0))
    return tuple(float(v) for v in mean / 255.0), tuple(float(v) for v in np.maximum(std / 255.0, 1e-6))


def load_splits(source: str | None, seed: int, subset: int | None = None) -> Splits:
    """The split of ``source``; computed once per process for each (data, seed, subset): a search
    asks for it in several places (checks, workers, scoring the best)."""
    dataset = load_cifar10(source)
    key = (dataset.digest, dataset.data_source, seed, subset)
    if key not in _SPLITS:
        _SPLITS.clear()  # the arrays of one split at a time (up to ~180 MB)
        _SPLITS[key] = split(dataset, seed, subset)
    return _SPLITS[key]


_SPLITS: dict[tuple[Any, ...], Splits] = {}


def splits_for(config: Any) -> Splits:
    """The split an :class:`~cae.config.ExperimentConfig` trains on (its data source, seed and subset)."""
    return load_splits(config.data.source, config.seed, config.data.subset)


def to_unit(images: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [0, 1]."""
    return images.astype(np.float32) / 255.0


def luma(rgb: Any) -> Any:
    """BT.601 luma (0.299 R + 0.587 G + 0.114 B) as one channel; works on NumPy and tensors."""
    w = np.asarray(LUMA_WEIGHTS, dtype=np.float32)
    return (rgb * w).sum(axis=-1, keepdims=True) if isinstance(rgb, np.ndarray) else _tf_luma(rgb, w)


def _tf_luma(rgb: Any, w: np.ndarray) -> Any:
    import tensorflow as tf

    return tf.reduce_sum(rgb * w, axis=-1, keepdims=True)


# Input transforms: (float images in [0, 1]) -> model input. Targets are always the RGB images.
TRANSFORMS: dict[str, Callable[[Any], Any]] = {
    "rgb": lambda x: x,
    "luma": luma,
    # The seed notebook's grayscale: the plain channel mean (not BT.601 luma).
    "mean": lambda x: x.mean(axis=-1, keepdims=True) if isinstance(x, np.ndarray) else _tf_mean(x),
}


def _tf_mean(x: Any) -> Any:
    import tensorflow as tf

    return tf.reduce_mean(x, axis=-1, keepdims=True)


def make_dataset(
    images: np.ndarray,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    input_transform: str = "rgb",
    labels: np.ndarray | None = None,
    label_input: bool = False,
    label_target: bool = False,
) -> Any:
    """``tf.data`` pipeline of (input, RGB target) batches from uint8 images held in memory.

    With ``labels``: ``label_input`` adds the one-hot class as a second input (a semantic oracle),
    ``label_target`` the class as a second target (an auxiliary class loss).

    The uint8 array is the cache (4× smaller than float32). Each epoch shuffles the *indices*
    (seeded, reshuffled every epoch) and gathers a whole batch at once, then converts it to float
    in one vectorised op: per-element shuffling of images costs more than the small CAEs' own
    steps on a CPU (see BENCHMARKS.md).
    """
    import tensorflow as tf

    transform = TRANSFORMS[input_transform]
    table = tf.constant(images)
    classes = tf.constant(labels.astype(np.int32)) if labels is not None else None
    if (label_input or label_target) and classes is None:
        raise ValueError("make_dataset: label_input / label_target need labels")
    ds = tf.data.Dataset.range(len(images))
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)

    def prepare(index: Any) -> tuple[Any, Any]:
        x = tf.cast(tf.gather(table, index), tf.float32) / 255.0
        inputs, target = transform(x), x
        if label_input:  # by name: a (image, label) tuple would be read by Keras as (input, target)
            inputs = {"image": inputs, "label": tf.one_hot(tf.gather(classes, index), len(CLASSES))}
        if label_target:
            target = (target, tf.gather(classes, index))
        return inputs, target

    ds = ds.batch(batch_size).map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    # tf.data's autotuner keeps a model thread per iterator, and tearing the iterator down (every
    # epoch, every validation pass) waits for that thread's next wake-up, which rounds epochs up to
    # multiples of ~2.5 s and idles the CPU (BENCHMARKS.md). An in-memory gather needs no tuning; with
    # autotune off the AUTOTUNE values fall back to one parallel call per core.
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options)


def make_labelled_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int, *, shuffle: bool, seed: int) -> Any:
    """``tf.data`` pipeline of (RGB image in [0, 1], class label) batches: for the semantic-check classifier."""
    import tensorflow as tf

    table, targets = tf.constant(images), tf.constant(labels.astype(np.int32))
    ds = tf.data.Dataset.range(len(images))
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(
        lambda i: (tf.cast(tf.gather(table, i), tf.float32) / 255.0, tf.gather(targets, i)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    options = tf.data.Options()
    options.autotune.enabled = False  # see make_dataset
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options)

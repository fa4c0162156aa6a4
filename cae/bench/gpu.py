"""On a GPU: a full-data epoch of the reference CAE in float32 and in mixed precision.

Through ``train_and_evaluate`` like the harness column (``train.precision``), first epoch left out.
Nothing is measured (and the report says so) where TensorFlow sees no GPU.
"""

from __future__ import annotations

from cae.bench.store import Store
from cae.bench.throughput import harness_epochs
from cae.config import ExperimentConfig
from cae.data import load_splits
from cae.schema import with_overrides

POLICIES = ("float32", "mixed_float16")
BATCH_SIZES = (128, 512)


def gpu_device() -> str | None:
    """The first GPU's name as TensorFlow reports it; None without one."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    return str(tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU"))


def measure_gpu(source: str | None, store: Store, host: str, repeats: int) -> None:
    device = gpu_device()
    if device is None:
        return
    splits = load_splits(source, 42)  # every training image: the epoch users wait for
    for policy in POLICIES:
        for bs in BATCH_SIZES:
            config = with_overrides(ExperimentConfig(), {"train.batch_size": bs, "train.precision": policy})
            store.get_or_measure(
                f"gpu/{policy}/bs{bs}",
                lambda c=config: {
                    "epoch_seconds": harness_epochs(c, splits, repeats),
                    "images": len(splits.x_train),
                    "device": device,
                },
                host,
            )

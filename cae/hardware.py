"""The machine a process trains on: CPU threads per worker, GPU memory, and a short description.

With several worker processes on one host, each gets its share of the CPU threads
(``CAE_THREADS``) so they do not oversubscribe the cores; on GPUs, memory is allocated as needed
instead of all at once, so several processes can share one device.
"""

from __future__ import annotations

import os


def configure_threads(threads: int | None = None) -> None:
    """Give TensorFlow ``threads`` CPU threads (``CAE_THREADS``); must run before any TF op."""
    threads = threads or int(os.environ.get("CAE_THREADS", "0") or 0)
    if threads:
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
        except RuntimeError:  # already initialised in this process: keep its settings
            pass


def machine() -> str:
    """``CPU x2`` or the GPU model(s), for the runs' ``machine`` tag and the reports."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return f"CPU x{os.cpu_count()}"
    names = [tf.config.experimental.get_device_details(g).get("device_name", "GPU") for g in gpus]
    return ", ".join(sorted(set(names))) + f" x{len(gpus)}"

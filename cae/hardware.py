"""The machine a process trains on: CPU threads per worker, GPU memory and devices, and a short description.

With several worker processes on one host, each gets its share of the CPU threads
(``CAE_THREADS``) so they do not oversubscribe the cores. On GPUs, memory is allocated as needed
instead of all at once (TensorFlow's default reserves nearly a whole device per process, so a
second worker on the same GPU would fail), and workers are spread over the visible GPUs, one
device each (:func:`worker_gpu_env`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess

# Every process that imports the harness grows GPU memory on demand, including the ones that never
# call configure_threads (colorization, reports): TensorFlow reads this when it first touches a GPU.
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")


def configure_threads(threads: int | None = None) -> None:
    """Give TensorFlow ``threads`` CPU threads (``CAE_THREADS``) and grow GPU memory on demand.

    Must run before any TF op (settings of an already initialised runtime are kept).
    """
    threads = threads or int(os.environ.get("CAE_THREADS", "0") or 0)
    import tensorflow as tf

    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
        except RuntimeError:  # already initialised in this process: keep its settings
            pass
    configure_gpus()


def configure_gpus() -> int:
    """Memory growth on every GPU TensorFlow sees; returns how many it sees.

    Warns (one line) when ``nvidia-smi`` lists a GPU that TensorFlow cannot use: it was installed
    without CUDA libraries (the plain ``tensorflow`` wheel on Linux has none).
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        # RuntimeError: the device is initialised already; the environment variable covered it.
        with contextlib.suppress(RuntimeError):
            tf.config.experimental.set_memory_growth(gpu, True)
    if not gpus and nvidia_gpus() and os.environ.get("CUDA_VISIBLE_DEVICES", None) not in ("", "-1"):
        print(
            "warning: an NVIDIA GPU is present but TensorFlow does not see it (installed without CUDA); "
            "training runs on the CPU. Reinstall with `rm -rf .venv && make setup TF_EXTRA=gpu`",
            flush=True,
        )
    return len(gpus)


def nvidia_gpus() -> list[str]:
    """``nvidia-smi -L`` lines (``GPU 0: NVIDIA H100 ... (UUID: ...)``); empty without a driver or GPU."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    if out.returncode != 0:
        return []
    return [line.strip() for line in out.stdout.splitlines() if re.match(r"\s*GPU \d+:", line)]


def gpu_ids() -> list[str]:
    """The GPUs workers may use: ``CUDA_VISIBLE_DEVICES`` when the user set it, else every one listed."""
    chosen = os.environ.get("CUDA_VISIBLE_DEVICES")
    if chosen is not None:
        ids = [d.strip() for d in chosen.split(",") if d.strip()]
        return [] if ids[:1] == ["-1"] else ids  # "" or "-1": the user hid every GPU
    return [re.match(r"\s*GPU (\d+):", line).group(1) for line in nvidia_gpus()]  # type: ignore[union-attr]


def worker_gpu_env(index: int, gpus: list[str]) -> dict[str, str]:
    """Environment of worker ``index``: one visible GPU each, round-robin (none without GPUs).

    With more workers than GPUs, several share a device; memory growth lets them.
    """
    return {"CUDA_VISIBLE_DEVICES": gpus[index % len(gpus)]} if gpus else {}


def machine() -> str:
    """``CPU x2`` or the GPU model(s), for the runs' ``machine`` tag and the reports."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return f"CPU x{os.cpu_count()}"
    names = [tf.config.experimental.get_device_details(g).get("device_name", "GPU") for g in gpus]
    return ", ".join(sorted(set(names))) + f" x{len(gpus)}"

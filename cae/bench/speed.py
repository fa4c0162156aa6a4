"""Training speed (`make bench`): the reference CAE through the harness against a bare ``model.fit``, and on a GPU.

The harness is timed through ``train_and_evaluate`` itself: its per-epoch times (validation
included) with the first epoch, which traces the train step, left out. XLA and mixed precision are
the same call with ``train.jit_compile`` / ``train.precision`` set. The comparison is what the seed
notebook did: ``model.fit`` on float32 NumPy arrays with validation data, timed the same way. Each
measurement is stored in ``results/bench/speed.json`` once complete, so a killed run resumes.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cae.callbacks import epoch_timer
from cae.config import ExperimentConfig
from cae.data import Splits, load_splits, to_unit
from cae.errors import CAEError
from cae.paths import write_text_atomic
from cae.schema import with_overrides
from cae.train import build_model, train_and_evaluate

VARIANTS: dict[str, dict[str, Any]] = {  # config keys of each timed variant of the harness
    "harness": {},
    "harness + XLA": {"train.jit_compile": True},
    "harness + mixed_float16": {"train.precision": "mixed_float16"},
    "harness + mixed_bfloat16": {"train.precision": "mixed_bfloat16"},
}
BARE = "bare fit"  # model.fit on NumPy arrays, the seed notebook's way: the comparison
GPU_POLICIES = ("float32", "mixed_float16")
GPU_BATCH_SIZES = (128, 512)


@dataclass(frozen=True)
class SpeedPlan:
    mode: str
    images: int  # training images per timed epoch
    batch_sizes: tuple[int, ...]
    repeats: int  # timed epochs after the warm-up one


PLANS = {
    "full": SpeedPlan("full", images=12000, batch_sizes=(32, 128, 512), repeats=3),
    "quick": SpeedPlan("quick", images=1000, batch_sizes=(128,), repeats=1),  # a smoke test, not a measurement
}


def harness_epochs(config: ExperimentConfig, splits: Splits, repeats: int) -> list[float]:
    """Seconds of each epoch after the warm-up one, through the harness's own training call."""
    import keras

    keras.backend.clear_session()
    return train_and_evaluate(config, splits, epochs=1 + repeats, evaluate_test=False).epoch_seconds[1:]


def bare_fit_epochs(config: ExperimentConfig, splits: Splits, repeats: int) -> list[float]:
    """The same model, loss and optimiser with a plain ``model.fit`` on NumPy arrays."""
    import keras

    keras.backend.clear_session()
    x, v = to_unit(splits.x_train), to_unit(splits.x_val)
    model = build_model(config, splits)
    model.compile(optimizer=keras.optimizers.Adam(config.train.learning_rate), loss="mse")
    timer = epoch_timer()
    model.fit(x, x, batch_size=config.train.batch_size, epochs=1 + repeats, validation_data=(v, v), shuffle=True,
              verbose=0, callbacks=[timer])  # fmt: skip
    return timer.seconds[1:]


def gpu_device() -> str | None:
    """The first GPU's name as TensorFlow reports it; None without one."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return str(tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")) if gpus else None


class Store:
    """The measurements so far in ``path``, each written as soon as it is complete."""

    def __init__(self, path: Path, plan: SpeedPlan, host: str):
        self.path, self.host = path, host
        self.data: dict[str, Any] = {"plan": asdict(plan), "measurements": {}}
        if path.exists():
            try:
                self.data = json.loads(path.read_text())
                measurements = self.data["measurements"]
                ok = self.data["plan"] == json.loads(json.dumps(asdict(plan))) and isinstance(measurements, dict)
            except (ValueError, KeyError, TypeError):
                ok = False
            if not ok:
                raise CAEError(f"{path.name} holds other or damaged measurements; move it away to measure again")

    def get(self, key: str, measure: Any) -> Any:
        entry = self.data["measurements"].get(key)
        if entry is None:
            print(f"[bench] measuring {key} ...", flush=True)
            start = time.perf_counter()
            result = measure()
            entry = {"result": result, "seconds": round(time.perf_counter() - start, 2),
                     "at": time.strftime("%Y-%m-%d %H:%M"), "host": self.host}  # fmt: skip
            self.data["measurements"][key] = entry
            write_text_atomic(self.path, json.dumps(self.data, indent=1) + "\n")
        return entry["result"]


def measure_speed(plan: SpeedPlan, source: str | None, store: Store) -> None:
    """Per batch size, each variant in turn (the order repeats, so drift in load hits all alike); then the GPU."""
    splits = load_splits(source, 42, plan.images)
    for bs in plan.batch_sizes:
        config = with_overrides(ExperimentConfig(), {"train.batch_size": bs})
        for name, overrides in VARIANTS.items():
            store.get(f"throughput/bs{bs}/{name}", lambda o=overrides, c=config: {
                "epoch_seconds": harness_epochs(with_overrides(c, o), splits, plan.repeats),
                "images": len(splits.x_train)})  # fmt: skip
        store.get(f"throughput/bs{bs}/{BARE}", lambda c=config: {
            "epoch_seconds": bare_fit_epochs(c, splits, plan.repeats), "images": len(splits.x_train)})  # fmt: skip
    device = gpu_device()
    if device is None:
        return
    full = load_splits(source, 42)  # every training image: the epoch users wait for
    for policy in GPU_POLICIES:
        for bs in GPU_BATCH_SIZES:
            config = with_overrides(ExperimentConfig(), {"train.batch_size": bs, "train.precision": policy})
            store.get(f"gpu/{policy}/bs{bs}", lambda c=config: {
                "epoch_seconds": harness_epochs(c, full, plan.repeats), "images": len(full.x_train),
                "device": device})  # fmt: skip

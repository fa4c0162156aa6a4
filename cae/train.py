"""One unit of work: ``train_and_evaluate(config, splits) -> TrainResult``.

`cae train`, the Optuna objective, the keras-tuner adapter, colorization and the benchmark all
call it; they differ only in the callbacks they pass (tracking, pruning) and whether the test
split is scored. Nothing here talks to MLflow or Optuna.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cae.config import ExperimentConfig
from cae.data import Splits, luma, make_dataset, to_unit
from cae.errors import CAEError
from cae.metrics import image_metrics


class TrainingDiverged(CAEError):
    """The loss became NaN or infinite (stopped by ``TerminateOnNaN``)."""


@dataclass
class TrainResult:
    model: Any  # keras.Model with the best epoch's weights
    history: dict[str, list[float]]  # train_loss / val_loss per epoch, epoch 1 first
    best_val_loss: float
    best_epoch: int  # 1-based
    seconds: float
    n_params: int
    latent_values: int
    bottleneck_values: int
    test: dict[str, float] = field(default_factory=dict)  # test_mse, test_psnr, test_ssim

    @property
    def epochs_run(self) -> int:
        return len(self.history["val_loss"])

    @property
    def seconds_per_epoch(self) -> float:
        return self.seconds / max(1, self.epochs_run)

    @property
    def code_values(self) -> int:
        """The narrower of latent and bottleneck: the size a no-learning codec is compared at."""
        return min(self.latent_values, self.bottleneck_values)

    def summary(self) -> dict[str, float]:
        return {
            "best_val_loss": self.best_val_loss,
            "best_epoch": self.best_epoch,
            "epochs_run": self.epochs_run,
            "seconds": round(self.seconds, 2),
            "seconds_per_epoch": round(self.seconds_per_epoch, 3),
            **self.test,
        }


def configure_threads(threads: int | None = None) -> None:
    """Give TensorFlow ``threads`` CPU threads (``CAE_THREADS``); must run before any TF op.

    With several worker processes on one host, each gets its share so they do not oversubscribe
    the cores (which on a 2-core machine costs more than it gains).
    """
    threads = threads or int(os.environ.get("CAE_THREADS", "0") or 0)
    if threads:
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
        except RuntimeError:  # already initialised in this process: keep its settings
            pass


def input_stats(config: ExperimentConfig, splits: Splits) -> tuple[list[float] | None, list[float] | None]:
    """Per-channel mean/std of the model input over the training split, if standardising."""
    if config.data.normalization != "standardize":
        return None, None
    if config.data.input == "rgb":
        return list(splits.mean), list(splits.std)
    x = to_unit(splits.x_train)
    gray = luma(x) if config.data.input == "luma" else x.mean(axis=-1, keepdims=True)
    return [float(gray.mean())], [float(max(gray.std(), 1e-6))]


def build_model(config: ExperimentConfig, splits: Splits) -> Any:
    """The configured CAE, seeded, with the input statistics of ``splits`` if standardising."""
    import keras

    from cae.model import build_from_config

    keras.utils.set_random_seed(config.seed)
    mean, std = input_stats(config, splits)
    return build_from_config(config.model, input_channels=config.data.input_channels, input_mean=mean, input_std=std)


def predict(model: Any, images: np.ndarray, input_transform: str = "rgb", batch_size: int = 500) -> np.ndarray:
    """Model outputs for uint8 images, in [0, 1] pixel units."""
    ds = make_dataset(images, batch_size, shuffle=False, seed=0, input_transform=input_transform)
    return np.asarray(model.predict(ds.map(lambda x, y: x), verbose=0), dtype=np.float32)


def evaluate(model: Any, images: np.ndarray, input_transform: str = "rgb") -> tuple[dict[str, float], np.ndarray]:
    """``test_mse`` / ``test_psnr`` / ``test_ssim`` of a whole split, and the predictions."""
    pred = predict(model, images, input_transform)
    return image_metrics(pred, to_unit(images)), pred


def _history_from_csv(path: Path) -> dict[str, list[float]]:
    """Full per-epoch history across resumed segments (last row per epoch wins)."""
    rows: dict[int, dict[str, str]] = {}
    with path.open() as fh:
        for row in csv.DictReader(fh):
            rows[int(row["epoch"])] = row
    ordered = [rows[e] for e in sorted(rows)]
    return {
        "train_loss": [float(r["loss"]) for r in ordered],
        "val_loss": [float(r["val_loss"]) for r in ordered],
    }


def train_and_evaluate(
    config: ExperimentConfig,
    splits: Splits,
    *,
    callbacks: Sequence[Any] = (),
    model: Any = None,
    epochs: int | None = None,
    initial_epoch: int = 0,
    evaluate_test: bool = True,
    workdir: Path | None = None,
    verbose: int | None = None,
) -> TrainResult:
    """Train the configured CAE with MSE (or BCE) and Adam; restore the best epoch; score it.

    ``callbacks`` run after the built-in ones, so a tracking callback sees each epoch's
    ``val_loss`` before a pruning callback may stop the trial. ``workdir`` makes training
    resumable (Keras ``BackupAndRestore``) and keeps the full history in ``history.csv``.
    ``model``/``epochs``/``initial_epoch`` let keras-tuner's Hyperband continue a model.
    """
    import keras

    model = model if model is not None else build_model(config, splits)
    tc = config.train
    epochs = epochs or tc.epochs
    steps = math.ceil(len(splits.x_train) / tc.batch_size)
    lr: Any = tc.learning_rate
    if tc.lr_schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(tc.learning_rate, decay_steps=max(1, epochs * steps))
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=lr),
        loss="binary_crossentropy" if tc.loss == "bce" else "mse",
    )
    train_ds = make_dataset(
        splits.x_train, tc.batch_size, shuffle=True, seed=config.seed, input_transform=config.data.input
    )
    val_ds = make_dataset(splits.x_val, 500, shuffle=False, seed=0, input_transform=config.data.input)

    builtin: list[Any] = [
        keras.callbacks.TerminateOnNaN(),
        # Restores the best epoch's weights at the end whether or not it stops early.
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=tc.early_stopping_patience or epochs + 1, restore_best_weights=True
        ),
    ]
    if tc.lr_schedule == "plateau":
        builtin.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2))
    csv_path = best_path = None
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        csv_path, best_path = workdir / "history.csv", workdir / "best.weights.h5"
        earlier = _history_from_csv(csv_path)["val_loss"] if csv_path.exists() else []
        builtin += [
            keras.callbacks.CSVLogger(str(csv_path), append=True),
            keras.callbacks.BackupAndRestore(str(workdir / "backup")),
            # EarlyStopping only remembers the best epoch of this segment; after a resume the best
            # weights of all segments are the checkpointed ones.
            keras.callbacks.ModelCheckpoint(
                str(best_path), monitor="val_loss", save_best_only=True, save_weights_only=True,
                initial_value_threshold=min(earlier) if earlier else None,
            ),
        ]  # fmt: skip
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2  # one line per epoch in log files

    start = time.perf_counter()
    fit = model.fit(
        train_ds, validation_data=val_ds, epochs=epochs, initial_epoch=initial_epoch, shuffle=False,  # tf.data shuffles
        callbacks=[*builtin, *callbacks], verbose=verbose,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if best_path is not None and best_path.exists():
        model.load_weights(best_path)

    if csv_path is not None and csv_path.exists():
        history = _history_from_csv(csv_path)
    else:
        history = {"train_loss": list(fit.history.get("loss", [])), "val_loss": list(fit.history.get("val_loss", []))}
    values = history["train_loss"] + history["val_loss"]
    if not values or not all(math.isfinite(v) for v in values):
        raise TrainingDiverged(
            f"training diverged: the loss became NaN or infinite after {len(history['train_loss'])} "
            f"epoch(s) (learning rate {tc.learning_rate:g}); lower train.learning_rate"
        )
    best_epoch = int(np.argmin(history["val_loss"])) + 1
    from cae.model import code_sizes

    latent_values, bottleneck_values = code_sizes(model)
    result = TrainResult(
        model=model, history=history, best_val_loss=float(history["val_loss"][best_epoch - 1]),
        best_epoch=best_epoch, seconds=seconds, n_params=int(model.count_params()),
        latent_values=latent_values, bottleneck_values=bottleneck_values,
    )  # fmt: skip
    if evaluate_test:
        result.test, _ = evaluate(model, splits.x_test, config.data.input)
    return result

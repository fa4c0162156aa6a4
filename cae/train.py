"""One unit of work: ``train_and_evaluate(config, splits) -> TrainResult``.

`cae train`, the Optuna objective, the keras-tuner adapter, colorization and the benchmark all
call it; they differ only in the callbacks they pass (tracking, pruning) and whether the test
split is scored. :func:`fit` under it is the package's only ``model.fit`` (the semantic-check
classifier uses it too). Nothing here talks to MLflow or Optuna.
"""

from __future__ import annotations

import csv
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cae.callbacks import epoch_timer, stop_guard
from cae.colour import CHROMA_BINS, DEFAULT_TEMPERATURE, chroma_prior, class_weights, classification_loss
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
    epoch_seconds: list[float] = field(default_factory=list)  # this call's epochs, validation included

    @property
    def epochs_run(self) -> int:
        return len(self.history["val_loss"])

    @property
    def seconds_per_epoch(self) -> float:
        # This call's epochs: after a resume, `seconds` covers only the last segment.
        return statistics.fmean(self.epoch_seconds) if self.epoch_seconds else self.seconds / max(1, self.epochs_run)

    @property
    def code_values(self) -> int:
        """The narrower of latent and bottleneck: the size a no-learning codec is compared at."""
        return min(self.latent_values, self.bottleneck_values)

    def code_params(self) -> dict[str, int]:
        """The derived size params every run logs (the conventions' names)."""
        return {"n_params": self.n_params, "latent_values": self.latent_values,
                "bottleneck_values": self.bottleneck_values}  # fmt: skip

    def final_metrics(self) -> dict[str, float]:
        """``best_val_loss``, time per epoch, epochs run and the test scores (if scored)."""
        return {"best_val_loss": self.best_val_loss, "seconds_per_epoch": self.seconds_per_epoch,
                "epochs_run": self.epochs_run, **self.test}  # fmt: skip

    def summary(self) -> dict[str, float]:
        return {**self.final_metrics(), "best_epoch": self.best_epoch, "seconds": round(self.seconds, 2)}


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
    """The configured CAE, seeded, with the input statistics of ``splits`` if standardising.

    A classification colorizer is built as its class-logits network (what is trained);
    :func:`train_and_evaluate` returns it wrapped with its decoding.
    """
    import keras

    from cae.model import build_from_config

    keras.utils.set_random_seed(config.seed)
    # The policy is global in Keras and read when layers are created: set it for every model.
    keras.mixed_precision.set_global_policy(config.train.precision)
    mean, std = input_stats(config, splits)
    classes = len(CHROMA_BINS) if config.train.loss == "classification" else 0
    pca = None
    if config.model.pca_init:
        from cae.codec import pca_basis

        basis = pca_basis(splits)  # fitted once per split, cached under runs/pca/
        pca = (basis.mean, basis.components)
    return build_from_config(
        config.model, input_channels=config.data.input_channels, input_mean=mean, input_std=std,
        chroma_classes=classes, pca=pca,
    )  # fmt: skip


def loss_for(config: ExperimentConfig, splits: Splits) -> Any:
    """The configured loss (a Keras name or, for chroma classes, the rebalanced cross-entropy)."""
    import keras

    name = config.train.loss
    if name == "classification":
        return classification_loss(class_weights(chroma_prior(splits.x_train), config.train.rebalance))
    if name == "huber":
        return keras.losses.Huber(delta=0.1)  # pixel units: quadratic within 0.1, L1 beyond
    return {"mse": "mse", "bce": "binary_crossentropy", "l1": "mae"}[name]


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


def _checked_history(fitted: Fitted, workdir: Path | None, learning_rate: float) -> dict[str, list[float]]:
    """The run's per-epoch losses (all resumed segments when ``workdir`` kept them); diverged -> error."""
    csv_path = workdir / "history.csv" if workdir is not None else None
    if csv_path is not None and csv_path.exists():
        history = _history_from_csv(csv_path)
    else:
        history = {"train_loss": fitted.history.get("loss", []), "val_loss": fitted.history.get("val_loss", [])}
    values = history["train_loss"] + history["val_loss"]
    if not values or not all(math.isfinite(v) for v in values):
        raise TrainingDiverged(
            f"training diverged: the loss became NaN or infinite after {len(history['train_loss'])} "
            f"epoch(s) (learning rate {learning_rate:g}); lower train.learning_rate"
        )
    return history


@dataclass
class Fitted:
    history: dict[str, list[float]]  # Keras' names: loss, val_loss, metrics
    seconds: float
    epoch_seconds: list[float]  # wall time of each epoch of this call, validation included


def fit(
    model: Any, train_ds: Any, val_ds: Any, *, loss: Any, learning_rate: Any, epochs: int, initial_epoch: int = 0,
    callbacks: Sequence[Any] = (), metrics: Sequence[Any] = (), jit_compile: bool = False,
    early_stopping_patience: int | None = None, plateau: bool = False, workdir: Path | None = None,
    verbose: int | None = None,
) -> Fitted:  # fmt: skip
    """The one ``model.fit`` of the package: Adam, NaN guard, best weights restored, resumable.

    ``callbacks`` run after the built-in ones, so a tracking callback sees each epoch's
    ``val_loss`` before a pruning callback may stop the trial. ``workdir`` makes training
    resumable (Keras ``BackupAndRestore``) and keeps the full history in ``history.csv``.
    """
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss=loss, metrics=list(metrics),
                  jit_compile=jit_compile)  # fmt: skip
    timer = epoch_timer()
    builtin: list[Any] = [
        keras.callbacks.TerminateOnNaN(),
        # Restores the best epoch's weights at the end whether or not it stops early.
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=early_stopping_patience or epochs + 1, restore_best_weights=True
        ),
        timer,
        stop_guard(),
    ]
    if plateau:
        builtin.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2))
    best_path = None
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
    history = model.fit(
        train_ds, validation_data=val_ds, epochs=epochs, initial_epoch=initial_epoch, shuffle=False,  # tf.data shuffles
        callbacks=[*builtin, *callbacks], verbose=verbose,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if best_path is not None and best_path.exists():
        model.load_weights(best_path)
    return Fitted({k: list(v) for k, v in history.history.items()}, seconds, timer.seconds)


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
    """Train the configured network with its loss and Adam; restore the best epoch; score it.

    ``callbacks`` see every epoch after the built-in ones (see :func:`fit`). ``workdir`` makes
    training resumable. ``model``/``epochs``/``initial_epoch`` let keras-tuner's Hyperband
    continue a model. A classification colorizer is returned wrapped with its decoding
    (``result.model`` always maps the input to RGB in [0, 1]).
    """
    import keras

    model = model if model is not None else build_model(config, splits)
    tc = config.train
    epochs = epochs or tc.epochs
    steps = math.ceil(len(splits.x_train) / tc.batch_size)
    lr: Any = tc.learning_rate
    if tc.lr_schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(tc.learning_rate, decay_steps=max(1, epochs * steps))
    train_ds = make_dataset(
        splits.x_train, tc.batch_size, shuffle=True, seed=config.seed, input_transform=config.data.input
    )
    val_ds = make_dataset(splits.x_val, 500, shuffle=False, seed=0, input_transform=config.data.input)
    fitted = fit(
        model, train_ds, val_ds, loss=loss_for(config, splits), learning_rate=lr, epochs=epochs,
        initial_epoch=initial_epoch, callbacks=callbacks, jit_compile=tc.jit_compile,
        early_stopping_patience=tc.early_stopping_patience, plateau=tc.lr_schedule == "plateau", workdir=workdir,
        verbose=verbose,
    )  # fmt: skip
    history = _checked_history(fitted, workdir, tc.learning_rate)
    if tc.loss == "classification":
        from cae.colour import decoding_model

        model = decoding_model(model, DEFAULT_TEMPERATURE)
    best_epoch = int(np.argmin(history["val_loss"])) + 1
    from cae.model import code_sizes

    latent_values, bottleneck_values = code_sizes(model)
    result = TrainResult(
        model=model, history=history, best_val_loss=float(history["val_loss"][best_epoch - 1]),
        best_epoch=best_epoch, seconds=fitted.seconds, n_params=int(model.count_params()),
        latent_values=latent_values, bottleneck_values=bottleneck_values, epoch_seconds=fitted.epoch_seconds,
    )  # fmt: skip
    if evaluate_test:
        result.test, _ = evaluate(model, splits.x_test, config.data.input)
    return result

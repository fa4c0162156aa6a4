"""The one ``model.fit`` of the package (:func:`fit`): Adam, the NaN guard, the best epoch restored, resumable.

``cae.train.train_and_evaluate`` and the semantic-check classifier train through it. Nothing here
talks to MLflow or Optuna; Keras prints nothing (every caller's own progress callback prints one
line per epoch, so no progress bar and no ANSI codes reach a log).
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cae.callbacks import epoch_timer, stop_guard
from cae.errors import CAEError


class TrainingDiverged(CAEError):
    """The loss became NaN or infinite (stopped by ``TerminateOnNaN``)."""


def history_from_csv(path: Path) -> dict[str, list[float]]:
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


def checked_history(fitted: Fitted, workdir: Path | None, learning_rate: float) -> dict[str, list[float]]:
    """The run's per-epoch losses (all resumed segments when ``workdir`` kept them); diverged -> error."""
    csv_path = workdir / "history.csv" if workdir is not None else None
    if csv_path is not None and csv_path.exists():
        history = history_from_csv(csv_path)
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
    model: Any,
    train_ds: Any,
    val_ds: Any,
    *,
    loss: Any,
    learning_rate: Any,
    epochs: int,
    initial_epoch: int = 0,
    callbacks: Sequence[Any] = (),
    metrics: Sequence[Any] = (),
    jit_compile: bool = False,
    early_stopping_patience: int | None = None,
    plateau: bool = False,
    workdir: Path | None = None,
    loss_weights: Sequence[float] | None = None,
) -> Fitted:
    """Train with Adam: NaN guard, best weights restored, resumable; ``loss`` may be one per output.

    ``callbacks`` run after the built-in ones, so a tracking callback sees each epoch's
    ``val_loss`` before a pruning callback may stop the trial. ``workdir`` makes training
    resumable (Keras ``BackupAndRestore``) and keeps the full history in ``history.csv``.
    """
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss=loss,
        metrics=list(metrics),
        loss_weights=list(loss_weights) if loss_weights else None,
        jit_compile=jit_compile,
    )
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
        earlier = history_from_csv(csv_path)["val_loss"] if csv_path.exists() else []
        builtin += [
            keras.callbacks.CSVLogger(str(csv_path), append=True),
            keras.callbacks.BackupAndRestore(str(workdir / "backup")),
            # EarlyStopping only remembers the best epoch of this segment; after a resume the best
            # weights of all segments are the checkpointed ones.
            keras.callbacks.ModelCheckpoint(
                str(best_path),
                monitor="val_loss",
                save_best_only=True,
                save_weights_only=True,
                initial_value_threshold=min(earlier) if earlier else None,
            ),
        ]
    start = time.perf_counter()
    history = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=epochs,
        initial_epoch=initial_epoch,
        shuffle=False,  # tf.data shuffles
        callbacks=[*builtin, *callbacks],
        verbose=0,
    )
    seconds = time.perf_counter() - start
    if best_path is not None and best_path.exists():
        model.load_weights(best_path)
    return Fitted({k: list(v) for k, v in history.history.items()}, seconds, timer.seconds)

"""The harness's own Keras callbacks: epoch timing and the stop-request guard (:func:`cae.fitting.fit` adds
both to every training), and the one progress line per epoch that every command prints instead of
Keras' progress bars; :func:`dead_stop` ends a search trial whose model learns nothing."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from cae.errors import stop_requested


def epoch_timer() -> Any:
    """A Keras callback recording each epoch's wall time in ``.seconds``."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        seconds: list[float]

        def on_train_begin(self, logs: Any = None) -> None:
            self.seconds = []

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.seconds.append(time.perf_counter() - self.start)

    return EpochTimer()


def stop_guard() -> Any:
    """A Keras callback that stops training at the next epoch once a stop was requested (SIGTERM).

    The signal handler's own KeyboardInterrupt normally stops it at once; this is for the one that
    Python swallowed (raised inside a weakref callback).
    """
    import keras

    class StopGuard(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            if stop_requested():
                raise KeyboardInterrupt

        on_epoch_end = on_epoch_begin

    return StopGuard()


def progress_callback(prefix: str, epochs: int, note: Callable[[float], str] | None = None) -> Any:
    """One line per epoch while a model trains (silent under CI, where the log is read afterwards);
    ``note(val_loss)`` is added to it (a search trial's margin over PCA)."""
    import keras

    quiet = os.environ.get("CI", "").lower() == "true"

    class Progress(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if not quiet:
                logs = logs or {}
                val = logs.get("val_loss", float("nan"))
                extra = note(val) if note is not None and val > 0 else ""
                print(
                    f"{prefix}epoch {epoch + 1}/{epochs}  train {logs.get('loss', float('nan')):.6g}  "
                    f"val {val:.6g}{extra}  {time.perf_counter() - self.start:.1f}s",
                    flush=True,
                )

    return Progress()


def dead_stop(mean_image_mse: float, learning_rate: float) -> Any:
    """A Keras callback that stops a model which learns nothing; ``.reason`` says why it stopped.

    Dead: from its second epoch on, its validation MSE is no better than predicting the
    training split's mean image (``mean_image_mse``) and moved less than 0.01 % in the last epoch (a
    dead network's gradients are zero, so its validation loss is constant; a slow one still moves).
    Why: a learned linear code at a high learning rate (8e-3) can output 0 for every pixel after one
    epoch (MSE 0.32 against the mean image's 0.06), and a pruner's first rung may be epochs away. Only
    for an MSE loss in [0, 1] pixel units (the mean image's score is in those units).
    """
    import keras

    class DeadStop(keras.callbacks.Callback):
        reason: str | None = None

        def on_train_begin(self, logs: Any = None) -> None:
            # The last epoch's validation loss (this segment): scored on fixed weights, unlike the
            # training loss, a running mean over an epoch in which the network may have just died.
            self.previous: float | None = None

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            val = (logs or {}).get("val_loss")
            if val is None:
                return
            flat = self.previous is not None and abs(val - self.previous) <= 1e-4 * abs(self.previous)
            if flat and val >= mean_image_mse:  # flat needs a previous epoch: never before epoch 2
                self.reason = (
                    f"learns nothing: validation MSE {val:.4g} after epoch {epoch + 1} is no better than the "
                    f"training split's mean image ({mean_image_mse:.4g}) and stopped moving "
                    f"(dead output units; learning rate {learning_rate:.3g})"
                )
                self.model.stop_training = True
            self.previous = val

    return DeadStop()

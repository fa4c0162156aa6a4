"""The harness's own Keras callbacks: epoch timing and the stop-request guard (:func:`cae.fitting.fit` adds
both to every training), and the one progress line per epoch that every command prints instead of
Keras' progress bars."""

from __future__ import annotations

import os
import time
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


def progress_callback(prefix: str, epochs: int) -> Any:
    """One line per epoch while a model trains (silent under CI, where the log is read afterwards)."""
    import keras

    quiet = os.environ.get("CI", "").lower() == "true"

    class Progress(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if not quiet:
                logs = logs or {}
                print(f"{prefix}epoch {epoch + 1}/{epochs}  train {logs.get('loss', float('nan')):.6g}  "
                      f"val {logs.get('val_loss', float('nan')):.6g}  {time.perf_counter() - self.start:.1f}s",
                      flush=True)  # fmt: skip

    return Progress()

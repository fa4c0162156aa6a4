"""The Keras callbacks :func:`cae.train.fit` always adds: epoch timing and the stop-request guard."""

from __future__ import annotations

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

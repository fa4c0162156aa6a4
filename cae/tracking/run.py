"""One MLflow run written by id, and the seams every run of the harness goes through.

``Run`` is a context manager: leaving it normally ends the run FINISHED, an exception ends it
FAILED (KILLED for Ctrl-C) with the reason as the ``error`` tag. :func:`trial_run` is the trial's
lifecycle for both engines (child run → PRUNED / FAIL with reason / COMPLETE); what a finished
training logs is decided once, in :meth:`Run.log_result`.

Per-epoch metrics are queued (:mod:`cae.tracking.outbox`) so that a slow, restarting or silent
tracking server does not stall training: the queue is drained when the run ends, and what the
server never took is kept for the next command. Everything else is logged synchronously (it is what
later steps read back).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cae.errors import causes, failure_reason
from cae.hardware import machine
from cae.tracking.datasets import dataset_inputs
from cae.tracking.system import start_system_metrics
from cae.urls import shown

if TYPE_CHECKING:
    from cae.tracking.client import Tracker

# MLflow run status for each trial state (the state itself is also the `trial_state` tag).
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
_MAX_BATCH = 100  # MLflow accepts at most 100 params per log_batch call


def flat_str(value: Any) -> str:
    """A param's text, any password in it masked (tags and texts pass :func:`~cae.urls.shown` too), so
    a storage or tracking URL (a config key, an error message) never carries its secret into MLflow."""
    return shown(",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value))


# The size params every trial run logs beside its sampled keys (conventions' names).
SIZE_PARAMS = ("n_params", "latent_values", "bottleneck_values")


class Run:
    """One MLflow run, written by id. Use as a context manager: an exception ends it FAILED."""

    def __init__(self, tracker: Tracker, run_id: str):
        self.tracker = tracker
        self.client = tracker.client
        self.run_id = run_id
        self.ended = False
        self._monitor: Any = None  # system metrics (CAE_SYSTEM_METRICS=1)

    def start_system_metrics(self) -> None:
        """CPU, memory, disk, network (and GPU) as ``system/*`` metrics, if ``CAE_SYSTEM_METRICS=1``."""
        self._monitor = start_system_metrics(self.run_id, self.tracker.driver_uri)

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, flat_str(v)) for k, v in params.items()]
        for i in range(0, len(items), _MAX_BATCH):
            self.client.log_batch(self.run_id, params=items[i : i + _MAX_BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0, *, queued: bool = False) -> None:
        """Log ``metrics`` at ``step``; ``queued``: return at once, sent in the background (see :meth:`flush`)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [(k, float(v), now, step) for k, v in metrics.items()]
        if not items:
            return
        if queued:
            self.tracker.outbox.put(self.run_id, items)
        else:
            self.client.log_batch(self.run_id, metrics=[Metric(*m) for m in items])

    def flush(self) -> None:
        """Wait until the queued metrics are stored; what the server did not take is kept for the next
        command (one line), never an exception: the run must still be ended."""
        outbox = self.tracker.outbox
        if not self.tracker.silent:
            outbox.drain()
        kept = outbox.save(self.run_id, everything=self.tracker.silent)
        if kept:
            print(
                f"note: {kept} per-epoch metric value(s) of MLflow run {self.run_id} were not stored yet; kept in "
                "runs/outbox/, the next command sends them",
                file=sys.stderr,
                flush=True,
            )

    def log_datasets(self, splits: Any) -> None:
        """The train/val/test splits as MLflow dataset inputs (``cifar10-train`` ..., the split's digest)."""
        for attempt in range(3):
            try:
                self.client.log_inputs(self.run_id, datasets=dataset_inputs(splits))
                return
            except Exception as err:
                # Two workers logging the same new dataset at once: one insert loses the race on
                # the store's unique key; the dataset exists now, so linking it again succeeds. A
                # database store raises the IntegrityError here; a tracking server answers it as a
                # BAD_REQUEST (its only code for a failed insert), so that is retried too.
                from mlflow.exceptions import MlflowException
                from sqlalchemy.exc import IntegrityError

                lost_race = any(
                    isinstance(c, IntegrityError) or (isinstance(c, MlflowException) and c.error_code == "BAD_REQUEST")
                    for c in causes(err)
                )
                if attempt == 2 or not lost_race:
                    raise
                time.sleep(0.2 * (attempt + 1))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        if tags:
            self.client.log_batch(self.run_id, tags=[RunTag(k, shown(str(v))) for k, v in tags.items()])

    def log_artifact(self, path: Path | str, folder: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), folder)

    def log_text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, shown(text), name)

    def end(self, status: str = "FINISHED") -> None:
        self.flush()
        if self._left_to_next_search():
            return
        if self._monitor is not None:
            self._monitor.finish()
            self._monitor = None
        self.client.set_terminated(self.run_id, status)
        self.ended = True

    def end_trial(self, state: str, reason: str | None = None) -> None:
        """End a trial's run: ``trial_state`` tag (COMPLETE/PRUNED/FAIL) and matching status."""
        self.set_tags({"trial_state": state, **({"error": reason[:500]} if reason else {})})
        self.end(RUN_STATUS[state])

    def end_quietly(self, state: str, reason: str | None) -> None:
        """End the run while an error is on its way out: if the store fails too (e.g. the same full
        disk), say so in one line and let the original error through instead of this one."""
        if self._left_to_next_search():
            return
        try:
            self.end_trial(state, reason)
        except Exception as err:
            print(
                f"note: MLflow run {self.run_id} could not be closed ({failure_reason(err)}); the next "
                "search closes it",
                file=sys.stderr,
            )

    def _left_to_next_search(self) -> bool:
        """True (with one line) if the server has stopped answering: closing the run would wait the
        client's bounds out once more; a rerun closes it (a search: ``Tracker.close_orphans``)."""
        if not self.tracker.silent:
            return False
        self.tracker.outbox.save(self.run_id, everything=True)
        print(
            f"note: MLflow run {self.run_id} is left RUNNING (the tracking server is not answering); running "
            "the same command again closes or resumes it",
            file=sys.stderr,
            flush=True,
        )
        return True

    def epoch_callback(self) -> Any:
        """A Keras callback that logs ``train_loss`` / ``val_loss`` (and ``lr``) at step = epoch.

        Own callback rather than ``mlflow.keras.MlflowCallback``: that one logs Keras' names
        (``loss``) and would need the fluent active run, which worker threads cannot share.
        """
        import keras

        run = self

        class EpochLogger(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
                logs = logs or {}
                metrics = {
                    "train_loss": logs.get("loss"),
                    "val_loss": logs.get("val_loss"),
                    # the auxiliary class loss of a colorizer with a class head (cae.model.CLASS_HEAD)
                    "class_loss": logs.get("class_logits_loss"),
                    "val_class_loss": logs.get("val_class_logits_loss"),
                }
                lr = logs.get("learning_rate")
                if lr is not None:
                    metrics["learning_rate"] = lr
                # Queued: a slow tracking server must not hold up the next epoch.
                run.log_metrics({k: v for k, v in metrics.items() if v is not None}, step=epoch + 1, queued=True)

        return EpochLogger()

    def log_result(self, result: Any) -> None:
        """What every finished training logs: its size params and its final metrics.

        ``result`` is a :class:`cae.train.TrainResult` (duck-typed: this module imports no Keras).
        """
        self.log_params(result.code_params())
        self.log_metrics(result.final_metrics(), step=result.epochs_run)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self.ended:
            return
        if exc_type is None:
            self.end("FINISHED")
            return
        if self._left_to_next_search():
            return
        try:
            self.set_tags({"error": failure_reason(exc)[:500]})
            self.end("KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED")
        except Exception as err:  # the store failed too: the original error is the one to see
            print(f"note: MLflow run {self.run_id} could not be closed ({failure_reason(err)})", file=sys.stderr)


@contextmanager
def trial_run(
    tracker: Tracker,
    study: str,
    number: int,
    *,
    parent_id: str,
    tags: Mapping[str, Any],
    params: Mapping[str, Any],
    stopped: tuple[type[BaseException], ...] = (),
    splits: Any = None,
) -> Iterator[Run]:
    """A trial's child run, for both engines: COMPLETE when the block finishes, PRUNED when it
    raises one of ``stopped`` (the engine's pruning exception, or an early stop of the trial's own),
    FAIL with the reason on any other exception, Ctrl-C included. The exception propagates.
    ``splits`` (a :class:`cae.data.Splits`) is logged as the run's dataset inputs.
    """
    run = tracker.start_run(
        study,
        f"trial-{number}",
        parent_id=parent_id,
        tags={"machine": machine(), **tags, "study": study, "trial_number": number, "trial_state": "RUNNING"},
    )
    try:  # from here on the run ends with a state whatever fails, its own logging included
        run.log_params(params)
        if splits is not None:
            run.log_datasets(splits)
        yield run
    except stopped as err:
        run.end_quietly("PRUNED", str(err) or None)
        raise
    except BaseException as err:
        run.end_quietly("FAIL", failure_reason(err))
        raise
    run.end_trial("COMPLETE")

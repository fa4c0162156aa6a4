"""A point whose trial failed through no fault of its own goes on: queued again, and resumed from its last epoch.

One retry chain, Optuna's: the heartbeat's ``RetryHeartbeatStaleTrialCallback`` (set on the storage,
:mod:`cae.search.storage`) queues again the trial of a worker that died; the same callback queues a
trial stopped by a signal (Ctrl-C, SIGTERM, SIGHUP) or by a tracking server that stopped answering.
The retry carries the attempt's parameters, user attributes and reported epochs, and names the
attempts before it (``RetryHeartbeatStaleTrialCallback.retry_history``).

Each trial trains in ``runs/<study>/resume/<first attempt>/`` (Keras ``BackupAndRestore``, the
per-epoch history, the best weights: :func:`cae.fitting.fit`), so the retry of a trial stopped at
epoch 20 of 30 trains 10 more epochs. The folder is kept only while its point waits for its retry.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cae.config import ExperimentConfig
from cae.errors import failure_reason, first_line
from cae.fitting import history_from_csv
from cae.paths import study_dir, write_text_atomic
from cae.schema import to_dict
from cae.search import attrs
from cae.search.storage import retry_callback
from cae.search.study import FINISHED
from cae.space import SearchSpace
from cae.tracking.watch import TrackingUnavailable

UNANSWERED = f"{TrackingUnavailable.__name__}: "  # how such a trial's fail_reason starts (errors.failure_reason)


def earlier_attempts(trial: Any) -> list[int]:
    """The trials ``trial`` retries, the first first (empty if it is no retry)."""
    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    with warnings.catch_warnings():  # "experimental" since Optuna 3.0; the heartbeat's retries rely on it
        warnings.simplefilter("ignore", ExperimentalWarning)
        return [int(n) for n in RetryHeartbeatStaleTrialCallback.retry_history(trial)]


def first_attempt(trial: Any) -> int:
    """The first trial that trained ``trial``'s point (its own number if it is no retry)."""
    return (earlier_attempts(trial) or [trial.number])[0]


def retried(trials: Sequence[Any]) -> set[int]:
    """Numbers of the trials a later trial retries: its point does not count twice."""
    return {n for t in trials for n in earlier_attempts(t)}


def queue_again(study: Any, trial: Any) -> bool:
    """Queue ``trial``'s point again through the heartbeat's own retry callback; False when it has been
    retried as often as the callback allows."""
    before = len(study.get_trials(deepcopy=False))
    retry_callback()(study, trial)
    return len(study.get_trials(deepcopy=False)) > before


def requeue_interrupted(study: Any, number: int | None, space: SearchSpace, trials: int, prefix: str = "") -> bool:
    """Queue again trial ``number``'s point, which a signal just ended in this process (Optuna failed it).

    Only the process that ran the trial queues it, once; not queued: a trial stopped before its point
    was sampled, and one the study's budget has no room for (its finished and queued trials).
    """
    if number is None:
        return False
    trials_now = study.get_trials(deepcopy=False)
    trial = next((t for t in trials_now if t.number == number), None)
    if trial is None or trial.state.name != "FAIL" or not trial.params or not space.holds(trial.params):
        return False
    if sum(t.state.name in (*FINISHED, "WAITING") for t in trials_now) >= trials:
        return False
    try:
        queued = queue_again(study, trial)
    except Exception as err:  # e.g. the storage went away too: the stop itself must go on
        print(f"{prefix}note: trial {number} could not be queued again ({first_line(err)})", flush=True)
        return False
    if queued:
        print(f"{prefix}trial {number} is queued again (same parameters): the same command runs it again", flush=True)
    return queued


def queued_again_after(err: BaseException) -> bool:
    """Whether a trial that ``err`` ended is queued again (a signal; a tracking server that stopped
    answering): the retry goes on from its last epoch."""
    return isinstance(err, KeyboardInterrupt) or failure_reason(err).startswith(UNANSWERED)


def requeue_if_unanswered(study: Any, trial: Any) -> None:
    """A trial failed because the tracking server stopped answering: queue its point again (its training
    is not at fault) and stop this worker with the server's one line."""
    if trial is None or trial.state.name != "FAIL":
        return
    reason = attrs.fail_reason(trial)
    if not reason.startswith(UNANSWERED):
        return
    queue_again(study, trial)
    what = reason.removeprefix(UNANSWERED).split("; the study is intact")[0]
    raise TrackingUnavailable(
        f"{what}; trial {trial.number} is queued again and the study is intact: run the same command again once "
        "the server answers"
    )


class PointCheckpoint:
    """The resumable state of one point of a study: where its training is, and what it was.

    ``identity`` (the study's uid and the trial's full experiment config) is written beside the state;
    a folder left by another study of the same name, or by the same point at another budget
    (``EPOCHS=``), does not match and is started afresh.
    """

    def __init__(self, study: str, point: int, uid: str | None, config: ExperimentConfig):
        self.number = point
        self.path = study_dir(study) / "resume" / str(point)
        blob = json.dumps({"uid": uid, "config": to_dict(config)}, sort_keys=True, default=str)
        self.identity = hashlib.sha256(blob.encode()).hexdigest()[:16]

    def open(self) -> Path:
        """The folder to train in: the stopped attempt's if it is this point's, else a new empty one."""
        marker = self.path / "identity"
        ours = marker.exists() and marker.read_text() == self.identity
        if self.path.exists() and not (ours and self.epochs_file.exists()):  # not this point's, or not an epoch in
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        marker.write_text(self.identity)
        return self.path

    @property
    def epochs_file(self) -> Path:
        return self.path / "epochs-backed-up"

    def callback(self) -> Any:
        """A Keras callback, after ``BackupAndRestore``, that notes how many epochs the backup holds."""
        import keras

        path = self.epochs_file

        class EpochsBackedUp(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                write_text_atomic(path, str(epoch + 1))

        return EpochsBackedUp()

    def done(self) -> dict[str, list[float]]:
        """The epochs the stopped attempts trained and backed up (``train_loss``, ``val_loss``): those the
        next attempt starts after; empty if none. A kill between the backup and this note costs the
        curve one epoch in MLflow (that epoch is in the history of the finished training)."""
        csv_path = self.path / "history.csv"
        if not (csv_path.exists() and self.epochs_file.exists()):
            return {"train_loss": [], "val_loss": []}
        epochs = int(self.epochs_file.read_text() or 0)
        return {k: v[:epochs] for k, v in history_from_csv(csv_path).items()}

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

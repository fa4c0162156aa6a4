"""A trial queued again after an interrupt goes on from the epoch its stopped attempt reached.

Each trial trains in ``runs/<study>/resume/<point>/`` (Keras ``BackupAndRestore``, the per-epoch
history, the best weights: :func:`cae.fitting.fit`), where ``<point>`` is the first trial of its
retry chain (``retry_of`` for the points this package queues again, ``retry_history`` for those
Optuna's heartbeat queues), so the retry of a trial stopped at epoch 20 of 30 trains 10 more epochs
instead of 30. The folder is kept only while its point is interrupted: a finished, pruned or failed
trial removes it. A study on several hosts resumes a point on the host that had it; elsewhere the
point starts again from its first epoch, as before.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cae.config import ExperimentConfig
from cae.fitting import history_from_csv
from cae.paths import study_dir
from cae.schema import to_dict
from cae.search.retry import earlier_attempts


def first_attempt(number: int, trials: Sequence[Any]) -> int:
    """The first trial that trained trial ``number``'s point (``number`` itself if it is no retry)."""
    by_number = {t.number: t for t in trials}
    seen: set[int] = set()
    while number in by_number and number not in seen:
        seen.add(number)
        earlier = earlier_attempts(by_number[number])
        if not earlier:
            break
        number = earlier[0]
    return number


class PointCheckpoint:
    """The resumable state of one point of a study: where its training is, and what it was.

    ``identity`` (the study's uid and the trial's full experiment config) is written beside the
    state; a folder left by another study of the same name, or by the same point at another budget
    (``EPOCHS=``), does not match and is started afresh.
    """

    def __init__(self, study: str, point: int, uid: str | None, config: ExperimentConfig):
        self.number = point
        self.path = study_dir(study) / "resume" / str(point)
        blob = json.dumps({"uid": uid, "config": to_dict(config)}, sort_keys=True, default=str)
        self.identity = hashlib.sha256(blob.encode()).hexdigest()[:16]

    def open(self) -> Path:
        """The folder to train in: the stopped attempt's if it is this point's, else a new empty one."""
        marker, backup = self.path / "identity", self.path / "backup" / "training_metadata.json"
        ours = marker.exists() and marker.read_text() == self.identity
        if self.path.exists() and not (ours and backup.exists()):  # not this point's, or not one epoch in
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        marker.write_text(self.identity)
        return self.path

    def done(self) -> dict[str, list[float]]:
        """The epochs the stopped attempts trained and backed up (``train_loss``, ``val_loss``):
        those the next attempt starts after; empty if none."""
        csv_path, backup = self.path / "history.csv", self.path / "backup" / "training_metadata.json"
        if not (csv_path.exists() and backup.exists()):
            return {"train_loss": [], "val_loss": []}
        # Keras' BackupAndRestore writes its epoch after the CSV's row: a kill between the two
        # leaves one row more than the backup holds, and that epoch is trained again.
        epochs = int(json.loads(backup.read_text())["epoch"])
        return {k: v[:epochs] for k, v in history_from_csv(csv_path).items()}

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def carried_rungs(trials: Sequence[Any], first: int, epochs: int) -> dict[str, float]:
    """The rung values (``rung_<epoch>``, cae/search/rungs.py) the earlier attempts of point
    ``first`` reached within its first ``epochs`` epochs, the latest attempt's where they differ."""
    carried: dict[str, float] = {}
    for t in sorted(trials, key=lambda t: t.number):
        if first_attempt(t.number, trials) == first:
            carried.update({f"rung_{e}": v for e, v in rung_values(t.user_attrs).items() if e <= epochs})
    return carried


def rung_values(attrs: dict[str, Any]) -> dict[int, float]:
    """A trial's rung values by epoch, from the ``rung_<epoch>`` user attrs RungPruning writes."""
    return {
        int(k.removeprefix("rung_")): float(v)
        for k, v in attrs.items()
        if k.startswith("rung_") and k.removeprefix("rung_").isdigit()
    }

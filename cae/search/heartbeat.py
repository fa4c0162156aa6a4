"""The one stale-trial query Optuna lacks: RUNNING trials that never sent a heartbeat.

Optuna fails a RUNNING trial whose last heartbeat is older than the grace period, but never one that
has no heartbeat at all; such a trial would stay RUNNING for ever (and a rerun wait for it). Its
worker died, or its disk filled, or its database went away for good, between creating the trial and
its first heartbeat. Used by :class:`cae.search.resilient.ResilientStorage`.

Private Optuna names used, because no public API answers this query: ``optuna.storages._rdb.models``
(the trial and heartbeat tables) and ``_create_scoped_session`` (the session Optuna's own queries use).
"""

from __future__ import annotations

import datetime
from typing import Any

from optuna.trial import TrialState


def never_beat(backend: Any, study_id: int, grace: float) -> list[int]:
    """Ids of ``study_id``'s RUNNING trials started over ``grace`` seconds ago without a heartbeat.

    ``backend`` is an ``RDBStorage``. The start is the creating host's clock; a healthy trial has no
    heartbeat only for the milliseconds before its first one.
    """
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    trial, beat = models.TrialModel, models.TrialHeartbeatModel
    # Optuna 5 stores the start as naive UTC (the column behind TrialModel.datetime_start).
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    with _create_scoped_session(backend.scoped_session) as session:
        rows = (
            session.query(trial.trial_id)
            .outerjoin(beat, beat.trial_id == trial.trial_id)
            .filter(
                trial.study_id == study_id,
                trial.state == TrialState.RUNNING,
                beat.trial_id.is_(None),
                trial._datetime_start_utc < now - datetime.timedelta(seconds=grace),
            )
            .all()
        )
    return [row[0] for row in rows]

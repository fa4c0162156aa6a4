"""The trials of dead workers, failed and queued again: Optuna's heartbeat, and what it leaves open.

Optuna fails a RUNNING trial whose heartbeat went stale. Two cases it does not cover are closed here:
a trial that never sent a heartbeat (its worker died, or the database went away, right after creating
it) is failed and retried like a stale one; and right after an outage a worker waits one grace period
before judging others, whose heartbeats could not be written meanwhile.
"""

from __future__ import annotations

import datetime
import time
import warnings
from typing import Any

from cae.search.outage import MAX_BACKOFF, outage_of


def fail_stale_trials(study: Any, storage: Any) -> None:
    """Fail (and queue again) the trials of dead workers of ``study`` (on ``storage``, from
    :func:`cae.search.storage.open_storage`): Optuna's stale ones, and RUNNING trials that never sent a
    heartbeat. Right after an outage this process first waits one grace period, so the other workers'
    heartbeats, which could not be written meanwhile, are written again before anyone is judged dead."""
    import optuna

    outage = outage_of(storage)
    if outage is None:  # a journal file: no heartbeat (README: how its stale trials are handled)
        return
    grace = storage.grace_period or 2 * storage.heartbeat_interval
    if outage.ended_within(grace + 2 * MAX_BACKOFF):
        back_for = 0.0 if outage.since is not None else time.monotonic() - outage.ended  # not seen back yet: 0
        left = grace + 2 * MAX_BACKOFF - back_for
        print(
            f"waiting {left:.0f} s before judging other workers' trials (their heartbeats resume after the outage)",
            flush=True,
        )
        time.sleep(max(0.0, left))
    with warnings.catch_warnings():  # "experimental" since Optuna 2.9; the heartbeat relies on it
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
        _fail_silent_trials(study, storage, grace)


def _fail_silent_trials(study: Any, storage: Any, grace: float) -> None:
    """RUNNING trials started over ``grace`` seconds ago that never sent a heartbeat: failed and queued
    again as Optuna does for a stale one. Optuna's stale-trial query skips them (no heartbeat row), and
    its storage API has no query for them: this reads its tables (``trials``, ``trial_heartbeats``,
    ``studies``, the schema its migrations keep) through its public engine."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState
    from sqlalchemy import text

    cutoff = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(seconds=grace)
    query = text(
        "SELECT t.trial_id FROM trials t JOIN studies s ON s.study_id = t.study_id "
        "LEFT JOIN trial_heartbeats h ON h.trial_id = t.trial_id "
        "WHERE s.study_name = :name AND t.state = 'RUNNING' AND h.trial_id IS NULL AND t.datetime_start < :cutoff"
    )
    with storage.engine.connect() as connection:
        silent = [row[0] for row in connection.execute(query, {"name": study.study_name, "cutoff": cutoff})]
    retry = storage.get_heartbeat_stale_trial_callback()
    for trial_id in silent:
        try:
            failed = storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        except UpdateFinishedTrialError:  # another worker failed it first
            continue
        if failed and retry is not None:
            retry(study, storage.get_trial(trial_id))


__all__ = ["fail_stale_trials"]

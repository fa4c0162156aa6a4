"""Queueing a trial's point again when its failure was not the point's fault.

Optuna's heartbeat re-queues the trial of a worker that died (``RetryHeartbeatStaleTrialCallback``,
:mod:`cae.search.study`); this module covers the two failures it does not see: a trial stopped by
Ctrl-C or SIGTERM, and one whose tracking server stopped answering. A retry is tagged ``retry_of``
and stands in for the trial it retries (:func:`retried`) at the rungs and in the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cae.errors import failure_reason, first_line
from cae.search.study import FINISHED
from cae.space import SearchSpace
from cae.tracking.patience import TrackingUnavailable

UNANSWERED = f"{TrackingUnavailable.__name__}: "  # how such a trial's fail_reason starts (errors.failure_reason)
ROLE_ATTRS = ("reference", "enqueued", "recipe")  # what a queued point is; kept when it is queued again


def queue_again(study: Any, trial: Any) -> None:
    """Queue ``trial``'s point once more, tagged ``retry_of``: a failure that was not the point's fault.

    What the point is (the reference, an enqueued recipe) goes with it, as Optuna's own heartbeat
    retry keeps it; not the failure's attrs (its ``fail_reason`` would mark the retry failed too).
    """
    kept = {k: trial.user_attrs[k] for k in ROLE_ATTRS if k in trial.user_attrs}
    study.enqueue_trial(trial.params, user_attrs={**kept, "retry_of": trial.number}, skip_if_exists=False)


def earlier_attempts(trial: Any) -> list[int]:
    """The trials ``trial`` retries, the first first: the heartbeat's (``retry_history``, every
    earlier attempt) or ours (``retry_of``, the one it was queued from); empty if it is no retry."""
    history = trial.system_attrs.get("retry_history")
    if history:
        return [int(n) for n in history]
    return [int(trial.user_attrs["retry_of"])] if "retry_of" in trial.user_attrs else []


def retried(trials: Sequence[Any]) -> set[int]:
    """Numbers of the trials a later trial retries (:func:`earlier_attempts`). The retry stands in
    for them: its point must not count twice."""
    return {n for t in trials for n in earlier_attempts(t)}


def requeue_interrupted(study: Any, number: int | None, space: SearchSpace, trials: int, prefix: str = "") -> bool:
    """Queue again trial ``number``'s point, which a Ctrl-C or SIGTERM just ended in this process.

    The heartbeat re-queues the trial of a worker that died; a trial the user stopped ends FAIL
    ("interrupted ...") instead, and stopping a search to run the same command later must go on
    with it rather than lose it (the default study, run in segments, lost its most trained trials so).
    Only the process that ran the trial queues it, once; a trial stopped before Optuna recorded it
    FAIL stays RUNNING and the heartbeat retries it instead. Not queued: a trial stopped before its
    point was sampled, and one the study's budget has no room for (its finished and queued trials).
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
        queue_again(study, trial)
    except Exception as err:  # e.g. the storage went away too: the stop itself must go on
        print(f"{prefix}note: trial {number} could not be queued again ({first_line(err)})", flush=True)
        return False
    print(f"{prefix}trial {number} is queued again (same parameters): the same command runs it again", flush=True)
    return True


def queued_again_after(err: BaseException) -> bool:
    """Whether a trial that ``err`` ended is queued again (an interrupt; a tracking server that
    stopped answering): the retry can go on from its last epoch (cae/search/resume.py)."""
    return isinstance(err, KeyboardInterrupt) or failure_reason(err).startswith(UNANSWERED)


def requeue_if_unanswered(study: Any, trial: Any) -> None:
    """A trial failed because the tracking server stopped answering: queue its point again (its
    training is not the trial's fault) and stop this worker with the server's one line."""
    if trial is None or trial.state.name != "FAIL":
        return
    reason = trial.user_attrs.get("fail_reason", "")
    if not reason.startswith(UNANSWERED):
        return
    queue_again(study, trial)
    what = reason.removeprefix(UNANSWERED).split("; the study is intact")[0]
    raise TrackingUnavailable(
        f"{what}; trial {trial.number} is queued again and the study is intact: run the "
        "same command again once the server answers"
    )

"""A study storage that waits out outages of its database (a PostgreSQL restart or failover, a
network drop), so a routine database restart does not kill every worker of a study.

:class:`ResilientStorage` wraps Optuna's ``RDBStorage`` (in ``_CachedStorage``, as
``optuna.get_storage`` would) and forwards every storage call. A call that fails because the
database cannot be reached is retried with backoff for up to ``CAE_STORAGE_PATIENCE`` seconds
since the database went away; one line is printed when it goes and one when it is back. Meanwhile
the trial in flight keeps training: its reports and attributes are queued and written, in order,
when the database returns (the heartbeat thread notices), and its pruning reads are answered from
this worker's last copy of the study. Past the patience a one-line ``StorageUnavailable`` ends the
worker; the study is intact and the same command resumes it.

SQLite's "database is locked" is no outage (the 30-second driver timeout already waited for it);
a full disk under a SQLite study is an ``ENOSPC`` error naming the folder, like any full disk.
"""

from __future__ import annotations

import abc
import contextlib
import copy
import datetime
import threading
import time
import uuid
from collections.abc import Callable, Container
from pathlib import Path
from typing import Any

from optuna.exceptions import UpdateFinishedTrialError

# Optuna's private names used here, each because no public one does the job:
# - ``_CachedStorage``: what ``optuna.create_study`` wraps an ``RDBStorage`` in (its cache of
#   finished trials); wrapping it ourselves keeps that behaviour behind the proxy.
# - ``optuna.storages._heartbeat.BaseHeartbeat``: Optuna runs the heartbeat thread and
#   ``fail_stale_trials`` only for storages that are instances of it (and calls its abstract
#   ``_get_stale_trial_ids``).
# - in ``_never_beat``: the RDB models and ``_create_scoped_session``, for the one query (RUNNING
#   trials that never sent a heartbeat) the storage API cannot express.
from optuna.storages import BaseStorage, _CachedStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import FrozenTrial, TrialState

from cae.errors import disk_full, first_line
from cae.search.heartbeat import never_beat
from cae.search.outage import Outage, is_outage, sqlite_disk_full

_MAX_BACKOFF = 4.0  # seconds between two tries at most: a returning database is noticed quickly
_TOKEN = "cae_create_token"  # system attr: finds a trial whose creation committed but whose reply was lost
# A running trial's own writes: idempotent upserts, safe to queue and replay in order.
_DEFERRED = ("set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr")
# Answered without the database: forwarded as they are (no queue flush, no retry).
_LOCAL = ("get_heartbeat_interval", "get_heartbeat_stale_trial_callback", "remove_session")


def _forwarded(cls: type) -> type:
    """Forward every storage method that Optuna's base classes leave abstract, and that ``cls`` does
    not define itself, to the wrapped storage: retried through outages, queued for a running
    trial's own writes (:data:`_DEFERRED`), or as they are (:data:`_LOCAL`).

    The list comes from the base classes' ``__abstractmethods__``, so an Optuna release that adds
    a storage method gets it forwarded without a hand-kept list here; the bases' concrete methods
    (``get_n_trials``, ``get_best_trial`` ...) are inherited and read through the methods above.
    """
    names = (BaseStorage.__abstractmethods__ | BaseHeartbeat.__abstractmethods__ | set(_LOCAL)) - set(vars(cls))
    for name in names:
        setattr(cls, name, _forward(name))
    return abc.update_abstractmethods(cls)


class ResilientStorage(BaseStorage, BaseHeartbeat):
    """The storage proxy (see the module docstring); Optuna uses it like any ``BaseStorage``."""

    def __init__(self, backend: Any, label: str, patience: float, sqlite_file: Path | None = None):
        self._inner = _CachedStorage(backend)
        self._backend = backend
        self._grace = backend.grace_period or 2 * (backend.heartbeat_interval or 0)  # Optuna's own default
        self._sqlite_file = sqlite_file
        self._outage = Outage(label, patience)
        self._lock = threading.RLock()  # the heartbeat thread and the trial share the queue
        self._backlog: list[tuple[str, tuple[Any, ...]]] = []
        self._live: set[int] = set()  # trials this process runs (it sends their heartbeats)
        self._snapshots: dict[int, list[FrozenTrial]] = {}  # study id -> its trials, as last read
        self._heartbeat_noted = False

    # ---- one attempt, retries, queued writes ------------------------------------------------

    def _attempt(self, call: Callable[[], Any]) -> Any:
        """The queued writes (in order), then ``call``; success ends an outage."""
        try:
            with self._lock:
                while self._backlog:
                    name, args = self._backlog[0]
                    with contextlib.suppress(UpdateFinishedTrialError):  # another worker failed it meanwhile
                        getattr(self._inner, name)(*args)
                    self._backlog.pop(0)
            result = call()
        except Exception as err:
            full = sqlite_disk_full(err, self._sqlite_file)
            if full is not None:
                raise full from err
            raise
        with self._lock:
            self._outage.end()
        return result

    def _retry(self, call: Callable[[], Any]) -> Any:
        """``call()``, retried with backoff while the storage is unreachable, up to the patience."""
        backoff = 0.5
        while True:
            try:
                return self._attempt(call)
            except Exception as err:
                if not is_outage(err):
                    raise
                with self._lock:
                    self._outage.begin(err, bool(self._live))
                    self._outage.check()
            time.sleep(max(0.05, min(backoff, self._outage.left())))
            backoff = min(backoff * 2, _MAX_BACKOFF)

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self._retry(lambda: getattr(self._inner, name)(*args, **kwargs))

    def _deferred(self, name: str, trial_id: int, *args: Any) -> None:
        """A running trial's write: queued while the storage is away, so its training goes on."""
        if trial_id not in self._live:
            return self._call(name, trial_id, *args)
        with self._lock:
            if self._outage.down:  # known outage: queue without probing (the heartbeat probes)
                self._outage.check()
                self._backlog.append((name, (trial_id, *args)))
                return None
        try:
            self._attempt(lambda: getattr(self._inner, name)(trial_id, *args))
        except Exception as err:
            if not is_outage(err):
                raise
            with self._lock:
                self._outage.begin(err, True)
                self._backlog.append((name, (trial_id, *args)))
        return None

    def _read(self, call: Callable[[], Any], fallback: Callable[[], Any]) -> Any:
        """A read; while this process runs a trial and the storage is away: ``fallback()``."""
        if self._live:
            if self._outage.down and fallback() is not None:
                self._outage.check()
                return fallback()
            if not self._outage.down:
                try:
                    return self._attempt(call)
                except Exception as err:
                    if not is_outage(err):
                        raise
                    with self._lock:
                        self._outage.begin(err, True)
                    if fallback() is not None:
                        return fallback()
        return self._retry(call)

    # ---- trials and their states -------------------------------------------------------------

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        """A new trial, created once even when the reply to a committed creation was lost."""
        token = uuid.uuid4().hex
        if template_trial is None:
            template_trial = FrozenTrial(
                number=-1,
                state=TrialState.RUNNING,
                value=None,
                values=None,
                datetime_start=datetime.datetime.now(),
                datetime_complete=None,
                params={},
                distributions={},
                user_attrs={},
                system_attrs={},
                intermediate_values={},
                trial_id=-1,
            )
        else:
            template_trial = copy.deepcopy(template_trial)
        template_trial.system_attrs = {**template_trial.system_attrs, _TOKEN: token}
        tries = 0

        def create() -> int:
            nonlocal tries
            tries += 1
            if tries > 1:  # did an earlier attempt commit before its connection dropped?
                for t in self._inner.get_all_trials(study_id, deepcopy=False):
                    if t.system_attrs.get(_TOKEN) == token:
                        return t._trial_id
            return self._inner.create_new_trial(study_id, template_trial=template_trial)

        trial_id = self._retry(create)
        if template_trial.state == TrialState.RUNNING:
            self._live.add(trial_id)
        return trial_id

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Any = None) -> bool:
        try:
            done = self._call("set_trial_state_values", trial_id, state=state, values=values)
        except UpdateFinishedTrialError:
            trial = self._call("get_trial", trial_id)  # an earlier attempt committed, or another worker did
            if trial.state != state or [float(v) for v in values or []] != list(trial.values or []):
                if trial_id not in self._live:
                    raise  # e.g. fail_stale_trials racing another worker: Optuna expects this error
                # Another worker judged this trial dead (its heartbeat stopped with the storage) and
                # re-queued it; Optuna would fail on this error with one of its own.
                self._live.discard(trial_id)
                print(
                    f"note: trial {trial.number} was failed by another worker while the storage was away; "
                    "its result is dropped and it runs again",
                    flush=True,
                )
                return False
            done = True
        if state.is_finished():
            self._live.discard(trial_id)
        elif done and state == TrialState.RUNNING:
            self._live.add(trial_id)  # an enqueued trial this process took
        return done

    def get_trial(self, trial_id: int) -> FrozenTrial:
        return self._read(lambda: self._inner.get_trial(trial_id), lambda: self._last_copy(trial_id))

    def get_all_trials(
        self, study_id: int, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        trials = self._read(
            lambda: self._inner.get_all_trials(study_id, deepcopy=False), lambda: self._snapshots.get(study_id)
        )
        self._snapshots[study_id] = trials
        chosen = [t for t in trials if states is None or t.state in states]
        return copy.deepcopy(chosen) if deepcopy else chosen

    def _last_copy(self, trial_id: int) -> FrozenTrial | None:
        """The trial as last read, with the writes still queued for it applied."""
        found = next((t for ts in self._snapshots.values() for t in ts if t._trial_id == trial_id), None)
        if found is None:
            return None
        trial = copy.deepcopy(found)
        with self._lock:
            for name, (tid, key, value) in self._backlog:
                if tid == trial_id and name == "set_trial_intermediate_value":
                    trial.intermediate_values = {**trial.intermediate_values, key: value}
                elif tid == trial_id:
                    attrs = "user_attrs" if name == "set_trial_user_attr" else "system_attrs"
                    setattr(trial, attrs, {**getattr(trial, attrs), key: value})
        return trial

    # ---- heartbeat ---------------------------------------------------------------------------

    def record_heartbeat(self, trial_id: int) -> None:
        """Never raises: one exception would end Optuna's heartbeat thread for the whole trial.

        It is also what notices the storage's return while the trial trains (and writes the
        queued reports), every ``heartbeat_interval`` seconds.
        """
        self._live.add(trial_id)
        try:
            self._attempt(lambda: self._inner.record_heartbeat(trial_id))
        except Exception as err:
            with self._lock:
                if is_outage(err):
                    self._outage.begin(err, True)
                elif not self._heartbeat_noted and not disk_full(err):  # a full disk: the trial reports it
                    self._heartbeat_noted = True
                    first = first_line(err)
                    print(f"note: a heartbeat of trial id {trial_id} was not recorded ({first})", flush=True)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        stale = self._retry(lambda: self._inner._get_stale_trial_ids(study_id) + self._never_beat(study_id))
        # Right after an outage nobody's heartbeat could be written: give the other workers one
        # grace period (and their own retry's backoff) to send theirs before their trials count
        # as dead. A worker that really died is failed a little later.
        return [] if self._outage.ended_within(self._grace + 2 * _MAX_BACKOFF) else stale

    def _never_beat(self, study_id: int) -> list[int]:
        return never_beat(self._backend, study_id, self._grace)


def _forward(name: str) -> Callable[..., Any]:
    if name in _LOCAL:

        def method(self: ResilientStorage, *args: Any, **kwargs: Any) -> Any:
            return getattr(self._inner, name)(*args, **kwargs)
    elif name in _DEFERRED:

        def method(self: ResilientStorage, trial_id: int, *args: Any) -> Any:
            return self._deferred(name, trial_id, *args)
    else:

        def method(self: ResilientStorage, *args: Any, **kwargs: Any) -> Any:
            return self._call(name, *args, **kwargs)

    method.__name__ = name
    return method


_forwarded(ResilientStorage)

"""Riding out the study database's absence (a PostgreSQL restart or failover, a network drop).

It is ridden out at the connection: pooled connections are checked before use (``pool_pre_ping``) and
every new connection is retried with backoff (SQLAlchemy's ``do_connect`` event) for up to
``CAE_STORAGE_PATIENCE`` seconds, so a storage call made meanwhile waits instead of failing; one line
says when the database went, one when it is back, and past the patience a one-line
:class:`StorageUnavailable` ends the worker with the study intact. A statement in flight when the
connection goes (SQLAlchemy marks the connection invalidated) is run again through a new, waiting
connection: Optuna would fail the trial on it (or end its heartbeat thread). SQLite waits for another
process's write lock by its own busy timeout, set to the patience (:mod:`cae.search.storage`).
"""

from __future__ import annotations

import functools
import math
import os
import time
from typing import Any

from cae.errors import CAEError, causes, first_line

PATIENCE_ENV = "CAE_STORAGE_PATIENCE"
DEFAULT_PATIENCE = 300.0  # seconds: a database restart or a failover takes well under a minute
MAX_BACKOFF = 4.0  # seconds between two connection attempts at most: a returning database is noticed quickly


class StorageUnavailable(CAEError):
    """The storage stayed unreachable past the patience: the worker stops; the study is intact."""


def patience() -> float:
    """Seconds to wait for an unreachable storage: ``CAE_STORAGE_PATIENCE`` (default 300, 0: no wait)."""
    text = os.environ.get(PATIENCE_ENV, "").strip()
    if not text:
        return DEFAULT_PATIENCE
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value >= 0:  # also rejects nan
        raise CAEError(f"{PATIENCE_ENV} must be a number of seconds >= 0, got {text!r}")
    return value


class Outage:
    """The database's absence as this process sees it: when it went, saying so once, and when it came back."""

    def __init__(self, label: str, patience: float):
        self.label, self.patience = label, patience
        self.since: float | None = None
        self.ended = -math.inf
        self.reached = False  # connected once: from then on, a failed connection is an outage

    def connect(self, dialect: Any, conn_rec: Any, cargs: Any, cparams: Any) -> Any:
        """SQLAlchemy's ``do_connect``: a new connection, retried with backoff while the database is away."""
        backoff = 0.5
        while True:
            try:
                connection = dialect.connect(*cargs, **cparams)
            except dialect.loaded_dbapi.Error as err:
                if not self.reached:  # the storage must answer at the start: a bad URL or login is said at once
                    raise
                self.begin(err)
                left = self.patience - (time.monotonic() - (self.since or time.monotonic()))
                if left <= 0:
                    raise StorageUnavailable(
                        f"storage {self.label} unreachable for {self.patience:.0f} s ({first_line(err)}); the study "
                        f"is intact: run the same command again once it is back (it resumes), or set {PATIENCE_ENV} "
                        "to wait longer"
                    ) from None
                time.sleep(min(backoff, left))
                backoff = min(2 * backoff, MAX_BACKOFF)
                continue
            self.reached = True
            self.end()
            return connection

    def begin(self, err: BaseException) -> None:
        if self.since is None:
            self.since = time.monotonic()
            print(
                f"storage {self.label} unreachable ({first_line(err)}); retrying for up to {self.patience:.0f} s "
                f"({PATIENCE_ENV}); the running trial keeps training until its next report",
                flush=True,
            )

    def end(self) -> None:
        if self.since is not None:
            print(f"storage {self.label} is back after {time.monotonic() - self.since:.0f} s", flush=True)
            self.since, self.ended = None, time.monotonic()

    def ended_within(self, seconds: float) -> bool:
        return self.since is not None or time.monotonic() - self.ended < seconds


_OUTAGES: dict[int, Outage] = {}  # id(storage) -> what its connections have seen


def ridden_out(storage: Any, outage: Outage) -> None:
    """From now on ``storage``'s new connections wait for the database, and its statements cut off
    mid-flight are run again, both for up to ``outage.patience``."""
    from sqlalchemy import event

    outage.reached = True
    event.listen(storage.engine, "do_connect", outage.connect)
    _OUTAGES[id(storage)] = outage


def outage_of(storage: Any) -> Outage | None:
    """What this process's connections to ``storage`` (from :func:`open_storage`) have seen of the
    database's absence; None for a journal file, which has no connection and no heartbeat."""
    return _OUTAGES.get(id(storage))


def lost_connection(err: BaseException) -> bool:
    """Whether ``err`` comes from a connection that went mid-statement (SQLAlchemy's own judgement, which
    invalidates it), rather than from the statement itself."""
    from sqlalchemy.exc import DBAPIError

    return any(isinstance(cause, DBAPIError) and cause.connection_invalidated for cause in causes(err))


def _ridden_out(method: Any) -> Any:
    """``method`` run again while its connection is lost mid-statement, up to the patience; the new
    connection waits for the database (:meth:`Outage.connect`). The transaction died with the connection,
    so running it again is safe. Only a commit that landed but whose answer was lost is run twice: the
    second is a duplicate write or, for a trial's final state, Optuna's error that the trial is finished."""
    import optuna

    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        first = None
        while True:
            try:
                return method(self, *args, **kwargs)
            except optuna.exceptions.StorageInternalError as err:
                outage = outage_of(self)
                if outage is None or not lost_connection(err):
                    raise
                first = first or time.monotonic()
                if time.monotonic() - first >= outage.patience:
                    raise StorageUnavailable(
                        f"storage {outage.label} kept dropping the connection for {outage.patience:.0f} s "
                        f"({first_line(err.__cause__ or err)}); the study is intact: run the same command again "
                        f"once it is stable, or set {PATIENCE_ENV} to wait longer"
                    ) from None

    return call


@functools.cache
def patient_storage() -> type:
    """Optuna's RDBStorage whose every statement rides out a lost connection (built on first use: the
    module itself does not import Optuna)."""
    import inspect

    import optuna

    class PatientRDBStorage(optuna.storages.RDBStorage):
        pass

    # Every method, not only the public API: Optuna's trial cache reads through some of its own. A method
    # that runs inside another's transaction never sees StorageInternalError, so wrapping it changes nothing.
    for name, method in vars(optuna.storages.RDBStorage).items():
        if inspect.isfunction(method) and not name.startswith("__"):
            setattr(PatientRDBStorage, name, _ridden_out(method))
    return PatientRDBStorage


__all__ = [
    "DEFAULT_PATIENCE",
    "MAX_BACKOFF",
    "PATIENCE_ENV",
    "Outage",
    "StorageUnavailable",
    "lost_connection",
    "outage_of",
    "patience",
    "patient_storage",
    "ridden_out",
]

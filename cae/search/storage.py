"""The study storage: Optuna's ``RDBStorage`` with its heartbeat (SQLite by default, PostgreSQL across
hosts) or a journal file, opened once per process; a database that goes away mid-study is waited for.

An outage (a PostgreSQL restart or failover, a network drop) is ridden out at the connection: pooled
connections are checked before use (``pool_pre_ping``) and every new connection is retried with
backoff (SQLAlchemy's ``do_connect`` event) for up to ``CAE_STORAGE_PATIENCE`` seconds, so a storage
call made meanwhile waits instead of failing; one line says when the database went, one when it is
back, and past the patience a one-line :class:`StorageUnavailable` ends the worker with the study
intact. A statement in flight when the connection goes (SQLAlchemy marks the connection invalidated)
is run again through a new, waiting connection: Optuna would fail the trial on it (or end its heartbeat
thread). SQLite waits for another process's write lock by its own busy timeout, set to the patience.

What Optuna's heartbeat leaves open (trials that never sent one, judging others right after an
outage) is closed in :mod:`cae.search.stale`.
"""

from __future__ import annotations

import errno
import functools
import math
import os
import shutil
import sqlite3
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cae.errors import CAEError, causes, first_line
from cae.locks import creating_schema
from cae.paths import ensure_dir
from cae.search_config import SearchConfig
from cae.urls import default_storage, journal_path, shown, sqlite_file, with_driver

PATIENCE_ENV = "CAE_STORAGE_PATIENCE"
DEFAULT_PATIENCE = 300.0  # seconds: a database restart or a failover takes well under a minute
MAX_RETRIES = 3  # a point whose worker dies (or is stopped) this often is given up: it may be what kills it
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


def storage_url(cfg: SearchConfig) -> str:
    return cfg.storage or default_storage()


def shared_across_hosts(cfg: SearchConfig) -> bool:
    """Whether workers on other hosts may share the study (a database server, not a local file)."""
    url = storage_url(cfg)
    return journal_path(url) is None and not url.startswith("sqlite")


def parse_storage_url(url: str) -> Any:
    """The SQLAlchemy URL of an RDB storage; a one-line error naming the forms that work."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url)
    except ArgumentError:
        raise CAEError(
            f"invalid storage URL {url!r}; expected sqlite:///path.db, postgresql://user@host/db or journal:///path.log"
        ) from None


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


def retry_callback() -> Any:
    """Optuna's retry of a failed trial: queued again with its parameters, its attributes and the epochs it
    reported (so the pruner judges the retry as it judged them), up to :data:`MAX_RETRIES` times."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # since 2.8
        return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES, inherit_intermediate_values=True)


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
def _patient_storage() -> type:
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


_OPENED: dict[tuple[str, int, int], Any] = {}  # one storage (one connection pool, one schema check) per process
_OUTAGES: dict[int, Outage] = {}  # id(storage) -> what its connections have seen


def open_storage(cfg: SearchConfig) -> Any:
    """The study's storage, created (schema included) on first use; the coordinator opens it before any
    worker starts. At the start the database must answer: one that cannot be opened is a one-line error."""
    url = storage_url(cfg)
    key = (url, cfg.heartbeat_interval, cfg.grace_period)
    if key not in _OPENED:
        _OPENED[key] = _open(cfg, url)
    return _OPENED[key]


def _open(cfg: SearchConfig, url: str) -> Any:
    import optuna
    from sqlalchemy import event

    journal = journal_path(url)
    if journal is not None:
        from optuna.storages.journal import JournalFileBackend

        ensure_dir(journal.absolute().parent)
        return optuna.storages.JournalStorage(JournalFileBackend(str(journal.absolute())))
    parsed = parse_storage_url(url)
    wait = patience()  # a bad CAE_STORAGE_PATIENCE fails here, before anything is created
    database = sqlite_file(url)
    if database is not None:
        ensure_dir(database.parent)
    # SQLite's busy timeout waits out another process's write lock; a server's connect timeout bounds one try.
    connect_args = {"timeout": max(30.0, wait)} if parsed.get_backend_name() == "sqlite" else {"connect_timeout": 20}
    outage = Outage(shown(url), wait)
    try:
        with warnings.catch_warnings(), creating_schema(url):  # two first workers on an empty file: one creates it
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # the heartbeat, since 2.8
            storage = _patient_storage()(
                with_driver(url),
                engine_kwargs={"connect_args": connect_args, "pool_pre_ping": True},
                heartbeat_interval=cfg.heartbeat_interval,
                grace_period=cfg.grace_period,
                # A trial whose worker died is failed and queued again (cae/search/retry.py).
                heartbeat_stale_trial_callback=retry_callback(),
            )
    except Exception as err:  # driver missing, host unreachable, bad credentials, bad path, full disk
        full = sqlite_disk_full(err, database)
        if full is not None:
            raise full from None
        raise CAEError(f"cannot open Optuna storage {shown(url)}: {first_line(err)}") from None
    outage.reached = True
    event.listen(storage.engine, "do_connect", outage.connect)
    _OUTAGES[id(storage)] = outage
    return storage


def outage_of(storage: Any) -> Outage | None:
    """What this process's connections to ``storage`` (from :func:`open_storage`) have seen of the
    database's absence; None for a journal file, which has no connection and no heartbeat."""
    return _OUTAGES.get(id(storage))


def open_existing_storage(url: str) -> Any:
    """The storage behind ``url`` for reading (the dashboard): nothing is created if it is missing, and
    a database without Optuna's tables is a one-line error rather than a new schema."""
    import optuna

    journal = journal_path(url)
    if journal is not None:
        if not journal.is_file():
            raise CAEError(f"journal storage {journal} does not exist (run `make search STORAGE={url}` first)")
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    parsed = parse_storage_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite and not (parsed.database and Path(parsed.database).is_file()):
        raise CAEError(f"no study storage at {url} (run `make search` first, or pass STORAGE=)")
    try:
        storage = optuna.storages.RDBStorage(
            with_driver(url),
            skip_compatibility_check=True,
            skip_table_creation=True,
            engine_kwargs={"connect_args": {"timeout": 30} if sqlite else {"connect_timeout": 20}},
        )
        storage.get_all_studies()
    except Exception as err:  # driver, host, credentials, or a database without Optuna's tables
        raise CAEError(f"cannot read Optuna storage {shown(url)}: {first_line(err)}") from None
    return storage


# --------------------------------------------------------------------------------------------
# Errors the storage ends a worker with


def sqlite_disk_full(err: BaseException, study_file: Path | None) -> OSError | None:
    """SQLite's full disk (``SQLITE_FULL``, or an I/O error on a full disk) as ENOSPC naming the study
    file, so the search stops with "no space left on <folder>" as for any full disk."""
    if study_file is None:
        return None
    cause: BaseException | None = err
    while cause is not None and not isinstance(cause, sqlite3.Error):
        cause = getattr(cause, "orig", None) or cause.__cause__
    code = getattr(cause, "sqlite_errorcode", None)
    if code is None:
        return None
    folder = study_file.parent
    full = (code & 0xFF) == sqlite3.SQLITE_FULL or (
        (code & 0xFF) == sqlite3.SQLITE_IOERR and folder.exists() and shutil.disk_usage(folder).free < 1 << 20
    )
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(study_file)) if full else None


@contextmanager
def storage_errors(study_file: Path | None = None) -> Iterator[None]:
    """Surface the storage's own error when Optuna fails on top of it.

    When a trial's final state cannot be written (the storage gone past the patience, or a full disk
    under a SQLite study), Optuna raises an error of its own from a ``finally`` block; the real cause is
    in the chain. ``study_file``: the SQLite study, whose full disk is named as ENOSPC on its folder.
    """
    try:
        yield
    except Exception as err:
        for cause in causes(err):
            if _is_storage_error(cause):
                if cause is err:
                    raise
                raise cause.with_traceback(None) from None
            full = sqlite_disk_full(cause, study_file)
            if full is not None:
                raise full from None
        raise


def _is_storage_error(err: BaseException) -> bool:
    return isinstance(err, StorageUnavailable) or (isinstance(err, OSError) and err.errno == errno.ENOSPC)


__all__ = [
    "DEFAULT_PATIENCE",
    "MAX_BACKOFF",
    "PATIENCE_ENV",
    "Outage",
    "StorageUnavailable",
    "lost_connection",
    "open_existing_storage",
    "open_storage",
    "outage_of",
    "parse_storage_url",
    "patience",
    "sqlite_disk_full",
    "storage_errors",
    "storage_url",
]

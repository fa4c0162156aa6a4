"""Telling a database outage from other storage errors, the one line said at each end of one, and
the one-line errors a worker ends with (the patience spent, a full disk under a SQLite study).

Used by :mod:`cae.search.resilient` and the workers. An outage is a connection-level failure: the
server is down or restarting, the network dropped, a pooled connection died with the server.
Everything else (a bad value, a missing table, SQLite's "database is locked") is an error to
report, not to wait out. ``CAE_STORAGE_PATIENCE`` (seconds, default 300) bounds the wait.
"""

from __future__ import annotations

import errno
import math
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cae.errors import CAEError, disk_full, first_line

PATIENCE_ENV = "CAE_STORAGE_PATIENCE"
DEFAULT_PATIENCE = 300.0  # seconds: a database restart or a failover takes well under a minute
# SQLite errors that mean the file cannot be reached right now (a network filesystem dropping out).
# "database is locked": another process held a write lock past the 30 s busy timeout (a long backup,
# a stuck reader); waited out like an outage, so a finished trial's result is retried, not discarded.
_SQLITE_UNREACHABLE = ("unable to open database file", "disk I/O error", "database is locked")


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


def is_outage(err: BaseException) -> bool:
    """True if ``err`` (or the SQLAlchemy error Optuna wrapped it around) is a lost connection."""
    import sqlalchemy.exc as sa

    if isinstance(err, OSError):  # a full disk (see sqlite_disk_full) is not waited out
        return False
    cause: BaseException | None = err
    for _ in range(8):  # Optuna raises StorageInternalError from the SQLAlchemy error
        if cause is None:
            return False
        if isinstance(cause, sa.DBAPIError) and cause.connection_invalidated:
            return True
        if isinstance(cause, (sa.DisconnectionError, sa.TimeoutError)):  # TimeoutError: pool checkout
            return True
        if isinstance(cause, (sa.OperationalError, sa.InterfaceError)):
            if isinstance(cause.orig, sqlite3.Error):
                return any(text in str(cause.orig) for text in _SQLITE_UNREACHABLE)
            return _server_away(cause.orig)
        cause = cause.__cause__
    return False


# A database server that answers to refuse (wrong login, no such database, its own disk full) is no
# outage to wait out: PostgreSQL's SQLSTATE classes 08 (connection) and 57P0x (shutting down,
# starting up) are; without a code, the driver failed to reach the server at all.
_REFUSALS = ("authentication failed", "does not exist", "no pg_hba.conf entry", "permission denied")


def _server_away(orig: BaseException | None) -> bool:
    code = getattr(orig, "pgcode", None)
    if code:
        return code.startswith("08") or code in ("57P01", "57P02", "57P03")
    return not any(text in str(orig) for text in _REFUSALS)


def reason(err: BaseException) -> str:
    """The driver's own first line ("connection to server ... failed: Connection refused")."""
    cause: BaseException | None = err
    while cause is not None and getattr(cause, "orig", None) is None and cause.__cause__ is not None:
        cause = cause.__cause__
    shown = getattr(cause, "orig", None) or cause or err
    return first_line(shown)


class Outage:
    """When the storage went away, saying so once, and saying when it is back."""

    def __init__(self, label: str, patience: float):
        self.label, self.patience = label, patience
        self.since: float | None = None
        self.ended = -math.inf
        self.why = ""

    @property
    def down(self) -> bool:
        return self.since is not None

    def begin(self, err: BaseException, training: bool) -> None:
        if self.since is not None:
            return
        self.since, self.why = time.monotonic(), reason(err)
        going_on = "; the running trial keeps training" if training else ""
        print(
            f"storage {self.label} unreachable ({self.why}); retrying for up to {self.patience:.0f} s "
            f"({PATIENCE_ENV}){going_on}",
            flush=True,
        )

    def end(self) -> None:
        if self.since is None:
            return
        print(f"storage {self.label} is back after {time.monotonic() - self.since:.0f} s", flush=True)
        self.since, self.ended = None, time.monotonic()

    def left(self) -> float:
        """Seconds of patience left (all of it when the storage is up)."""
        return self.patience if self.since is None else self.patience - (time.monotonic() - self.since)

    def check(self) -> None:
        """Raise :class:`StorageUnavailable` once the outage has lasted longer than the patience."""
        if self.since is not None and self.left() <= 0:
            raise StorageUnavailable(
                f"storage {self.label} unreachable for {self.patience:.0f} s ({self.why}); the study is intact: "
                f"run the same command again once it is back (it resumes), or set {PATIENCE_ENV} to wait longer"
            )

    def ended_within(self, seconds: float) -> bool:
        """True during an outage and for ``seconds`` after it."""
        return self.since is not None or time.monotonic() - self.ended < seconds


def sqlite_disk_full(err: BaseException, study_file: Path | None) -> OSError | None:
    """SQLite's "database or disk is full" (or an I/O error on a full disk) as ENOSPC naming the
    study file, so the search stops with "no space left on <folder>" as for any full disk."""
    if study_file is None or disk_full(err):
        return None
    cause: BaseException | None = err
    while cause is not None and not isinstance(cause, sqlite3.OperationalError):
        cause = getattr(cause, "orig", None) or cause.__cause__
    text = str(cause) if cause is not None else ""
    folder = study_file.parent
    full = "database or disk is full" in text or (
        "disk I/O error" in text and folder.exists() and shutil.disk_usage(folder).free < 1 << 20
    )
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(study_file)) if full else None


@contextmanager
def storage_errors() -> Iterator[None]:
    """Surface the storage's own error when Optuna fails on top of it.

    When a trial's final state cannot be written (the storage gone past the patience, or a full
    disk under a SQLite study), Optuna's ``_run_trial`` raises an ``UnboundLocalError`` or an
    ``AssertionError`` of its own from a ``finally`` block; the real cause is in the chain.
    """
    try:
        yield
    except Exception as err:
        cause: BaseException | None = err
        while cause is not None and not _is_storage_error(cause):
            cause = cause.__context__
        if cause is None or cause is err:
            raise
        raise cause.with_traceback(None) from None


def _is_storage_error(err: BaseException) -> bool:
    return isinstance(err, StorageUnavailable) or (isinstance(err, OSError) and err.errno == errno.ENOSPC)

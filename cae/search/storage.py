"""The study storage: Optuna's ``RDBStorage`` with its heartbeat (SQLite by default, PostgreSQL across
hosts) or a journal file, opened once per process; a database that goes away mid-study is waited for
(:mod:`cae.search.outage`), and what Optuna's heartbeat leaves open is closed in :mod:`cae.search.stale`.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cae.errors import CAEError, causes, first_line
from cae.locks import creating_schema
from cae.paths import ensure_dir
from cae.search.outage import Outage, StorageUnavailable, patience, patient_storage, ridden_out
from cae.search_config import SearchConfig
from cae.urls import default_storage, journal_path, shown, sqlite_file, with_driver

MAX_RETRIES = 3  # a point whose worker dies (or is stopped) this often is given up: it may be what kills it


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


def retry_callback() -> Any:
    """Optuna's retry of a failed trial: queued again with its parameters, its attributes and the epochs it
    reported (so the pruner judges the retry as it judged them), up to :data:`MAX_RETRIES` times."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # since 2.8
        return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES, inherit_intermediate_values=True)


_OPENED: dict[tuple[str, int, int], Any] = {}  # one storage (one connection pool, one schema check) per process


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
            storage = patient_storage()(
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
    ridden_out(storage, outage)
    return storage


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
    "open_existing_storage",
    "open_storage",
    "parse_storage_url",
    "sqlite_disk_full",
    "storage_errors",
    "storage_url",
]

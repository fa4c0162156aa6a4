"""The study storage (cae/search/storage.py) while its database is away (cae/search/outage.py),
in-process on a real PostgreSQL cluster that is stopped and started again (no TensorFlow, no mocks).
The same faults through the `cae search` CLI are in tests/test_faults.py.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable

import optuna
import pytest

from cae.errors import CAEError
from cae.search.outage import DEFAULT_PATIENCE, PATIENCE_ENV, StorageUnavailable, patience
from cae.search.storage import open_storage, storage_errors
from cae.search_config import SearchConfig

# ask/tell by hand with a heartbeat storage: Optuna warns that the heartbeat is meant for optimize().
pytestmark = [
    pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize"),
    pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
]


@pytest.fixture
def open_study(own_postgres, monkeypatch) -> Callable[..., tuple[optuna.Study, object]]:
    """``open_study(database, patience, grace=2)``: study "s" in ``database`` through ``open_storage``."""
    created: set[str] = set()

    def make(database: str, patience: float, grace: int = 2) -> tuple[optuna.Study, object]:
        if database not in created:
            own_postgres.create_database(database)
            created.add(database)
        monkeypatch.setenv(PATIENCE_ENV, str(patience))
        storage = open_storage(
            SearchConfig(storage=own_postgres.url(database), heartbeat_interval=1, grace_period=grace)
        )
        return optuna.create_study(study_name="s", storage=storage, load_if_exists=True), storage

    return make


@pytest.mark.slow  # a PostgreSQL cluster stopped and started again
def test_a_report_while_the_database_is_away_waits_for_it_and_lands(own_postgres, open_study, capsys):
    study, _ = open_study("reports", patience=60)
    trial = study.ask()
    trial.report(1.0, 0)
    own_postgres.stop_server()
    threading.Timer(4, own_postgres.start_again).start()
    started = time.monotonic()
    trial.report(0.5, 1)  # waits for the database instead of failing
    assert time.monotonic() - started >= 3
    trial.set_user_attr("note", "written later")
    study.tell(trial, 0.25)
    out = capsys.readouterr().out
    assert "unreachable (connection" in out and "the running trial keeps training" in out and "is back after" in out
    done = study.trials[0]
    assert done.state.name == "COMPLETE" and done.intermediate_values == {0: 1.0, 1: 0.5}
    assert done.user_attrs == {"note": "written later"}


@pytest.mark.slow  # a PostgreSQL cluster stopped and started again
def test_past_the_patience_one_line_error_and_the_trial_is_left_for_a_rerun(own_postgres, open_study):
    study, _ = open_study("patience", patience=2)

    def objective(trial: optuna.Trial) -> float:
        trial.report(1.0, 0)
        own_postgres.stop_server()
        time.sleep(1)
        trial.report(0.5, 1)  # the database stays away past the patience
        return 1.0

    try:
        with (
            pytest.raises(StorageUnavailable, match=r"unreachable for 2 s .*run the same command again"),
            storage_errors(),
        ):
            study.optimize(objective, n_trials=1)
    finally:
        own_postgres.start_again()
    again, _ = open_study("patience", patience=2)
    assert [t.state.name for t in again.trials] in (["RUNNING"], ["FAIL"])  # a rerun fails and retries it


@pytest.mark.slow  # a PostgreSQL cluster
@pytest.mark.parametrize("wait", [30, 0])
def test_a_statement_whose_connection_drops_mid_flight_is_run_again(own_postgres, open_study, wait):
    """The database goes while a statement is in flight (a restart as a trial draws its parameters):
    Optuna would raise StorageInternalError and fail the trial; the statement is run again instead, for
    up to the patience (0: at once a one-line StorageUnavailable)."""
    import psycopg2

    database = f"mid-statement-{wait}"
    study, _ = open_study(database, patience=wait)
    study.tell(study.ask(), 1.0)
    running = study.ask()  # unfinished: Optuna's cache reads it from the database on every call

    def connect() -> psycopg2.extensions.connection:
        return psycopg2.connect(host="127.0.0.1", port=own_postgres.port, user="postgres", dbname=database)

    locker, admin = connect(), connect()
    admin.autocommit = True
    with locker.cursor() as cur:  # holds the table until rollback: the storage's read waits in flight
        cur.execute("LOCK TABLE trials IN ACCESS EXCLUSIVE MODE")
    read: dict[str, object] = {}

    def reader() -> None:
        try:
            read["trials"] = study.get_trials(deepcopy=False)
        except Exception as err:
            read["error"] = err

    thread = threading.Thread(target=reader)
    thread.start()
    waiting = f"SELECT pid FROM pg_stat_activity WHERE datname = '{database}' AND wait_event_type = 'Lock'"
    with admin.cursor() as cur:
        for _ in range(200):
            cur.execute(waiting)
            if cur.fetchall():
                break
            time.sleep(0.05)
        else:
            pytest.fail("the storage's read never waited on the lock")
        cur.execute(f"SELECT pg_terminate_backend(pid) FROM ({waiting}) AS blocked")  # its connection goes
    locker.rollback()
    thread.join(timeout=60)
    locker.close()
    admin.close()
    if wait == 0:
        assert isinstance(read.get("error"), StorageUnavailable), repr(read)
        assert "kept dropping the connection for 0 s" in str(read["error"]) and "\n" not in str(read["error"])
        return
    assert "error" not in read, repr(read.get("error"))
    assert [(t.number, t.state.name) for t in read["trials"]] == [(0, "COMPLETE"), (running.number, "RUNNING")]


@pytest.mark.slow  # a PostgreSQL cluster
def test_a_statement_that_fails_on_its_own_is_not_run_again(open_study):
    """Only a lost connection is retried: a statement the database rejects fails at once, as before."""
    _, storage = open_study("rejected", patience=30)
    started = time.monotonic()
    with pytest.raises(optuna.exceptions.StorageInternalError):
        storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "x" * 1000)  # longer than the column
    assert time.monotonic() - started < 10


def test_a_sqlite_lock_held_by_another_process_is_waited_for_and_the_write_lands(tmp_path, monkeypatch):
    """Another process holds the write lock (a long backup, a stuck reader): SQLite's busy timeout, set
    to the patience, waits for it; a finished trial's result is not lost."""
    monkeypatch.setenv(PATIENCE_ENV, "60")
    path = tmp_path / "locked.db"
    storage = open_storage(SearchConfig(storage=f"sqlite:///{path}"))
    study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "s")
    holder = sqlite3.connect(path, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(2.0, lambda: (holder.rollback(), holder.close()))
    release.start()
    started = time.monotonic()
    try:
        storage.set_study_user_attr(study_id, "k", "v")  # blocks past the lock, then lands
    finally:
        release.join()
    assert time.monotonic() - started >= 1.5
    assert storage.get_study_user_attrs(study_id) == {"k": "v"}


def test_patience_comes_from_the_environment_and_a_bad_value_is_one_line(monkeypatch):
    monkeypatch.delenv(PATIENCE_ENV, raising=False)
    assert patience() == DEFAULT_PATIENCE == 300
    monkeypatch.setenv(PATIENCE_ENV, "45")
    assert patience() == 45
    for bad in ("-1", "soon", "nan"):
        monkeypatch.setenv(PATIENCE_ENV, bad)
        with pytest.raises(CAEError, match=f"{PATIENCE_ENV} must be a number of seconds >= 0, got '{bad}'"):
            patience()


def test_a_full_disk_under_optuna_is_what_surfaces(tmp_path):
    """Optuna's own AssertionError on top of a failed final write gives way to the ENOSPC under it."""
    import errno

    with pytest.raises(OSError) as raised, storage_errors():
        try:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "optuna.db"))
        except OSError:
            raise AssertionError("Should not reach.") from None
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(tmp_path / "optuna.db")
    with pytest.raises(ValueError), storage_errors():  # anything else passes through untouched
        raise ValueError("not a storage problem")


@pytest.mark.slow  # a PostgreSQL cluster
def test_a_database_that_refuses_at_the_start_is_one_line_at_once(own_postgres):
    """No such database (or a wrong login): one line, not minutes of waiting for an outage to end."""
    started = time.monotonic()
    url = own_postgres.url("not_created")
    with pytest.raises(CAEError, match=r"cannot open Optuna storage .*not_created"):
        open_storage(SearchConfig(storage=url))
    assert time.monotonic() - started < 10

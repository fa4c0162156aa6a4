"""The study storage proxy (cae.search.resilient) while its database is away, in-process on a real
PostgreSQL cluster that is stopped and started again (no TensorFlow, no mocks). The same faults
through the `cae search` CLI are in tests/test_faults.py.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator

import optuna
import pytest

from .conftest import require
from .servers import Postgres, postgres_bin_dir


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[Postgres]:
    """A cluster of this module's own: stopping the session's would stop its `mlflow server` too."""
    bin_dir = postgres_bin_dir()
    require(bin_dir is not None, "PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    server = Postgres(bin_dir).start()
    yield server
    server.stop()


@pytest.fixture
def open_study(own_postgres, monkeypatch) -> Callable[..., tuple[optuna.Study, object]]:
    """``open_study(database, patience, grace=2)``: study "s" in ``database`` through ``open_storage``."""
    from cae.search.study import open_storage
    from cae.search_config import SearchConfig

    created: set[str] = set()

    def make(database: str, patience: float, grace: int = 2) -> tuple[optuna.Study, object]:
        if database not in created:
            own_postgres.create_database(database)
            created.add(database)
        monkeypatch.setenv("CAE_STORAGE_PATIENCE", str(patience))
        storage = open_storage(
            SearchConfig(storage=own_postgres.url(database), heartbeat_interval=1, grace_period=grace)
        )
        return optuna.create_study(study_name="s", storage=storage, load_if_exists=True), storage

    return make


@pytest.mark.slow  # a PostgreSQL cluster stopped and started again
# ask/tell by hand with a heartbeat storage: Optuna warns that the heartbeat is meant for optimize().
@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_trial_reports_while_the_database_is_away_and_the_reports_land_when_it_is_back(
    own_postgres, open_study, capsys
):
    study, storage = open_study("reports", patience=60)
    trial = study.ask()
    trial.report(1.0, 0)
    own_postgres.stop_server()
    try:
        started = time.monotonic()
        for step in (1, 2, 3):  # training goes on: nothing here waits for the database
            trial.report(1.0 / (step + 1), step)
            assert trial.should_prune() is False
        trial.set_user_attr("note", "written later")
        assert time.monotonic() - started < 5
    finally:
        own_postgres.start_again()
    storage.record_heartbeat(trial._trial_id)  # the heartbeat thread notices the return
    study.tell(trial, 0.25)
    out = capsys.readouterr().out
    assert "unreachable (connection" in out and "the running trial keeps training" in out and "is back after" in out
    done = study.trials[0]
    assert done.state.name == "COMPLETE" and done.intermediate_values == {0: 1.0, 1: 0.5, 2: 1 / 3, 3: 0.25}
    assert done.user_attrs == {"note": "written later"}


@pytest.mark.slow  # a PostgreSQL cluster stopped and started again
def test_past_the_patience_one_line_error_and_the_trial_is_left_for_a_rerun(own_postgres, open_study):
    from cae.search.outage import StorageUnavailable, storage_errors

    study, _ = open_study("patience", patience=2)

    def objective(trial: optuna.Trial) -> float:
        trial.report(1.0, 0)
        own_postgres.stop_server()
        time.sleep(3)  # trains on past the patience
        return 1.0

    try:
        # Optuna fails on top of the storage (UnboundLocalError in _run_trial): the storage's own
        # one-line error is what surfaces.
        with (
            pytest.raises(StorageUnavailable, match=r"unreachable for 2 s .*run the same command again"),
            storage_errors(),
        ):
            study.optimize(objective, n_trials=1)
    finally:
        own_postgres.start_again()
    again, _ = open_study("patience", patience=2)
    assert [t.state.name for t in again.trials] == ["RUNNING"]  # its heartbeat stopped: a rerun fails and retries it


@pytest.mark.slow  # a PostgreSQL cluster stopped and started again
@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # fail_stale_trials
def test_right_after_an_outage_no_worker_fails_another_workers_trial(own_postgres, open_study):
    from optuna.storages import fail_stale_trials

    study_a, storage_a = open_study("stale", patience=60)  # worker A
    study_b, _ = open_study("stale", patience=60)  # worker B, another process in real life
    trial = study_a.ask()
    storage_a.record_heartbeat(trial._trial_id)
    own_postgres.stop_server()
    time.sleep(3)  # longer than grace_period: every heartbeat is stale when the database returns
    threading.Timer(1, own_postgres.start_again).start()
    fail_stale_trials(study_b)  # waits for the database, then must not judge A's trial dead
    assert study_b.trials[0].state.name == "RUNNING"
    time.sleep(2 + 8 + 1)  # past grace_period and the retry backoff: A sent no heartbeat, its trial is dead
    fail_stale_trials(study_b)
    assert study_b.trials[0].state.name == "FAIL"


def test_a_sqlite_lock_held_past_the_busy_timeout_is_waited_out_and_the_write_lands(tmp_path, capsys):
    """Another process holds the write lock longer than the busy timeout (here 0.2 s): the write is
    retried like an outage's, not thrown away (a finished trial's result must not be lost)."""
    from cae.search.resilient import ResilientStorage

    path = tmp_path / "locked.db"
    backend = optuna.storages.RDBStorage(f"sqlite:///{path}", engine_kwargs={"connect_args": {"timeout": 0.2}})
    storage = ResilientStorage(backend, "locked.db", patience=60, sqlite_file=path)
    study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "s")
    holder = sqlite3.connect(path, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(2.0, lambda: (holder.rollback(), holder.close()))
    release.start()
    try:
        storage.set_study_user_attr(study_id, "k", "v")  # blocks past the lock, then lands
    finally:
        release.join()
    assert storage.get_study_user_attrs(study_id) == {"k": "v"}
    out = capsys.readouterr().out
    assert "database is locked" in out and "is back after" in out, out


def test_patience_comes_from_the_environment_and_a_bad_value_is_one_line(monkeypatch):
    from cae.errors import CAEError
    from cae.search.outage import DEFAULT_PATIENCE, PATIENCE_ENV, patience

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

    from cae.search.outage import storage_errors

    with pytest.raises(OSError) as raised, storage_errors():
        try:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "optuna.db"))
        except OSError:
            raise AssertionError("Should not reach.") from None
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(tmp_path / "optuna.db")
    with pytest.raises(ValueError), storage_errors():  # anything else passes through untouched
        raise ValueError("not a storage problem")


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # fail_stale_trials
def test_a_running_trial_that_never_sent_a_heartbeat_is_failed_after_the_grace_period(tmp_path, monkeypatch):
    """Its worker died (or its disk filled) before the first heartbeat: Optuna alone keeps it RUNNING
    for ever, and a rerun would wait for it."""
    from optuna.storages import fail_stale_trials

    from cae.search.study import open_storage
    from cae.search_config import SearchConfig

    monkeypatch.setenv("CAE_STORAGE_PATIENCE", "5")
    config = SearchConfig(storage=f"sqlite:///{tmp_path}/optuna.db", heartbeat_interval=1, grace_period=1)
    storage = open_storage(config)
    study = optuna.create_study(study_name="s", storage=storage)
    silent = study.ask()  # no heartbeat thread: like a worker killed right after creating its trial
    beating = study.ask()
    fail_stale_trials(study)
    assert [t.state.name for t in study.trials] == ["RUNNING", "RUNNING"]  # within the grace period
    time.sleep(1.5)
    storage.record_heartbeat(beating._trial_id)
    fail_stale_trials(study)
    states = {t.number: t.state.name for t in study.trials}
    assert states[silent.number] == "FAIL" and states[beating.number] == "RUNNING"
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == silent.number]
    assert [t.state.name for t in retried] == ["WAITING"]  # re-queued with its parameters, as for any stale trial


def test_a_database_that_answers_to_refuse_is_no_outage():
    """Wrong login or no such database: a one-line error at once, not minutes of waiting."""
    import sqlalchemy.exc as sa

    from cae.search.outage import is_outage

    class DriverError(Exception):
        def __init__(self, text: str, pgcode: str | None = None):
            super().__init__(text)
            self.pgcode = pgcode

    def wrapped(text: str, pgcode: str | None = None) -> BaseException:
        return sa.OperationalError("SELECT 1", {}, DriverError(text, pgcode))

    assert is_outage(wrapped('connection to server at "db" (10.0.0.2), port 5432 failed: Connection refused'))
    assert is_outage(wrapped("terminating connection due to administrator command", "57P01"))
    assert not is_outage(wrapped('FATAL:  password authentication failed for user "cae"'))
    assert not is_outage(wrapped('FATAL:  database "optuna" does not exist'))
    assert not is_outage(wrapped("could not extend file: No space left on device", "53100"))

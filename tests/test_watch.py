"""cae.tracking.watch: a tracking server that accepts connections and never answers, and a store on a
PostgreSQL server that restarts, in-process.

A real listening socket that never replies, a real PostgreSQL cluster and a real ``MlflowClient``; the
end-to-end case (a search through a stalling proxy in front of a real ``mlflow server``) is in
tests/test_faults.py.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

import pytest

from cae.search.outage import PATIENCE_ENV
from cae.tracking import Tracker
from cae.tracking.watch import HTTP_TIMEOUT, Patient, TrackingUnavailable, Watched, bound_http, unanswered


@pytest.fixture
def silent_server():
    """``http://127.0.0.1:<port>``: connections are accepted (by the kernel's backlog), nothing answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def test_a_silent_server_is_said_then_given_up_on_in_one_line(silent_server, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    tracker = Tracker(silent_server)
    assert isinstance(tracker.client, Watched) and not tracker.silent
    started = time.monotonic()
    with pytest.raises(TrackingUnavailable, match=r"did not answer for \d+ s \(get_experiment_by_name: no answer\)"):
        tracker.client.get_experiment_by_name("anything")
    assert time.monotonic() - started < 30  # 2 tries of 1 s and urllib3's backoff, not MLflow's 16 minutes
    assert tracker.silent  # the run's closing calls are skipped from now on
    err = capsys.readouterr().err
    assert "has not answered for 1 s (get_experiment_by_name); still trying, at most 2 tries of 1 s" in err


def test_only_the_per_try_timeout_is_lowered_and_only_where_the_user_has_not_set_it(monkeypatch):
    """MLflow's own retries and backoff ride out a server that restarts for minutes: they are left alone."""
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    bound_http()
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == HTTP_TIMEOUT
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "300")
    bound_http()
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "300"


def test_a_refused_connection_is_told_from_silence_by_the_errors_type(monkeypatch):
    """No message text is read: the requests / urllib3 error under MLflow's says which it was."""
    from mlflow.tracking import MlflowClient

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there: every connection is refused
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(Exception) as raised:
        MlflowClient(f"http://127.0.0.1:{port}").get_experiment_by_name("x")
    assert unanswered(raised.value) == "connection refused"
    assert unanswered(ValueError("a bad value")) is None


def test_a_local_store_is_not_watched(tmp_path):
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db")
    assert not isinstance(tracker.client, Watched) and not tracker.silent
    with tracker.answering("anything"):
        pass
    assert not isinstance(tracker.client, Patient)  # nor waited for: a local file has no server to restart


@pytest.mark.slow  # a PostgreSQL cluster stopped and started again
def test_a_database_stores_restart_is_waited_out_and_past_the_patience_is_one_line(
    own_postgres, monkeypatch, capsys, caplog
):
    """MLflow answers a lost connection with TEMPORARILY_UNAVAILABLE at once (and logs its traceback): the
    call is tried again until the database is back, said in two lines, and given up past the patience."""
    monkeypatch.setenv(PATIENCE_ENV, "60")
    tracker = Tracker(own_postgres.create_database("mlflow")).check()
    monkeypatch.setenv(PATIENCE_ENV, "1")
    impatient = Tracker(tracker.uri)
    assert isinstance(tracker.client, Patient)
    run_id = tracker.client.create_run(tracker.experiment_id("e")).info.run_id
    logging.getLogger("mlflow.store.db.utils").addHandler(caplog.handler)  # what MLflow's logger lets out
    try:
        own_postgres.stop_server()
        threading.Timer(4, own_postgres.start_again).start()
        started = time.monotonic()
        tracker.client.set_tag(run_id, "k", "v")  # waits for the database instead of failing
        assert time.monotonic() - started >= 3
        assert tracker.client.get_run(run_id).data.tags["k"] == "v"
        said = capsys.readouterr().err
        assert "unreachable" in said and "retrying for up to 60 s" in said and "is back after" in said, said
        assert not [r for r in caplog.records if r.exc_info], caplog.text

        own_postgres.stop_server()
        try:
            with pytest.raises(
                TrackingUnavailable, match=r"unreachable for 1 s \(set_tag: .*run the same command again"
            ):
                impatient.client.set_tag(run_id, "k", "w")
        finally:
            own_postgres.start_again()
    finally:
        logging.getLogger("mlflow.store.db.utils").removeHandler(caplog.handler)

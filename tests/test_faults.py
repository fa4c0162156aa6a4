"""Service faults a long study meets, each ridden out by the same `cae search` call or ended by one
line and resumed by running it again: a PostgreSQL restart mid-trial, a full runs/ disk, an MLflow
server restart. Real services and real CLI processes throughout (no mocks); the storage proxy's
own behaviour is tested in-process in tests/test_storage.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest
import yaml

from cae.tracking import Tracker
from cae.urls import with_driver

from .conftest import require
from .servers import SlowProxy

pytestmark = pytest.mark.slow  # every test starts `cae search` processes (and services)

REPO = Path(__file__).resolve().parent.parent
OUTAGE_SECONDS = 20


def search_yaml(path: Path, study: str, trials: int, epochs: int, **extra: object) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "study": study,
                "space": "tests/spaces/steady.yaml",
                "trials": trials,
                "heartbeat_interval": 1,
                "grace_period": 5,
                "pruner": {"name": "none"},  # every trial runs all its epochs: a fixed window for the fault
                "experiment": {"data": {"source": "sample", "subset": 320}, "train": {"epochs": epochs}},
                **extra,
            }
        )
    )
    return path


def start(config: Path, log: Path, runs: Path, tracking: str, **env: str) -> subprocess.Popen:
    """`python -m cae search <config>`, its output (stdout and stderr) in ``log``."""
    environ = {
        **os.environ,
        "CAE_RUNS_DIR": str(runs),
        "MLFLOW_TRACKING_URI": tracking,
        "CAE_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cae", "search", str(config)],
            cwd=REPO,
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def finish(process: subprocess.Popen, log: Path, timeout: float = 300) -> str:
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        pytest.fail(f"`cae search` still running after {timeout} s:\n{log.read_text()[-3000:]}")
    return log.read_text()


def trials_of(url: str, study: str) -> list[optuna.trial.FrozenTrial]:
    """The study's trials read afresh (a new storage each time: the server may have restarted)."""
    storage = optuna.storages.RDBStorage(with_driver(url), engine_kwargs={"pool_pre_ping": True})
    try:
        return storage.get_all_trials(storage.get_study_id_from_name(study))
    except KeyError:
        return []
    finally:
        storage.engine.dispose()


def wait_until(ready: Callable[[], bool], process: subprocess.Popen, log: Path, what: str, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        assert process.poll() is None, f"`cae search` exited ({process.returncode}) before {what}:\n{log.read_text()}"
        time.sleep(0.3)
    process.kill()
    pytest.fail(f"not {what} within {timeout} s:\n{log.read_text()[-3000:]}")


def running(url: str, study: str, number: int) -> bool:
    """Trial ``number`` is running (trial 0 finished: the search is past its start-up)."""
    return any(t.number == number and t.state.name == "RUNNING" for t in trials_of(url, study))


def assert_runs_closed(tracking: str, study: str, trials: list[optuna.trial.FrozenTrial]) -> None:
    """One child run per finished trial and at most one per failed trial (one that failed before
    training has none), each ended with its trial's state; the parent run FINISHED."""
    tracker = Tracker(tracking)
    parent = tracker.find_study_parent(study)
    runs = tracker.child_runs(parent, study)
    numbers = Counter(int(r.data.tags["trial_number"]) for r in runs)
    assert all(n == 1 for n in numbers.values()), numbers
    assert (
        {t.number for t in trials if t.state.name in ("COMPLETE", "PRUNED")}
        <= set(numbers)
        <= {t.number for t in trials}
    ), numbers
    states = {t.number: t.state.name for t in trials}
    for run in runs:
        assert run.info.status != "RUNNING", run.data.tags
        assert run.data.tags["trial_state"] == states[int(run.data.tags["trial_number"])]
    assert tracker.client.get_run(parent).info.status == "FINISHED"


# --------------------------------------------------------------------------------------------
# PostgreSQL stopped for 20 s while a trial trains


def test_postgres_restart_mid_trial_is_waited_out(own_postgres, tmp_path):
    url = own_postgres.create_database("cli")
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    config = search_yaml(tmp_path / "search.yaml", "pg-restart", trials=3, epochs=6, storage=url)
    log = tmp_path / "search.log"
    assert trials_of(url, "pg-restart") == []  # creates the schema first: the CLI never races this test for it
    process = start(config, log, tmp_path / "runs", tracking, CAE_STORAGE_PATIENCE="120")
    wait_until(lambda: running(url, "pg-restart", 1), process, log, "trial 1 running")

    own_postgres.stop_server()
    time.sleep(OUTAGE_SECONDS)
    assert process.poll() is None, f"the search exited during the outage:\n{log.read_text()}"
    own_postgres.start_again()
    output = finish(process, log)

    assert process.returncode == 0, output[-3000:]
    assert "Traceback" not in output, output
    assert "unreachable (connection" in output and "the running trial keeps training" in output, output
    assert f"storage {url} is back after" in output, output
    trials = trials_of(url, "pg-restart")
    # Nothing lost, nothing run twice: trials 0..2, every one COMPLETE (none failed, none retried),
    # the one in flight with all its epochs reported.
    assert [(t.number, t.state.name) for t in trials] == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "COMPLETE")]
    assert sorted(trials[1].intermediate_values) == list(range(6))
    assert_runs_closed(tracking, "pg-restart", trials)


# --------------------------------------------------------------------------------------------
# runs/ on a 4 MB tmpfs that fills up mid-search


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    mount = tmp_path / "runs"
    mount.mkdir()
    out = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    require(out.returncode == 0, f"cannot mount a 96 MB tmpfs as the runs folder (needs root): {out.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(disk: Path) -> Path:
    """Another program takes every free byte of ``disk``."""
    ballast = disk / "ballast"
    # Unbuffered: a buffered file keeps the bytes that did not fit and raises ENOSPC again on close.
    with ballast.open("wb", buffering=0) as fh:
        try:
            while fh.write(b"\0" * 65536):
                pass
        except OSError:  # ENOSPC: full
            pass
    return ballast


def test_full_runs_disk_stops_with_one_line_and_a_rerun_resumes(small_disk, tmp_path):
    # The MLflow store lives elsewhere: this test is about the study's own files under runs/.
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    storage = f"sqlite:///{small_disk}/optuna.db"
    config = search_yaml(tmp_path / "search.yaml", "full-disk", trials=3, epochs=2)
    first_log = tmp_path / "first.log"
    assert trials_of(storage, "full-disk") == []  # the schema, before the CLI starts
    first = start(config, first_log, small_disk, tracking)
    wait_until(lambda: running(storage, "full-disk", 1), first, first_log, "trial 1 running")
    ballast = fill(small_disk)
    output = finish(first, first_log)

    assert first.returncode == 2, output[-3000:]
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: no space left on {small_disk}"), errors
    assert "run the same command again" in errors[0], errors
    study_files = small_disk / "full-disk"
    assert not [p.name for p in study_files.glob(".best.*") if not p.name.endswith(".lock")]  # no half-written file

    ballast.unlink()  # space freed: the same command resumes the study
    second_log = tmp_path / "second.log"
    output = finish(start(config, second_log, small_disk, tracking), second_log)
    assert "Traceback" not in output, output
    trials = trials_of(storage, "full-disk")
    states = Counter(t.state.name for t in trials)
    assert states["COMPLETE"] == 3 and states["RUNNING"] == states["WAITING"] == 0, states
    assert (study_files / "best.json").exists()
    assert_runs_closed(tracking, "full-disk", trials)


# --------------------------------------------------------------------------------------------
# The tracking server stopped and started again mid-search


def test_a_40_s_tracking_server_restart_is_ridden_out_and_every_epoch_is_in_mlflow(mlflow_server, tmp_path):
    """Connections refused for 40 s while the server restarts: MLflow's own retries and backoff wait for
    it; the per-epoch metrics queued meanwhile all reach it, and every run is closed with its state.
    (A shorter restart is the same path: this one test covers both.)"""
    storage = f"sqlite:///{tmp_path}/optuna.db"
    config = search_yaml(tmp_path / "search.yaml", "mlflow-40s", trials=2, epochs=4, storage=storage)
    log = tmp_path / "search.log"
    assert trials_of(storage, "mlflow-40s") == []
    process = start(config, log, tmp_path / "runs", mlflow_server.url)
    wait_until(lambda: running(storage, "mlflow-40s", 1), process, log, "trial 1 running")
    mlflow_server.stop()
    try:
        time.sleep(40)
        assert process.poll() is None, f"the search exited while MLflow restarted:\n{log.read_text()}"
    finally:
        mlflow_server.start_again()
    output = finish(process, log, timeout=600)

    assert process.returncode == 0, output[-3000:]
    assert "Traceback" not in output, output
    trials = trials_of(storage, "mlflow-40s")
    assert Counter(t.state.name for t in trials) == {"COMPLETE": 2}
    assert_runs_closed(mlflow_server.url, "mlflow-40s", trials)
    tracker = Tracker(mlflow_server.url)
    for run in tracker.child_runs(tracker.find_study_parent("mlflow-40s"), "mlflow-40s"):
        assert [s for s, _ in tracker.metric_history(run.info.run_id, "val_loss")] == [1, 2, 3, 4], run.data.tags


# --------------------------------------------------------------------------------------------
# The tracking server stops answering (a hung proxy: connections accepted, no reply)

# Bounds small enough for a test: each call gives up after 3 tries of 3 s and 4 s of backoff.
QUICK_BOUNDS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "3", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2"}


@contextmanager
def stalled_mid_trial(mlflow_server, tmp_path: Path, study: str) -> Iterator[tuple]:
    """A search through a proxy before the real server, stalled once trial 0 runs; yields
    (proxy, storage, config, log, process); the proxy answers again and stops on the way out."""
    proxy = SlowProxy(mlflow_server.url, delay=0.0).start()
    storage = f"sqlite:///{tmp_path}/optuna.db"
    config = search_yaml(tmp_path / "search.yaml", study, trials=2, epochs=3, storage=storage)
    log = tmp_path / "search.log"
    try:
        process = start(config, log, tmp_path / "runs", proxy.url, **QUICK_BOUNDS)
        wait_until(lambda: running(storage, study, 0), process, log, "trial 0 running")
        proxy.stalled = True
        yield proxy, storage, config, log, process
    finally:
        proxy.stalled = False
        proxy.stop()


def test_a_tracking_server_that_stops_answering_for_a_while_is_said_and_waited_for(mlflow_server, tmp_path):
    with stalled_mid_trial(mlflow_server, tmp_path, "mlflow-silent") as (proxy, storage, _config, log, process):
        wait_until(lambda: "has not answered for" in log.read_text(), process, log, "the silence said", 60)
        time.sleep(2)
        proxy.stalled = False
        output = finish(process, log)

    assert process.returncode == 0, output[-3000:]
    assert "Traceback" not in output, output
    assert f"MLflow tracking server {proxy.url} has not answered for" in output
    assert f"MLflow tracking server {proxy.url} answered after" in output
    trials = trials_of(storage, "mlflow-silent")
    assert Counter(t.state.name for t in trials) == {"COMPLETE": 2}
    assert_runs_closed(mlflow_server.url, "mlflow-silent", trials)


def test_a_tracking_server_that_stays_silent_ends_the_search_in_one_line_and_nothing_is_lost(mlflow_server, tmp_path):
    with stalled_mid_trial(mlflow_server, tmp_path, "mlflow-gone") as (proxy, storage, config, log, process):
        started = time.monotonic()
        output = finish(process, log, timeout=180)
        seconds = time.monotonic() - started
        proxy.stalled = False

        assert process.returncode == 2, output[-3000:]
        assert "Traceback" not in output, output
        last = [line for line in output.splitlines() if line.startswith("error:")][-1]  # then a note on the queue
        assert last.startswith(f"error: MLflow tracking server {proxy.url} did not answer for"), output[-3000:]
        assert ": no answer); trial 0 is queued again" in last and len(last) < 300, last
        assert seconds < 120, f"{seconds:.0f} s from the stall to the exit"
        trials = trials_of(storage, "mlflow-gone")
        assert [t.state.name for t in trials] == ["FAIL", "WAITING"], trials
        assert trials[1].params == trials[0].params  # the retry: the same point (Optuna's retry callback)

        # The server answers again: the same command finishes the study, every run closed.
        output = finish(start(config, log, tmp_path / "runs", proxy.url, **QUICK_BOUNDS), log)
    assert "Traceback" not in output, output
    trials = trials_of(storage, "mlflow-gone")
    assert Counter(t.state.name for t in trials) == {"COMPLETE": 2, "FAIL": 1}, trials
    assert_runs_closed(mlflow_server.url, "mlflow-gone", trials)

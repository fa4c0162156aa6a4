"""The trials of dead workers (cae/search/stale.py), in-process on real storages (no TensorFlow, no
mocks): a trial that never sent a heartbeat, and a PostgreSQL outage that must not make a worker judge
the others dead."""

from __future__ import annotations

import threading
import time

import optuna
import pytest

from cae.search.outage import PATIENCE_ENV
from cae.search.stale import fail_stale_trials
from cae.search.storage import open_storage
from cae.search_config import SearchConfig

# ask/tell by hand with a heartbeat storage: Optuna warns that the heartbeat is meant for optimize().
pytestmark = [
    pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize"),
    pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
]


def heartbeat_study(url: str, grace: int) -> tuple[optuna.Study, object]:
    """Study "s" on ``url`` through ``open_storage``: a 1 s heartbeat, stale after ``grace`` s without one."""
    storage = open_storage(SearchConfig(storage=url, heartbeat_interval=1, grace_period=grace))
    return optuna.create_study(study_name="s", storage=storage, load_if_exists=True), storage


def trial_id(storage, study, trial) -> int:
    return storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study.study_name), trial.number
    )


def test_a_running_trial_that_never_sent_a_heartbeat_is_failed_after_the_grace_period(tmp_path, monkeypatch):
    """Its worker died (or its disk filled) before the first heartbeat: Optuna alone keeps it RUNNING
    for ever, and a rerun would wait for it."""
    monkeypatch.setenv(PATIENCE_ENV, "5")
    study, storage = heartbeat_study(f"sqlite:///{tmp_path}/optuna.db", grace=1)
    silent = study.ask()  # no heartbeat thread: like a worker killed right after creating its trial
    beating = study.ask()
    fail_stale_trials(study, storage)
    assert [t.state.name for t in study.trials] == ["RUNNING", "RUNNING"]  # within the grace period
    time.sleep(1.5)
    storage.record_heartbeat(trial_id(storage, study, beating))
    fail_stale_trials(study, storage)
    states = {t.number: t.state.name for t in study.trials}
    assert states[silent.number] == "FAIL" and states[beating.number] == "RUNNING"
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == silent.number]
    assert [t.state.name for t in retried] == ["WAITING"]  # queued again with its parameters, as any stale trial


@pytest.mark.slow  # a PostgreSQL cluster stopped and started again
def test_right_after_an_outage_no_worker_fails_another_workers_trial(own_postgres, monkeypatch, capsys):
    monkeypatch.setenv(PATIENCE_ENV, "60")
    study, storage = heartbeat_study(own_postgres.create_database("stale"), grace=2)
    trial = study.ask()
    beating = threading.Event()
    beating.set()

    def heartbeats() -> None:  # worker A's heartbeat thread: blocked while the database is away
        while beating.is_set():
            storage.record_heartbeat(trial_id(storage, study, trial))  # a dropped statement is run again
            time.sleep(1)

    threading.Thread(target=heartbeats, daemon=True).start()
    own_postgres.stop_server()
    time.sleep(3)  # longer than grace_period: every heartbeat is stale when the database returns
    own_postgres.start_again()
    fail_stale_trials(study, storage)  # worker B: waits one grace period, then must not judge A's trial dead
    assert "before judging other workers' trials" in capsys.readouterr().out
    assert study.trials[0].state.name == "RUNNING"
    beating.clear()  # A dies: past grace_period its trial is failed and queued again
    time.sleep(3)
    fail_stale_trials(study, storage)
    states = [t.state.name for t in study.trials]
    assert states == ["FAIL", "WAITING"], states

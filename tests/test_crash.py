"""Survive: `cae search` killed mid-trial (SIGKILL) resumes with nothing lost or duplicated, and
Ctrl-C (SIGINT) stops cleanly. Real CLI processes on SQLite stores in a temporary runs/ folder.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
import yaml

from cae.tracking import Tracker

pytestmark = pytest.mark.slow  # every test starts `cae search` processes

REPO = Path(__file__).resolve().parent.parent
FINISHED = ("COMPLETE", "PRUNED")


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """One runs/ folder, Optuna file and MLflow store shared by the module's searches."""
    root = tmp_path_factory.mktemp("crash")
    return {
        "root": root,
        "runs": root / "runs",
        "storage": f"sqlite:///{root}/optuna.db",
        "tracking": f"sqlite:///{root}/mlflow.db",
    }


def search_yaml(stores: dict, study: str, trials: int, epochs: int) -> Path:
    path = stores["root"] / f"{study}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "study": study,
                "space": "tests/spaces/steady.yaml",
                "trials": trials,
                "storage": stores["storage"],
                "heartbeat_interval": 1,
                "grace_period": 3,
                "pruner": {"name": "none"},  # every trial runs all its epochs: a fixed window to kill it in
                "experiment": {"data": {"source": "sample", "subset": 320}, "train": {"epochs": epochs}},
            }
        )
    )
    return path


def start(stores: dict, config: Path, log: Path) -> subprocess.Popen:
    """`python -m cae search <config>`; with one worker this process runs the trials itself."""
    env = {
        **os.environ,
        "CAE_RUNS_DIR": str(stores["runs"]),
        "MLFLOW_TRACKING_URI": stores["tracking"],
        "CAE_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    with log.open("w") as out:
        # SIGINT back to its default before exec: a process started with SIGINT ignored (e.g. from a
        # background job) would otherwise never see Ctrl-C as KeyboardInterrupt.
        return subprocess.Popen(
            [sys.executable, "-m", "cae", "search", str(config)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )


def trials_of(storage: optuna.storages.RDBStorage, study: str) -> list[optuna.trial.FrozenTrial]:
    try:
        study_id = storage.get_study_id_from_name(study)
    except KeyError:
        return []
    return storage.get_all_trials(study_id)


def wait_for_running_trial(
    storage, study: str, process: subprocess.Popen, log: Path, min_number: int = 0, timeout: float = 240
) -> optuna.trial.FrozenTrial:
    """The first trial numbered >= ``min_number`` that is RUNNING and has reported an epoch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for t in trials_of(storage, study):
            if t.number >= min_number and t.state.name == "RUNNING" and t.intermediate_values:
                return t
        assert process.poll() is None, f"the search exited ({process.returncode}) first:\n{log.read_text()[-3000:]}"
        time.sleep(0.3)
    process.kill()
    pytest.fail(f"no trial >= {min_number} was running with an epoch done within {timeout} s")


def open_storage(stores: dict) -> optuna.storages.RDBStorage:
    # Created here before any search starts, so the CLI never races this test for the schema.
    return optuna.storages.RDBStorage(stores["storage"])


def test_sigkill_mid_trial_then_rerun_resumes_and_retries_the_killed_trial(stores, tmp_path):
    storage = open_storage(stores)
    config = search_yaml(stores, "killed", trials=2, epochs=8)
    first = start(stores, config, tmp_path / "first.log")
    victim = wait_for_running_trial(storage, "killed", first, tmp_path / "first.log", min_number=1)
    before = {t.number: t.values for t in trials_of(storage, "killed") if t.state.name == "COMPLETE"}
    first.send_signal(signal.SIGKILL)  # the CLI process is the one running the trial (one worker)
    assert first.wait(timeout=30) == -signal.SIGKILL
    killed_at = time.monotonic()

    assert before, "a trial should have completed before the kill"
    best_json = stores["runs"] / "killed" / "best.json"
    assert json.loads(best_json.read_text())["trial_number"] in before  # never half-written
    assert {t.number: t.state.name for t in trials_of(storage, "killed")}[victim.number] == "RUNNING"
    tracker = Tracker(stores["tracking"])
    run_id = victim.user_attrs["mlflow_run_id"]
    assert tracker.client.get_run(run_id).info.status == "RUNNING"  # nobody closed it yet

    time.sleep(max(0.0, 3.5 - (time.monotonic() - killed_at)))  # past grace_period: the trial is stale
    second = start(stores, config, tmp_path / "second.log")
    assert second.wait(timeout=300) == 0, (tmp_path / "second.log").read_text()[-3000:]
    log = (tmp_path / "second.log").read_text()
    assert "closed 1 MLflow run(s) left RUNNING by a killed worker" in log

    trials = {t.number: t for t in trials_of(storage, "killed")}
    assert {n: trials[n].values for n in before} == before  # the finished trials are untouched
    assert trials[victim.number].state.name == "FAIL"  # failed by the heartbeat
    retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1 and retries[0].params == victim.params and retries[0].state.name in FINISHED
    assert f"trial {retries[0].number:3d} goes on from epoch" in log  # not from its first epoch again
    states = Counter(t.state.name for t in trials.values())
    assert states["COMPLETE"] + states["PRUNED"] == 2 and states["RUNNING"] == states["WAITING"] == 0

    killed_run = tracker.client.get_run(run_id)
    assert killed_run.info.status == "KILLED" and killed_run.data.tags["trial_state"] == "FAIL"
    parent = tracker.find_study_parent("killed")
    runs = tracker.child_runs(parent, "killed")
    assert sorted(int(r.data.tags["trial_number"]) for r in runs) == sorted(trials)  # one run per trial
    assert all(r.info.status != "RUNNING" for r in runs)
    assert tracker.client.get_run(parent).info.status == "FINISHED"
    record = json.loads(best_json.read_text())
    assert trials[record["trial_number"]].state.name == "COMPLETE"


def test_ctrl_c_fails_the_running_trial_cleanly_and_says_how_to_resume(stores, tmp_path):
    storage = open_storage(stores)
    config = search_yaml(stores, "interrupted", trials=2, epochs=8)
    log = tmp_path / "search.log"
    process = start(stores, config, log)
    victim = wait_for_running_trial(storage, "interrupted", process, log)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == 130, log.read_text()[-3000:]
    output = log.read_text()
    assert "run the same command again to resume" in output
    assert f"trial {victim.number} is queued again (same parameters)" in output
    assert "Traceback" not in output

    trials = {t.number: t for t in trials_of(storage, "interrupted")}
    assert trials[victim.number].state.name == "FAIL"
    assert trials[victim.number].user_attrs["fail_reason"] == "interrupted (Ctrl-C)"
    assert not [t for t in trials.values() if t.state.name == "RUNNING"]
    tracker = Tracker(stores["tracking"])
    run = tracker.client.get_run(trials[victim.number].user_attrs["mlflow_run_id"])
    assert run.info.status != "RUNNING" and run.data.tags["trial_state"] == "FAIL"
    parent = tracker.client.get_run(tracker.find_study_parent("interrupted"))
    assert parent.info.status == "KILLED"
    trained = sorted(trials[victim.number].intermediate_values)
    assert (stores["runs"] / "interrupted" / "resume" / str(victim.number) / "backup").is_dir()

    # The same command again goes on with the interrupted point itself, not only with new ones,
    # from the epoch it had reached (its backup: the epochs of its last report, or one more).
    process = start(stores, config, log)
    assert process.wait(timeout=300) == 0, log.read_text()[-3000:]
    trials = trials_of(storage, "interrupted")
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]  # Optuna's retry chain
    assert len(retry) == 1 and retry[0].params == victim.params and retry[0].state.name in FINISHED
    assert sum(t.state.name in FINISHED for t in trials) == 2
    went_on = re.search(
        rf"trial +{retry[0].number} goes on from epoch (\d+) of trial {victim.number}'s point", log.read_text()
    )
    assert went_on and len(trained) <= int(went_on.group(1)) <= len(trained) + 1, log.read_text()[-3000:]
    assert sorted(retry[0].intermediate_values) == list(range(8))  # the curve is whole for the pruner
    curve = tracker.client.get_metric_history(retry[0].user_attrs["mlflow_run_id"], "val_loss")
    assert sorted(m.step for m in curve) == list(range(1, 9))  # ... and in MLflow, each epoch once
    assert not list((stores["runs"] / "interrupted" / "resume").iterdir())  # finished: nothing to resume


def test_sighup_stops_like_ctrl_c_with_one_line_and_the_trial_queued_again(stores, tmp_path):
    """The terminal closed or ssh dropped: the same graceful stop as Ctrl-C, its signal named."""
    storage = open_storage(stores)
    config = search_yaml(stores, "hung-up", trials=2, epochs=8)
    log = tmp_path / "search.log"
    process = start(stores, config, log)
    victim = wait_for_running_trial(storage, "hung-up", process, log)
    process.send_signal(signal.SIGHUP)
    assert process.wait(timeout=120) == 130, log.read_text()[-3000:]
    output = log.read_text()
    assert "Traceback" not in output
    stops = [line for line in output.splitlines() if line.startswith("interrupted")]
    assert len(stops) == 1 and stops[0].startswith("interrupted (SIGHUP): "), output[-2000:]
    assert f"trial {victim.number} is queued again (same parameters)" in output
    trials = {t.number: t for t in trials_of(storage, "hung-up")}
    assert trials[victim.number].user_attrs["fail_reason"] == "interrupted (SIGHUP)"
    assert [t.state.name for t in trials.values() if t.system_attrs.get("failed_trial") == victim.number] == ["WAITING"]
    run = Tracker(stores["tracking"]).client.get_run(trials[victim.number].user_attrs["mlflow_run_id"])
    assert run.info.status != "RUNNING" and run.data.tags["trial_state"] == "FAIL"

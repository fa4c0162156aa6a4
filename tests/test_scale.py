"""Scale out: 3 worker processes on one study in PostgreSQL, tracked by an `mlflow server`.

The multi-host setup on one host: the same code paths as `make worker` on several machines
(``storage=postgresql://...``, ``MLFLOW_TRACKING_URI=http://...``), no code change.
"""

from collections import Counter
from pathlib import Path

import optuna
import pytest

import cae.search.workers as workers
from cae.search.best import best_paths, fetch_best, load_best_model
from cae.search.run import run_search
from cae.search.task import ReconstructionTask
from cae.search_config import load_search
from cae.tracking import Tracker
from cae.urls import with_driver

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # PostgreSQL, an `mlflow server` and three worker processes


@pytest.fixture(scope="module")
def scaled(postgres, mlflow_server):
    """One study of 4 tiny trials run by 3 worker processes (`cae search-worker`)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
        storage = postgres.create_database("scale")  # a bare postgresql:// URL, as a user writes it
        cfg = load_search(
            REPO / "experiments/search.yaml",
            {
                "study": "scale",
                "trials": 4,
                "workers": 3,
                "storage": storage,
                "max_code_values": None,
                "experiment.data.source": "sample",
                "experiment.data.subset": 160,
                "experiment.train.epochs": 1,
                "heartbeat_interval": 2,
                "grace_period": 20,
            },
        )
        summary = run_search(cfg)
        yield cfg, summary, optuna.load_study(study_name="scale", storage=with_driver(storage))


def test_three_workers_share_one_postgres_study_and_one_tracking_server(scaled, mlflow_server):
    cfg, summary, study = scaled
    trials = study.trials
    states = Counter(t.state.name for t in trials)
    assert states["COMPLETE"] + states["PRUNED"] == cfg.trials == 4, states
    assert len({t.number for t in trials}) == len(trials)
    assert states["RUNNING"] == states["WAITING"] == 0
    surplus = {t.number for t in trials if t.user_attrs.get("fail_reason", "").startswith("skipped: ")}
    assert states["FAIL"] == len(surplus), [t.user_attrs for t in trials if t.state.name == "FAIL"]
    assert len({tuple(sorted(t.params.items())) for t in trials if t.number not in surplus}) == len(trials) - len(
        surplus
    ), "workers sampled the same parameters"

    tracker = Tracker(mlflow_server.url)
    parent = tracker.find_study_parent("scale")
    assert parent == study.user_attrs["mlflow_parent_run_id"]
    runs = tracker.child_runs(parent, "scale")
    per_trial = Counter(int(r.data.tags["trial_number"]) for r in runs)
    # Exactly one child run per trial that started (a skipped trial stops before creating one).
    assert per_trial == Counter(t.number for t in trials if t.number not in surplus)
    for run in runs:
        trial = study.trials[int(run.data.tags["trial_number"])]
        assert run.info.status != "RUNNING" and run.data.tags["trial_state"] == trial.state.name
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
    assert tracker.client.get_run(parent).info.status == "FINISHED"
    assert summary["best"]["trial_number"] == study.best_trial.number


def test_the_best_trial_of_another_host_is_fetched_from_mlflow(scaled, mlflow_server, monkeypatch):
    _, _, study = scaled
    json_path, model_path = best_paths("scale")
    json_path.unlink()  # this host ran none of the trials: its runs/ has no best.json ...
    model_path.unlink()
    best, uid = study.best_trial, study.user_attrs["uid"]
    # ... so the study's best comes from MLflow
    fetch_best("scale", best.number, best.user_attrs["mlflow_run_id"], uid, Tracker(mlflow_server.url))
    model, record = load_best_model("scale")
    assert record["trial_number"] == study.best_trial.number and model.count_params() == record["n_params"]


def test_joining_workers_sample_apart(scaled, mlflow_server, monkeypatch):
    """`make worker` on several hosts: each joins with its own sampler seed, not the study's."""
    cfg, _, _ = scaled
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    offsets = []

    def fake_worker(cfg, parent, tracker, task, index):
        offsets.append((parent, index))

    monkeypatch.setattr(workers, "run_worker", fake_worker)
    for host in ("host-b", "host-c"):
        monkeypatch.setattr(workers.socket, "gethostname", lambda host=host: host)
        workers.join(cfg, ReconstructionTask)
    (parent_b, b), (parent_c, c) = offsets
    assert parent_b == parent_c == scaled[2].user_attrs["mlflow_parent_run_id"]
    assert 0 not in (b, c) and b != c

"""cae.tracking on a temporary SQLite store: runs, datasets, queued metrics, system metrics, registry, credentials.

Everything but the last two tests works without training; those run one tiny real study and check that
its best model is in the Model Registry and its trials carry their dataset inputs.
"""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest

from cae.errors import CAEError
from cae.tracking import Tracker, trial_run
from cae.tracking.auth import read_credentials
from cae.tracking.registry import load_registered, register_model

from .studies import tiny_search


@pytest.fixture(scope="module")
def tracker(tracking_uri) -> Tracker:
    return Tracker(tracking_uri)


def inputs_of(tracker: Tracker, run_id: str) -> dict[str, tuple[str, str, dict]]:
    """name -> (context, digest, source) of a run's dataset inputs."""
    out = {}
    for item in tracker.client.get_run(run_id).inputs.dataset_inputs:
        context = {t.key: t.value for t in item.tags}["mlflow.data.context"]
        out[item.dataset.name] = (context, item.dataset.digest, json.loads(item.dataset.source))
    return out


def test_a_trial_run_logs_its_datasets_and_queued_epochs(tracker, sample_splits):
    parent = tracker.start_run("tracking", "parent")
    with trial_run(
        tracker,
        "tracking",
        0,
        parent_id=parent.run_id,
        tags={"engine": "optuna"},
        params={"model.depth": 2},
        splits=sample_splits,
    ) as run:
        callback = run.epoch_callback()
        for epoch in range(3):
            callback.on_epoch_end(epoch, {"loss": 0.1 / (epoch + 1), "val_loss": 0.2 / (epoch + 1)})
    got = tracker.client.get_run(run.run_id)
    assert got.info.status == "FINISHED" and got.data.tags["trial_state"] == "COMPLETE"
    assert got.data.tags["machine"]
    assert [(s, round(v, 6)) for s, v in tracker.metric_history(run.run_id, "val_loss")] == [
        (1, 0.2),
        (2, 0.1),
        (3, 0.066667),
    ]
    digest = sample_splits.digest
    assert inputs_of(tracker, run.run_id) == {
        "cifar10-train": ("training", digest, {"uri": "sample"}),
        "cifar10-val": ("validation", digest, {"uri": "sample"}),
        "cifar10-test": ("testing", digest, {"uri": "sample"}),
    }
    parent.end()


def test_a_failing_trial_keeps_its_queued_curve_and_ends_failed(tracker):
    parent = tracker.start_run("tracking", "parent")
    with (
        pytest.raises(ValueError),
        trial_run(tracker, "tracking", 1, parent_id=parent.run_id, tags={}, params={}) as run,
    ):
        run.log_metrics({"val_loss": 0.5}, step=1, queued=True)
        raise ValueError("boom")
    got = tracker.client.get_run(run.run_id)
    assert got.info.status == "FAILED" and got.data.tags["error"] == "ValueError: boom"
    assert tracker.metric_history(run.run_id, "val_loss") == [(1, 0.5)]
    parent.end()


def test_system_metrics_behind_one_flag(tracker, monkeypatch):
    monkeypatch.setenv("CAE_SYSTEM_METRICS", "1")
    monkeypatch.setenv("CAE_SYSTEM_METRICS_INTERVAL", "0.2")
    with tracker.start_run("tracking", "system") as run:
        import time

        time.sleep(1.0)
    metrics = tracker.client.get_run(run.run_id).data.metrics
    assert "system/cpu_utilization_percentage" in metrics and "system/system_memory_usage_megabytes" in metrics
    monkeypatch.setenv("CAE_SYSTEM_METRICS", "maybe")
    with pytest.raises(CAEError, match="CAE_SYSTEM_METRICS='maybe'"):
        tracker.check()


def test_without_the_flag_a_run_has_no_system_metrics(tracker, monkeypatch):
    monkeypatch.delenv("CAE_SYSTEM_METRICS", raising=False)
    with tracker.start_run("tracking", "plain") as run:
        run.log_metrics({"x": 1.0})
    assert list(tracker.client.get_run(run.run_id).data.metrics) == ["x"]


def test_register_a_model_load_it_through_models_uri_and_register_once(tracker, capsys):
    model = keras.Sequential([keras.Input((32, 32, 1)), keras.layers.Conv2D(3, 3, padding="same")])
    example = np.random.default_rng(0).random((2, 32, 32, 1), dtype=np.float32)
    with tracker.start_run("tracking", "model") as run:
        pass
    version = register_model(tracker, run_id=run.run_id, name="tracking-colorize", model=model, example=example)
    assert version == 1
    assert "━" not in capsys.readouterr().out  # no Keras progress bar in a search's log (MLflow's own check)
    assert register_model(tracker, run_id=run.run_id, name="tracking-colorize", model=model, example=example) == 1
    loaded = load_registered(tracker, "tracking-colorize")
    np.testing.assert_allclose(loaded.predict(example, verbose=0), model.predict(example, verbose=0), atol=1e-6)
    assert tracker.client.get_run(run.run_id).info.status == "FINISHED"  # logging the model did not reopen it
    logged = tracker.client.search_logged_models([tracker.experiment_id("tracking")])
    assert [m.source_run_id for m in logged] == [run.run_id]  # in the run's experiment, not "Default"


def test_credentials_come_from_the_environment_or_a_private_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    assert read_credentials() is None
    path = tmp_path / ".mlflow" / "credentials"
    path.parent.mkdir()
    path.write_text("[mlflow]\nmlflow_tracking_username = alice\nmlflow_tracking_password = a-long-secret-1\n")
    os.chmod(path, 0o644)
    with pytest.raises(CAEError, match="readable by other users"):
        read_credentials()
    os.chmod(path, 0o600)
    assert read_credentials() == ("alice", "a-long-secret-1")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bob")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "another-secret-2")
    assert read_credentials() == ("bob", "another-secret-2")


def test_a_new_store_is_created_without_mlflows_info_lines(tmp_path, capfd):
    Tracker(f"sqlite:///{tmp_path}/new.db").check()
    assert (tmp_path / "new.db").is_file()
    err = capfd.readouterr().err
    assert "database tables" not in err and " INFO " not in err, err


def test_a_password_in_the_tracking_url_is_refused():
    with pytest.raises(CAEError, match="contains a password"):
        Tracker("http://alice:secret@127.0.0.1:5000")


# ---- one tiny real study ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def study(tmp_path_factory, tracking_uri):
    tiny_search(tmp_path_factory.mktemp("registry"), "registered", trials=2)
    from cae.search.best import read_best

    return read_best("registered")


def test_the_best_model_is_registered_and_reproduces_its_test_mse(study, tracker):
    from cae.data import load_splits
    from cae.train import evaluate

    assert study["registered_model"] == {"name": "registered", "version": 1}
    model = load_registered(tracker, "registered", "latest")
    splits = load_splits("sample", study["config"]["seed"], study["config"]["data"]["subset"])
    test, _ = evaluate(model, splits.x_test, study["config"]["data"]["input"])
    assert test["test_mse"] == pytest.approx(study["test"]["test_mse"], rel=1e-5)
    version = tracker.client.get_model_version("registered", "1")
    assert version.run_id == study["mlflow_run_id"]


def test_every_trial_carries_its_dataset_inputs(study, tracker, sample_splits):
    parent = tracker.find_study_parent("registered")
    runs = tracker.child_runs(parent, "registered")
    assert runs
    for run in runs:
        inputs = inputs_of(tracker, run.info.run_id)
        assert sorted(inputs) == ["cifar10-test", "cifar10-train", "cifar10-val"]
        assert {digest for _, digest, _ in inputs.values()} == {sample_splits.digest}


def test_a_training_run_carries_its_dataset_inputs(tracker, sample_splits):
    from cae.config import ExperimentConfig
    from cae.schema import with_overrides
    from cae.tracked_training import run_experiment

    config = with_overrides(
        ExperimentConfig(), {"data.source": "sample", "data.subset": 240, "train.epochs": 1, "name": "tracking-train"}
    )
    run_id, _, _ = run_experiment(config, tracker)
    inputs = inputs_of(tracker, run_id)
    assert {name: context for name, (context, _, _) in inputs.items()} == {
        "cifar10-train": "training",
        "cifar10-val": "validation",
        "cifar10-test": "testing",
    }
    assert {digest for _, digest, _ in inputs.values()} == {sample_splits.digest}


def test_a_password_in_a_database_tracking_uri_is_never_shown(tmp_path):
    """A store that cannot be opened: the one-line error names it, without its password."""
    with pytest.raises(CAEError) as err:
        Tracker("mysql+nodriver://cae:s3cret-pass-word@127.0.0.1:9/mlflow").check()
    message = str(err.value)
    assert "s3cret-pass-word" not in message and "cae:***@127.0.0.1:9/mlflow" in message
    assert "\n" not in message


SECRET = "Pa55-SECRET-word"


def recorded_text(tracker: Tracker, run_id: str) -> str:
    """Everything MLflow holds for a run that a password could hide in: params, tags, text artifacts."""
    from pathlib import Path

    data = tracker.client.get_run(run_id).data
    files = [tracker.client.download_artifacts(run_id, a.path) for a in tracker.client.list_artifacts(run_id)]
    return repr([data.params, data.tags]) + "".join(Path(f).read_text() for f in files if Path(f).is_file())


def test_no_param_tag_or_text_of_a_run_holds_a_password(tracker):
    """Every value a run records passes the one masking function: params, tags (also at creation), text."""
    url = f"postgresql://cae:{SECRET}@db.example:5432/cae?sslmode=require"
    run = tracker.start_run("tracking-secrets", "parent", tags={"storage_at_start": url})
    with run:
        run.log_params({"storage": url, "urls": [url, "sqlite:///x.db"]})
        run.set_tags(
            {
                "storage": url,
                "error": f"cannot connect to {url}: refused",
                "query": f"postgresql://cae@db/cae?password={SECRET}",
            }
        )
        run.log_text(f"storage: {url}\n", "notes.txt")
    text = recorded_text(tracker, run.run_id)
    assert SECRET not in text
    params = tracker.client.get_run(run.run_id).data.params
    assert params["storage"] == "postgresql://cae:***@db.example:5432/cae?sslmode=require"


def test_a_study_parent_run_on_postgresql_records_no_password(postgres, tracker, tmp_path):
    """A real PostgreSQL storage URL with a password: the parent run's `storage` param and tag are masked."""
    from cae.schema import with_overrides
    from cae.search.run import prepare
    from cae.search.task import ReconstructionTask
    from cae.search_config import SearchConfig

    # The cluster trusts 127.0.0.1, so the server accepts any password: the URL is a real one that works.
    url = postgres.create_database("secrets").replace("postgres@", f"postgres:{SECRET}@")
    assert SECRET in url
    cfg = with_overrides(
        SearchConfig(),
        {
            "study": "tracking-pg-secret",
            "storage": url,
            "trials": 1,
            "experiment.data.source": "sample",
            "experiment.data.subset": 160,
        },
    )
    _, _, parent = prepare(cfg, tracker, ReconstructionTask)
    parent.end()
    data = tracker.client.get_run(parent.run_id).data
    assert data.params["storage"].startswith("postgresql://postgres:***@127.0.0.1:")
    assert data.tags["storage"] == data.params["storage"]
    assert SECRET not in recorded_text(tracker, parent.run_id)

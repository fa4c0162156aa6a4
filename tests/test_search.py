"""A real Optuna study on SQLite with a real MLflow store, on tiny data.

Each trial costs ~10 s, nearly all of it TensorFlow tracing a new model's steps, whatever the data
size: tests use 1 epoch on 320 images and as few trials as what they check needs.
"""

import re
from pathlib import Path

import keras
import numpy as np
import optuna
import pytest

import cae.search.study as study_module
from cae.errors import CAEError
from cae.search.best import load_best_model
from cae.search.run import run_search
from cae.search_config import load_search
from cae.tracking import Tracker

REPO = Path(__file__).resolve().parent.parent


def config(tmp_path: Path, study: str, **overrides):
    base = {
        "study": study,
        "trials": 3,
        "storage": f"sqlite:///{tmp_path}/optuna.db",
        "experiment.data.source": "sample",
        "experiment.data.subset": 320,
        "experiment.train.epochs": 1,
        "heartbeat_interval": 1,
        "grace_period": 3,
        "enqueue": [],
    }
    return load_search(REPO / "experiments/search.yaml", {**base, **overrides})


def trained(study) -> list[int]:
    """Trial numbers that reached training (skipped ones have no MLflow run and do not count)."""
    return [t.number for t in study.trials if not t.user_attrs.get("fail_reason", "").startswith("skipped: ")]


def children(tracking_uri: str, study: str):
    tracker = Tracker(tracking_uri)
    parent = tracker.find_study_parent(study)
    return parent, tracker.child_runs(parent, study)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return tmp_path_factory.mktemp("optuna")


@pytest.fixture(scope="module")
def three_trials(db, tracking_uri):
    cfg = config(db, "three")
    summary = run_search(cfg)
    return cfg, summary


def test_three_trials_are_three_child_runs_under_one_parent(three_trials, tracking_uri):
    _, summary = three_trials
    parent, runs = children(tracking_uri, "three")
    assert len(runs) == 3
    client = Tracker(tracking_uri).client
    for run in runs:
        assert run.data.tags["engine"] == "optuna" and run.data.tags["study"] == "three"
        assert run.data.tags["trial_state"] in ("COMPLETE", "PRUNED")
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")]
        assert steps == list(range(1, len(steps) + 1)) and steps
        assert {"n_params", "latent_values", "bottleneck_values", "model.refine_layers", "train.learning_rate"} <= set(
            run.data.params
        )
    parent_run = client.get_run(parent)
    assert parent_run.info.status == "FINISHED"
    assert parent_run.data.tags["best_trial_number"] == str(summary["best"]["trial_number"])
    assert "test_psnr" in parent_run.data.metrics
    assert {a.path for a in client.list_artifacts(parent, "optuna")} >= {"optuna/optimization_history.png"}


def test_every_trial_compares_at_the_studys_code_size_and_none_is_a_baseline(three_trials, db):
    cfg, _ = three_trials
    study = optuna.load_study(study_name="three", storage=cfg.storage)
    assert cfg.code_values == 256 and "model.code_budget" not in study.trials[0].params  # no size to sample
    assert all(t.user_attrs["code_values"] == 256 for t in study.trials)
    assert not any("reference" in t.user_attrs for t in study.trials)  # the reference CAE is a run of its own


def test_best_json_reloads_into_the_logged_model(three_trials, tracking_uri):
    model, record = load_best_model("three")
    run = Tracker(tracking_uri).client.get_run(record["mlflow_run_id"])
    assert model.count_params() == int(run.data.params["n_params"]) == record["n_params"]
    study = optuna.load_study(study_name="three", storage=three_trials[0].storage)
    assert record["trial_number"] == study.best_trial.number
    assert record["best_val_loss"] == pytest.approx(study.best_value)
    assert record["test"]["test_mse"] > 0


def test_a_damaged_best_keras_is_restored_from_an_intact_copy_of_its_trial(three_trials, tracking_uri, capsys):
    import shutil

    from cae.paths import runs_dir
    from cae.search.best import best_paths, trial_model_path

    model, record = load_best_model("three")
    path = best_paths("three")[1]
    path.write_bytes(path.read_bytes()[:1000])  # truncated, as by a full disk or a killed copy
    artifacts = runs_dir() / "mlartifacts"
    shutil.move(artifacts, artifacts.with_name("mlartifacts-away"))  # MLflow's copies gone too
    try:
        again, _ = load_best_model("three")
    finally:
        shutil.move(artifacts.with_name("mlartifacts-away"), artifacts)
    own = trial_model_path("three", record["trial_number"])
    assert f"restored from {own}" in capsys.readouterr().out
    for a, b in zip(model.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    keras.models.load_model(path, compile=False)  # repaired in place: the next command needs no copy
    # Its own model damaged as well: the registered one (logged to MLflow) is what is left.
    for damaged in (path, own):
        damaged.write_bytes(damaged.read_bytes()[:1000])
    again, _ = load_best_model("three")
    assert "fetched again from models:/three/" in capsys.readouterr().out
    np.testing.assert_array_equal(model.get_weights()[0], again.get_weights()[0])


def test_rerunning_continues_the_numbering_without_duplicates(three_trials, tracking_uri, db):
    cfg = config(db, "three", trials=4)
    run_search(cfg)
    study = optuna.load_study(study_name="three", storage=cfg.storage)
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 4 and [t.number for t in study.trials] == list(range(len(study.trials)))
    _, runs = children(tracking_uri, "three")
    numbers = sorted(int(r.data.tags["trial_number"]) for r in runs)
    assert numbers == trained(study)
    run_search(cfg)  # already complete: no new trial, no new run
    assert len(optuna.load_study(study_name="three", storage=cfg.storage).trials) == len(study.trials)
    assert len(children(tracking_uri, "three")[1]) == len(runs)


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial):
        return True


@pytest.mark.slow  # a real study end to end
def test_a_pruned_trial_is_pruned_in_optuna_and_in_mlflow(db, tracking_uri, monkeypatch):
    monkeypatch.setattr(study_module, "make_pruner", lambda cfg: AlwaysPrune())
    cfg = config(db, "pruned", trials=2, **{"experiment.train.epochs": 2})  # never pruned at its last epoch
    run_search(cfg)
    study = optuna.load_study(study_name="pruned", storage=cfg.storage)
    assert [t.state.name for t in study.trials] == ["PRUNED", "PRUNED"]
    client = Tracker(tracking_uri).client
    for run in children(tracking_uri, "pruned")[1]:
        assert run.data.tags["trial_state"] == "PRUNED" and run.info.status == "KILLED"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [1]  # its curve
        trial = study.trials[int(run.data.tags["trial_number"])]
        assert run.data.params["n_params"] == str(trial.user_attrs["n_params"])  # its size, as compare tables it


class Poison(keras.callbacks.Callback):
    """Makes the loss NaN: the last layer with weights gets NaN weights after every batch."""

    def on_train_batch_end(self, batch, logs=None):
        kernel = [layer for layer in self.model.layers if layer.trainable_weights][-1].trainable_weights[0]
        kernel.assign(np.full(kernel.shape, np.nan))


@pytest.mark.slow  # a real study end to end
def test_a_nan_trial_fails_and_the_study_goes_on(db, tracking_uri):
    cfg = config(db, "nan", trials=1)
    run_search(cfg, extra_callbacks=lambda trial: [Poison()] if trial.number == 0 else [])
    study = optuna.load_study(study_name="nan", storage=cfg.storage)
    states = [t.state.name for t in study.trials]
    assert states == ["FAIL", "COMPLETE"]  # the failed trial is not counted: one more ran
    assert "training diverged" in study.trials[0].user_attrs["fail_reason"]
    failed = [r for r in children(tracking_uri, "nan")[1] if r.data.tags["trial_number"] == "0"]
    assert failed[0].info.status == "FAILED" and failed[0].data.tags["trial_state"] == "FAIL"


class Dead(keras.callbacks.Callback):
    """Kills the output: the last layer with weights gets zero weights and a bias of -20 after every
    batch, so the model predicts black (MSE ~0.3), whatever family the trial drew."""

    def on_train_batch_end(self, batch, logs=None):
        kernel, bias = [layer for layer in self.model.layers if layer.weights][-1].weights
        kernel.assign(np.zeros(kernel.shape, dtype="float32"))
        bias.assign(np.full(bias.shape, -20.0, dtype="float32"))


@pytest.mark.slow  # a real study end to end
def test_a_dead_trial_is_stopped_after_two_epochs_with_its_reason_and_the_study_goes_on(db, tracking_uri):
    cfg = config(db, "dead", trials=2, **{"experiment.train.epochs": 6, "pruner.name": "none"})
    run_search(cfg, extra_callbacks=lambda trial: [Dead()] if trial.number == 1 else [])
    study = optuna.load_study(study_name="dead", storage=cfg.storage)
    dead = study.trials[1]
    assert dead.state.name == "PRUNED" and max(dead.intermediate_values) + 1 == 2  # stopped at epoch 2 of 6
    assert re.match(
        r"learns nothing: validation MSE 0\.\d+ after epoch 2 is no better than the training split's "
        r"mean image \(0\.0\d+\)",
        dead.user_attrs["stop_reason"],
    )
    run = next(r for r in children(tracking_uri, "dead")[1] if r.data.tags["trial_number"] == "1")
    assert run.data.tags["trial_state"] == "PRUNED" and run.data.tags["error"].startswith("learns nothing")
    assert study.trials[0].state.name == "COMPLETE" and len(study.trials[0].intermediate_values) == 6  # it learns


def test_a_model_that_learns_slowly_is_not_called_dead():
    from cae.callbacks import dead_stop

    stop = dead_stop(mean_image_mse=0.06, learning_rate=1e-4)
    stop.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    stop.on_train_begin()
    for epoch, val in enumerate([0.3, 0.29995, 0.05, 0.05, 0.0601]):
        stop.on_epoch_end(epoch, {"loss": 0.3, "val_loss": val})
        assert stop.reason is None  # 0.017 % an epoch is slow, not dead; below the mean image it learned
    stop.on_epoch_end(5, {"loss": 0.3, "val_loss": 0.0601})
    assert stop.reason.startswith("learns nothing: validation MSE 0.0601 after epoch 6")


@pytest.mark.slow  # two `cae search-worker` processes, each importing TensorFlow
def test_two_workers_on_one_sqlite_study(db, tracking_uri):
    cfg = config(db, "parallel", trials=2, workers=2)
    run_search(cfg)
    study = optuna.load_study(study_name="parallel", storage=cfg.storage)
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials) == 2
    assert len({t.number for t in study.trials}) == len(study.trials)
    numbers = [int(r.data.tags["trial_number"]) for r in children(tracking_uri, "parallel")[1]]
    assert sorted(numbers) == trained(study)


@pytest.mark.parametrize(
    ("storage", "message"),
    [("mysql+nodriver://x", "cannot open Optuna storage"), ("notaurl", "invalid storage URL 'notaurl'")],
)
def test_bad_storage_fails_before_training(db, storage, message):
    with pytest.raises(CAEError, match=message):
        run_search(config(db, "bad", storage=storage))


@pytest.mark.slow  # a real study end to end
def test_a_point_of_another_code_size_is_skipped_without_counting(db, tracking_uri):
    # The conv family at 256 values: 8 filters, no growth, 3 poolings narrow to 4×4×8 = 128 before the code.
    narrow = {"model.depth": 3, "model.filters": 8, "model.filter_growth": 1.0}
    cfg = load_search(
        REPO / "experiments/search-conv.yaml",
        {
            "study": "sizes",
            "trials": 1,
            "storage": f"sqlite:///{db}/optuna.db",
            "experiment.data.source": "sample",
            "experiment.data.subset": 320,
            "experiment.train.epochs": 1,
            "enqueue": [narrow],
        },
    )
    run_search(cfg)
    study = optuna.load_study(study_name="sizes", storage=cfg.storage)
    counted = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(counted) == 1 and all(t.user_attrs["code_values"] == 256 for t in counted)
    skipped = study.trials[0]
    assert skipped.state.name == "FAIL" and skipped.user_attrs["code_values"] == 128
    assert skipped.user_attrs["fail_reason"] == (
        "skipped: code of 128 values; the study compares codes of code_values=256"
    )
    assert sorted(int(r.data.tags["trial_number"]) for r in children(tracking_uri, "sizes")[1]) == trained(study)


def test_a_space_that_samples_the_code_size_is_refused_for_a_study_of_one_size(tmp_path):
    from cae.preflight import check_search

    space = tmp_path / "sizes.yaml"
    space.write_text("params:\n  model.code_budget: {low: 128, high: 512}\n  model.refine_layers: {low: 0, high: 2}\n")
    cfg = config(tmp_path, "two-sizes", space=str(space))
    with pytest.raises(CAEError, match=r"samples model.code_budget.*code_values=256"):
        check_search(cfg)


@pytest.mark.slow  # a real study end to end
def test_a_new_study_reusing_a_name_gets_its_own_parent_and_best(tmp_path, tracking_uri):
    """Same STUDY, another storage (or a deleted database): nothing of the old study is reused."""
    import json

    from cae.paths import study_dir

    first = config(tmp_path / "a", "reused", trials=1)
    (tmp_path / "a").mkdir()
    run_search(first)
    old_parent = Tracker(tracking_uri).find_study_parent("reused")
    second = config(tmp_path / "b", "reused", trials=1)
    (tmp_path / "b").mkdir()
    run_search(second)
    new = optuna.load_study(study_name="reused", storage=second.storage)
    new_parent = Tracker(tracking_uri).find_study_parent("reused")
    assert new_parent != old_parent
    assert Tracker(tracking_uri).get_run(new_parent).data.tags["study_uid"] == new.user_attrs["uid"]
    assert len(Tracker(tracking_uri).child_runs(new_parent, "reused")) == 1
    record = json.loads((study_dir("reused") / "best.json").read_text())
    assert record["study_uid"] == new.user_attrs["uid"]  # replaced, although the old best may score better


@pytest.mark.slow  # a real study end to end
def test_a_stopped_search_does_not_leave_its_parent_run_running(db, tracking_uri):
    cfg = config(db, "all-nan", trials=4)
    with pytest.raises(CAEError, match="3 trials failed in a row"):
        run_search(cfg, extra_callbacks=lambda trial: [Poison()])
    parent = Tracker(tracking_uri).get_run(Tracker(tracking_uri).find_study_parent("all-nan"))
    assert parent.info.status == "FAILED" and "3 trials failed in a row" in parent.data.tags["error"]


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.slow)], ids=["in-process", "spawned"])
def test_child_runs_land_in_the_tracker_given_not_the_environments(db, tracking_uri, tmp_path, workers):
    """run_search(tracker=...) with MLFLOW_TRACKING_URI pointing elsewhere: parent and children together."""
    given = Tracker(f"sqlite:///{tmp_path}/given.db")
    study = f"given-{workers}"
    run_search(config(db, study, trials=workers, workers=workers), tracker=given)
    parent = given.find_study_parent(study)
    assert parent is not None and len(given.child_runs(parent, study)) >= workers
    assert all(r.data.tags["trial_state"] in ("COMPLETE", "PRUNED") for r in given.child_runs(parent, study))
    assert Tracker(tracking_uri).experiment_id(study, create=False) is None  # nothing in the environment's store


def test_the_committed_best_json_passes_the_readers_checks(tmp_path, monkeypatch):
    """results/cae-search-v1/best.* are what `cae best` / `cae colorize` read: they must validate and agree."""
    import shutil

    from cae.config import ExperimentConfig
    from cae.model import build_from_config, code_sizes
    from cae.schema import from_dict

    monkeypatch.setenv("CAE_RUNS_DIR", str(tmp_path))
    (tmp_path / "cae-search").mkdir()
    for name in ("best.json", "best.keras"):
        shutil.copy(REPO / "results" / "cae-search-v1" / name, tmp_path / "cae-search" / name)
    model, record = load_best_model("cae-search")  # read_best validates; the model must be trial 44's
    assert record["objective"] == {"name": "best_val_loss", "value": record["best_val_loss"], "direction": "minimize"}
    assert model.count_params() == record["n_params"]
    rebuilt = build_from_config(from_dict(ExperimentConfig, record["config"], "best.json").model)
    assert rebuilt.count_params() == record["n_params"]  # the recorded config is the exported architecture
    assert code_sizes(rebuilt) == (record["latent_values"], record["bottleneck_values"])


@pytest.mark.slow  # a real study end to end
def test_resuming_on_other_settings_is_refused_and_extending_is_recorded(db, tracking_uri):
    cfg = config(db, "integrity", trials=1)
    run_search(cfg)
    other = config(db, "integrity", trials=2, **{"experiment.data.subset": 240, "experiment.train.epochs": 2})
    with pytest.raises(CAEError, match=r"subset: 320 images -> 240 images; epochs: 1 -> 2.*STUDY=.*EXTEND=1"):
        run_search(other)
    study = optuna.load_study(study_name="integrity", storage=cfg.storage)
    assert len(study.trials) == 1 and study.user_attrs["subset"] == 320  # refused before anything changed
    run_search(config(db, "integrity", trials=2, extend=True, **{"experiment.data.subset": 240}))
    study = optuna.load_study(study_name="integrity", storage=cfg.storage)
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials) == 2
    (extension,) = study.user_attrs["extensions"]
    assert extension["changed"] == {"subset": [320, 240]} and study.user_attrs["subset"] == 240
    assert {"data_digest", "space_digest", "data_source", "epochs"} <= set(study.user_attrs)
    assert study.user_attrs["strategy"] == cfg.strategy  # what the replay compares a live study with


@pytest.mark.slow  # a real study end to end
def test_the_default_study_prunes_at_early_rungs_and_exports_the_best_trials_own_model(db, tracking_uri):
    """experiments/search.yaml as it is (its sampler and pruner, the enqueued points), shortened to 9 epochs."""
    enqueued = list(load_search(REPO / "experiments/search.yaml").enqueue)
    cfg = config(
        db, "defaults", trials=6, enqueue=enqueued, **{"experiment.train.epochs": 9, "experiment.data.subset": 160}
    )
    run_search(cfg)
    study = optuna.load_study(study_name="defaults", storage=cfg.storage)
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    assert pruned and all(max(t.intermediate_values) + 1 < 9 for t in pruned)  # stopped at an early rung
    assert any(t.user_attrs.get("enqueued") for t in study.trials)
    model, record = load_best_model("defaults")
    assert record["trial_number"] == study.best_trial.number and record["epochs"] == 9
    from cae.data import splits_for
    from cae.train import evaluate

    scores, _ = evaluate(model, splits_for(cfg.experiment).x_val)
    assert scores["test_mse"] == pytest.approx(study.best_value, rel=1e-4)  # its own weights, not a retrain


@pytest.mark.slow  # a real study end to end
def test_a_two_objective_study_stops_trials_at_its_rungs_by_their_margin_over_pca(db, tracking_uri):
    overrides = {
        "study": "rungs",
        "storage": f"sqlite:///{db}/optuna.db",
        "experiment.data.source": "sample",
        "experiment.data.subset": 320,
        "pruner.name": "successive_halving",
        "pruner.n_warmup_steps": 1,
        "experiment.train.epochs": 3,
        "trials": 4,
        "sampler.name": "random",
        # Codes of one size bin: trials compete with trials of a similar size only.
        "enqueue": [
            {"model.bottleneck": "dense", "model.code_budget": c, "model.pca_init": True} for c in (200, 210, 220, 230)
        ],
    }
    run_search(load_search(REPO / "experiments/pareto.yaml", overrides))
    study = optuna.load_study(study_name="rungs", storage=config(db, "rungs").storage)
    judged = [t for t in study.trials if "rung_1" in t.user_attrs]
    assert len(judged) == 4  # every trial was judged at epoch 1 (rungs 1; 3 is the last epoch)
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    assert pruned and all(t.user_attrs["stop_reason"].startswith("rung 1:") for t in pruned)
    best_margin = max(t.user_attrs["rung_1"] for t in judged)
    assert all(t.user_attrs["rung_1"] < best_margin for t in pruned)  # the best at the rung always goes on
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert complete and all("pca_val_psnr" in t.user_attrs and "val_margin_vs_pca" in t.user_attrs for t in complete)


@pytest.mark.slow  # a real study end to end
def test_delete_forgets_a_study_so_its_name_starts_afresh(db, tracking_uri):
    from cae.cli import main
    from cae.paths import study_dir

    cfg = config(db, "doomed", trials=1)
    run_search(cfg)
    assert main(["delete", "--study", "doomed", "--storage", cfg.storage, "--yes"]) == 0
    assert "doomed" not in [s.study_name for s in optuna.get_all_study_summaries(cfg.storage)]
    assert not study_dir("doomed").exists() and Tracker(tracking_uri).experiment_id("doomed", create=False) is None
    run_search(cfg)  # the name is free again: a new study with its own experiment and nothing of the old one
    parent = Tracker(tracking_uri).find_study_parent("doomed")
    assert len(Tracker(tracking_uri).child_runs(parent, "doomed")) == 1


def test_delete_refuses_a_study_with_a_running_trial_unless_forced(tmp_path, tracking_uri, capsys):
    from cae.cli import main

    storage = f"sqlite:///{tmp_path}/optuna.db"  # its own storage: the module's holds other studies
    study = optuna.create_study(study_name="busy", storage=storage)
    study.ask()  # a trial some worker is running now
    assert main(["delete", "--study", "busy", "--storage", storage, "--yes"]) != 0
    assert "study 'busy' has 1 trial(s) running (0); stop its search first" in capsys.readouterr().err
    assert optuna.get_all_study_names(storage) == ["busy"]  # nothing deleted
    assert main(["delete", "--study", "busy", "--storage", storage, "--yes", "--force"]) == 0
    assert optuna.get_all_study_names(storage) == []


def test_the_duration_estimate_follows_the_finished_trials():
    from cae.search.estimate import duration_estimate

    # After the enqueued point alone (12 of 12 epochs, 20 s each) a study expected to train 57 % of
    # its epochs is not promised 100 % (1.9 h): one trial weighs 1 against the prior's 10.
    assert duration_estimate([(240.0, 12)], left=29, workers=1, epochs=12, prior_share=0.57) == (
        "estimate: ~1.2 h for the 29 trial(s) left (an epoch ~20 s, a trial ~61% of its 12 epochs; 1 finished)"
    )
    # Many trials: their own share rules. 20 pruned at epoch 3 and 5 complete of 20 epochs, 10 s an
    # epoch: 8 trials' worth of epochs in 25 (32 %), 33 % with the prior's 35 % weighed as 10 trials.
    many = [(30.0, 3)] * 20 + [(200.0, 20)] * 5
    assert duration_estimate(many, left=10, workers=2, epochs=20, prior_share=0.35) == (
        "estimate: ~5 min for the 10 trial(s) left (an epoch ~10 s, a trial ~33% of its 20 epochs; 25 finished)"
    )
    assert duration_estimate([(60.0, 1)], left=0, workers=1, epochs=5, prior_share=0.5) is None  # nothing left
    assert duration_estimate([(60.0, 0)], left=3, workers=1, epochs=5, prior_share=0.5) is None  # no epoch timed


@pytest.mark.slow  # a real study end to end
def test_a_worker_whose_trial_was_failed_by_another_carries_on(tmp_path, tracking_uri, capsys):
    """A worker paused past grace_period finds its trial FAILed by another worker's stale-trial sweep
    (here a second connection to the same SQLite storage does it mid-training): one note, no traceback,
    and the study still ends with its trials finished."""
    from cae.search.run import run_search
    from cae.search_config import load_search

    storage = f"sqlite:///{tmp_path}/optuna.db"
    cfg = load_search(
        REPO / "experiments/search.yaml",
        {
            "study": "paused",
            "trials": 2,
            "storage": storage,
            "enqueue": [],
            "pruner.name": "none",
            "experiment.data.source": "sample",
            "experiment.data.subset": 160,
            "experiment.train.epochs": 2,
        },
    )

    class FailedElsewhere(keras.callbacks.Callback):
        def __init__(self, trial):
            super().__init__()
            self.trial = trial

        def on_epoch_end(self, epoch, logs=None):
            other = optuna.storages.RDBStorage(storage)  # another worker's own connection
            other.set_trial_state_values(self.trial._trial_id, optuna.trial.TrialState.FAIL)
            other.engine.dispose()

    run_search(cfg, extra_callbacks=lambda trial: [FailedElsewhere(trial)] if trial.number == 0 else [])
    captured = capsys.readouterr()
    out = captured.out
    assert "this worker's trial was failed as stale by another worker" in out
    assert "Traceback" not in captured.err + out and "UpdateFinishedTrialError" not in captured.err  # one note only
    study = optuna.load_study(study_name="paused", storage=storage)
    states = [t.state.name for t in study.trials]
    assert states[0] == "FAIL" and states.count("COMPLETE") + states.count("PRUNED") == 2


def test_a_trial_the_tracking_server_failed_is_queued_again_as_what_it_was():
    """A real (in-memory) study: the point returns WAITING through Optuna's retry (its parameters, its
    attributes, its reported epochs, the attempt it retries); the worker stops in one line."""
    from cae.search.retry import first_attempt, requeue_if_unanswered
    from cae.tracking.watch import TrackingUnavailable

    study = optuna.create_study()
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    trial.set_user_attr("enqueued", "a recipe")
    trial.report(0.5, 0)
    trial.set_user_attr(
        "fail_reason",
        "TrackingUnavailable: MLflow tracking server http://h:5000 did not answer "
        "for 130 s (log_batch: no answer); the study is intact: rerun",
    )
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    with pytest.raises(
        TrackingUnavailable,
        match=r"did not answer for 130 s \(log_batch: no answer\); trial 0 is "
        r"queued again and the study is intact",
    ):
        requeue_if_unanswered(study, study.trials[0])
    waiting = study.trials[1]
    assert waiting.state.name == "WAITING" and waiting.params == study.trials[0].params
    assert waiting.user_attrs["enqueued"] == "a recipe" and waiting.intermediate_values == {0: 0.5}
    assert first_attempt(waiting) == 0
    requeue_if_unanswered(study, study.trials[1])  # not a failed trial: nothing happens
    assert len(study.trials) == 2


def test_an_interrupted_trial_is_queued_again_while_the_budget_has_room():
    """A real (in-memory) study: the stopped point comes back WAITING with what it was, once; not a
    point the study's space does not hold, nor one past the budget of finished and queued trials."""
    from cae.search.retry import first_attempt, requeue_interrupted
    from cae.space import load_space

    cfg = load_search(REPO / "experiments/search.yaml")
    space = load_space(cfg.space, cfg.experiment)
    study = optuna.create_study()
    for _ in range(2):
        trial = study.ask()
        space.sample_optuna(trial)
        trial.set_user_attr("enqueued", "a recipe")
        trial.set_user_attr("fail_reason", "interrupted (SIGTERM)")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    study.add_trial(
        optuna.create_trial(  # a parameter this space does not have
            state=optuna.trial.TrialState.FAIL,
            params={"model.gone": 1},
            distributions={"model.gone": optuna.distributions.IntDistribution(0, 2)},
        )
    )

    assert requeue_interrupted(study, 0, space, trials=2)
    queued = study.trials[3]
    assert queued.state.name == "WAITING" and queued.params == study.trials[0].params
    assert queued.user_attrs["enqueued"] == "a recipe" and first_attempt(queued) == 0
    assert not requeue_interrupted(study, 2, space, trials=5)  # outside the space
    assert not requeue_interrupted(study, 3, space, trials=5)  # WAITING, not an interrupted trial
    assert not requeue_interrupted(study, None, space, trials=5)  # stopped before its trial began
    assert requeue_interrupted(study, 1, space, trials=3) and len(study.trials) == 5
    # Two workers stopped with one trial left in the budget: the second point is not queued.
    first = study.trials[0]
    study.add_trial(
        optuna.create_trial(state=optuna.trial.TrialState.FAIL, params=first.params, distributions=first.distributions)
    )
    assert not requeue_interrupted(study, 5, space, trials=2) and len(study.trials) == 6


def test_a_failed_attempt_competes_with_nobody_at_the_rungs_and_sizes_compete_within_their_bin():
    """A real (in-memory) study: the stopped run of a point does not count against other trials at a rung
    (its retry competes in its place), nor does a trial of another code size."""
    from cae.search.rungs import RungPruning

    class Margin:  # the task's rung value: the margin over PCA, given here
        def __init__(self, value):
            self.value = value

        def rung_value(self, model, val_loss, code_values):
            return self.value

    study = optuna.create_study()

    def finished(rung, code, state=optuna.trial.TrialState.COMPLETE):
        trial = study.ask()
        trial.set_user_attr("rung_1", rung)
        trial.set_user_attr("code_values", code)
        study.tell(trial, state=state, values=[0.1] if state == optuna.trial.TrialState.COMPLETE else None)

    finished(0.53, 640, optuna.trial.TrialState.FAIL)  # interrupted after its first rung
    finished(-15.2, 640)
    finished(2.0, 192)  # another size: no competitor of a 640-value trial

    def judge(value):
        trial = study.ask()
        trial.set_user_attr("code_values", 640)
        RungPruning(trial, Margin(value), 640, [1]).on_epoch_end(0, {"val_loss": 1.0})

    judge(0.52)  # goes on: the failed attempt's 0.53 and the 192-value 2.0 are no competitors
    with pytest.raises(optuna.TrialPruned, match=r"rung 1: \+0.23 is not among the best 1/3 of 3 trials of its size"):
        judge(0.23)  # the COMPLETE one, the one before it and itself: 3


def test_promotable_keeps_the_best_third():
    from cae.search.rungs import promotable

    assert promotable(0.2, [-15.0])  # the better of two goes on
    assert not promotable(0.2, [-15.0, 0.5])  # 1 of 3 goes on: 0.5


def test_a_resumed_study_draws_new_points_not_the_first_runs_again(tmp_path):
    """Seen in the two-objective study: each resume, seeded as a new study, trained its first random
    point again. The draws of a resumed run must differ from the first run's, and be repeatable."""
    cfg = config(tmp_path, "resumed", **{"sampler.name": "random"})
    optuna.create_study(study_name="resumed", storage=cfg.storage)

    def run(asks: int) -> list[float]:
        study = study_module.load_existing_study(cfg)
        xs = []
        for _ in range(asks):
            trial = study.ask()
            xs.append(trial.suggest_float("x", 0, 1))
            study.tell(trial, xs[-1])
        return xs

    first = run(2)
    second = run(1)
    assert second[0] not in first
    seed = study_module.resumed_seed
    assert seed(7, 0, 2) == seed(7, 0, 2) != seed(7, 0, 3)  # the same history draws the same points
    assert seed(7, 1, 0) == 8  # a new study: the config's seed, one per worker


def test_a_study_an_older_release_made_is_refused_in_one_line_not_converted():
    from cae.search.record import check_resume

    study = optuna.create_study(study_name="old")
    study.add_trial(optuna.create_trial(state=optuna.trial.TrialState.COMPLETE, value=0.1))
    with pytest.raises(CAEError, match=r"made by an older release of the harness \(study format 1, this one reads 2\)"):
        check_resume(study, {"epochs": 30}, extend=False)
    fresh = optuna.create_study(study_name="new")
    check_resume(fresh, {"epochs": 30}, extend=False)  # a new study records the format it is made in
    assert fresh.user_attrs["format"] == 2

"""keras-tuner as the second engine: same space file, same MLflow layout, same best.json."""

from pathlib import Path

import pytest

from cae.search.best import load_best_model
from cae.search.tuner import run_tuner
from cae.search_config import load_search
from cae.space import load_space
from cae.tracking import Tracker

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # a real keras-tuner study end to end
def test_keras_tuner_trials_are_child_runs_with_curves(tracking_uri, monkeypatch):
    import cae.search.tuner as tuner_module

    builds = []
    build_model = tuner_module.build_model
    monkeypatch.setattr(tuner_module, "build_model", lambda *a: builds.append(1) or build_model(*a))
    cfg = load_search(
        REPO / "experiments/search.yaml",
        {
            "study": "kt",
            "engine": "keras-tuner",
            "tuner": "hyperband",
            "trials": 3,
            "experiment.data.source": "sample",
            "experiment.data.subset": 320,
            "experiment.train.epochs": 3,
        },
    )
    summary = run_tuner(cfg)
    space = load_space(REPO / cfg.space, cfg.experiment)
    tracker = Tracker(tracking_uri)
    parent = tracker.find_study_parent("kt")
    runs = tracker.child_runs(parent, "kt")
    # Hyperband's first bracket: 3 trials at most (skipped over-budget points have no run).
    assert summary["trials"] == 3 and 2 <= len(runs) <= 3
    # One build per trial (the code-size check's model is the one trained), one for keras-tuner's space.
    assert cfg.code_values and len(builds) == summary["trials"] + 1
    for run in runs:
        assert run.data.tags["engine"] == "keras-tuner" and run.data.tags["trial_state"] == "COMPLETE"
        steps = [m.step for m in tracker.client.get_metric_history(run.info.run_id, "val_loss")]
        first = int(run.data.tags["kt.initial_epoch"]) + 1  # Hyperband continues models between rounds
        assert steps == list(range(first, int(run.data.tags["kt.epochs"]) + 1)) and steps
        assert not any(k.startswith("tuner/") for k in run.data.params)  # Hyperband's own keys: tags only
        # The same names as the Optuna engine: the space's keys, then the size params every trial logs.
        # (Keys under `if:` only where their condition holds: a conv trial has no model.refine_layers.)
        active = {p.name for p in space.params if p.active(run.data.params)}
        assert set(run.data.params) == active | {"n_params", "latent_values", "bottleneck_values"}
    model, record = load_best_model("kt")
    assert record["engine"] == "keras-tuner" and model.count_params() == record["n_params"]
    assert tracker.client.get_run(parent).data.tags["best_trial_number"] == str(record["trial_number"])


@pytest.mark.slow  # a real keras-tuner study end to end
def test_a_dead_trial_under_keras_tuner_is_pruned_in_mlflow_and_the_search_goes_on(tracking_uri, monkeypatch, capsys):
    import keras

    import cae.search.task as task_module

    calls = []

    def stop_the_second(mean_image_mse, learning_rate):  # the rule is tested in test_search; here its path
        calls.append(mean_image_mse)

        class Stop(keras.callbacks.Callback):
            reason = None

            def on_epoch_end(self, epoch, logs=None):
                if len(calls) == 2:
                    self.reason, self.model.stop_training = "learns nothing: forced by the test", True

        return Stop()

    monkeypatch.setattr(task_module, "dead_stop", stop_the_second)
    cfg = load_search(
        REPO / "experiments/search.yaml",
        {
            "study": "kt-dead",
            "engine": "keras-tuner",
            "tuner": "random",
            "trials": 3,
            "max_code_values": None,
            "experiment.data.source": "sample",
            "experiment.data.subset": 160,
            "experiment.train.epochs": 1,
        },
    )
    run_tuner(cfg)
    tracker = Tracker(tracking_uri)
    runs = {r.data.tags["trial_number"]: r for r in tracker.child_runs(tracker.find_study_parent("kt-dead"), "kt-dead")}
    stopped = [r for r in runs.values() if r.data.tags["trial_state"] == "PRUNED"]
    assert len(stopped) == 1 and stopped[0].data.tags["error"] == "learns nothing: forced by the test"
    assert "PRUNED" in capsys.readouterr().out and len(calls) >= 3  # the search went on after it

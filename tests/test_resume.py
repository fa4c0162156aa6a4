"""A retried point goes on from its stopped attempt's last epoch: which attempt is first, the
folder's identity, and a real interrupted Keras training continued (cae/search/retry.py)."""

from __future__ import annotations

import keras
import numpy as np
import optuna
import pytest

from cae.config import ExperimentConfig
from cae.fitting import fit
from cae.search.retry import PointCheckpoint, first_attempt


def _study_with(*attrs: tuple[dict, dict]) -> list[optuna.trial.FrozenTrial]:
    study = optuna.create_study()
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for user, system in attrs:
        study.add_trial(
            optuna.create_trial(
                state=optuna.trial.TrialState.FAIL,
                params={"x": 0.5},
                distributions=dist,
                user_attrs=user,
                system_attrs=system,
            )
        )
    return study.get_trials(deepcopy=False)


def test_the_first_attempt_is_the_head_of_optunas_retry_chain():
    trials = _study_with(
        ({"rung_1": 0.1}, {}),  # 0: the point's first attempt, interrupted after rung 1
        ({}, {"failed_trial": 0, "retry_history": [0]}),  # 1: its retry, killed
        ({}, {"failed_trial": 0, "retry_history": [0, 1]}),  # 2: the retry of 1
        ({"rung_1": 0.9}, {}),  # 3: another point
    )
    assert [first_attempt(t) for t in trials] == [0, 0, 0, 3]


class _StopAt(keras.callbacks.Callback):
    """Ctrl-C after ``epochs`` epochs, as the user's interrupt reaches a training."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            raise KeyboardInterrupt


def _train(workdir, epochs: int, callbacks=()):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4)])
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    data = (x, x)
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(data).batch(16)
    cosine = keras.optimizers.schedules.CosineDecay(0.01, decay_steps=epochs * 4)
    fitted = fit(model, ds, ds, loss="mse", learning_rate=cosine, epochs=epochs, callbacks=callbacks, workdir=workdir)
    return model, fitted


def _resumable(point: PointCheckpoint, *callbacks) -> list:
    """The callbacks a trial trains with: the point's note of its backed-up epochs first."""
    return [point.callback(), *callbacks]


def test_an_interrupted_training_goes_on_from_its_last_epoch_in_its_points_folder():
    config = ExperimentConfig()
    point = PointCheckpoint("resumable", 4, "uid-1", config)
    with pytest.raises(KeyboardInterrupt):
        _train(point.open(), 5, _resumable(point, _StopAt(2)))
    done = point.done()
    assert len(done["val_loss"]) == 2 and all(np.isfinite(done["val_loss"]))

    again = PointCheckpoint("resumable", 4, "uid-1", config)  # the retry, in a new process
    assert again.open() == point.path and again.done() == done  # the same point: its state is kept
    model, fitted = _train(again.path, 5, _resumable(again))
    assert len(fitted.history["loss"]) == 3  # epochs 3 to 5 only
    assert int(model.optimizer.iterations.numpy()) == 5 * 4  # the optimizer's state (the cosine) went on too
    again.discard()
    assert not again.path.exists()


def test_a_folder_of_another_study_or_budget_is_started_afresh():
    config = ExperimentConfig()
    point = PointCheckpoint("renamed", 0, "uid-old", config)
    with pytest.raises(KeyboardInterrupt):
        _train(point.open(), 3, _resumable(point, _StopAt(1)))
    assert len(point.done()["val_loss"]) == 1
    newer = PointCheckpoint("renamed", 0, "uid-new", config)  # the study was deleted and made again
    newer.open()
    assert newer.done() == {"train_loss": [], "val_loss": []} and not (newer.path / "history.csv").exists()

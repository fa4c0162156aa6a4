"""The second engine: keras-tuner over the same search space, logged to MLflow the same way.

``make search ENGINE=keras-tuner`` (study ``<study>-kt`` unless STUDY is given). The space file
is read by the same parser as Optuna's; trials are child runs with ``engine=keras-tuner`` and
per-epoch curves, through the same trial lifecycle (:mod:`cae.search.trial`) and the same task
(``HyperModel.fit`` calls :meth:`Task.train` with the model, epochs and callbacks that
keras-tuner hands over: Hyperband continues models this way); the best trial is exported to the
same ``best.json`` / ``best.keras``.
"""

from __future__ import annotations

import time
from typing import Any

import keras
import keras_tuner

from cae.data import Splits, splits_for
from cae.errors import CAEError, TrialStopped, failure_reason, first_line
from cae.hardware import configure_threads
from cae.model import code_sizes
from cae.paths import ensure_dir, study_dir
from cae.search.best import best_paths
from cae.search.study import SKIPPED
from cae.search.task import ReconstructionTask, Task, TaskFactory, TrialOutcome
from cae.search.trial import TrialSpec, over_budget, tracked_trial, trial_line
from cae.search_config import SearchConfig
from cae.space import SearchSpace, load_space
from cae.tracking import Tracker
from cae.train import build_model

ENGINE = "keras-tuner"
MAX_FAILED_IN_A_ROW = 50  # skipped trials count as failed in keras-tuner: as many as Optuna skips


class CAEHyperModel(keras_tuner.HyperModel):
    """``build(hp)`` only turns ``hp`` values into a config; the builder takes plain values."""

    def __init__(self, space: SearchSpace, task: Task, splits: Splits):
        super().__init__()
        self.space, self.task, self.splits = space, task, splits
        self.last: TrialOutcome | None = None
        self.prebuilt: Any = None  # built by the code-size check: keras-tuner's build takes it

    def config_for(self, hp: Any) -> Any:
        return self.space.apply(self.task.base, self.space.sample_keras_tuner(hp))

    def build(self, hp: Any) -> Any:
        model, self.prebuilt = self.prebuilt, None
        if model is not None:
            return model
        keras.backend.clear_session()  # free the previous trial's graph (and its retracing)
        return build_model(self.config_for(hp), self.splits)

    def fit(
        self,
        hp: Any,
        model: Any,
        *args: Any,
        callbacks: Any = (),
        epochs: int | None = None,
        initial_epoch: int = 0,
        **kwargs: Any,
    ) -> dict[str, float]:
        self.last = self.task.train(
            self.config_for(hp), model, list(callbacks or []), epochs=epochs, initial_epoch=initial_epoch
        )
        return {"val_loss": self.last.result.best_val_loss}


def make_tuner(
    cfg: SearchConfig, space: SearchSpace, task: Task, splits: Splits, tracker: Tracker, parent_id: str
) -> Any:
    base = {
        "hyperband": keras_tuner.Hyperband,
        "bayesian": keras_tuner.BayesianOptimization,
        "random": keras_tuner.RandomSearch,
    }[cfg.tuner]
    budget = (
        # One Hyperband iteration is ~10 trials at 5 epochs; unlimited iterations let TRIALS decide.
        {"max_epochs": cfg.experiment.train.epochs, "factor": 3, "hyperband_iterations": None}
        if cfg.tuner == "hyperband"
        else {"max_trials": cfg.trials}
    )

    class TrackedTuner(base):  # type: ignore[misc, valid-type]
        """keras-tuner has no MLflow logger: each trial goes through the harness's trial lifecycle."""

        def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> Any:
            hp = trial.hyperparameters
            spec = TrialSpec(
                cfg,
                int(trial.trial_id),
                ENGINE,
                parent_id,
                {k: v for k, v in hp.values.items() if not k.startswith("tuner/")},
                self.hypermodel.config_for(hp),
                tags={f"kt.{k[6:]}": v for k, v in hp.values.items() if k.startswith("tuner/")},
            )
            _skip_over_budget(cfg, spec, self.hypermodel, hp)
            start = time.perf_counter()
            try:
                with tracked_trial(task, tracker, splits, spec) as tracked:
                    kwargs["callbacks"] = [*kwargs.get("callbacks", []), *tracked.callbacks]
                    out = super().run_trial(trial, *args, **kwargs)
                    tracked.complete(self.hypermodel.last)
            except TrialStopped as stop:  # the task's own early stop (a dead network): PRUNED in MLflow too
                print(
                    trial_line("", spec.number, "PRUNED", "-", time.perf_counter() - start, {}, spec.params, str(stop)),
                    flush=True,
                )
                raise keras_tuner.errors.FailedTrialError(str(stop)) from None  # keras-tuner has no pruned state
            except Exception as err:
                print(
                    trial_line(
                        "", spec.number, "FAIL", "-", time.perf_counter() - start, {}, spec.params, failure_reason(err)
                    ),
                    flush=True,
                )
                raise
            finally:
                self.hypermodel.prebuilt = None  # never a later trial's model, whatever failed first
            result = self.hypermodel.last.result
            size = {"n_params": result.n_params, "code_values": result.code_values}
            print(
                trial_line(
                    "",
                    spec.number,
                    "COMPLETE",
                    f"{result.best_val_loss:.6g}",
                    time.perf_counter() - start,
                    size,
                    spec.params,
                ),
                flush=True,
            )
            return out

    tuner = TrackedTuner(
        hypermodel=CAEHyperModel(space, task, splits),
        objective="val_loss",
        seed=cfg.sampler_seed,
        directory=str(ensure_dir(study_dir(cfg.study))),
        project_name="keras_tuner",
        overwrite=False,
        max_consecutive_failed_trials=MAX_FAILED_IN_A_ROW,
        **budget,  # skipped trials count as failed here
    )
    if cfg.tuner == "hyperband":
        tuner.oracle.max_trials = cfg.trials  # Hyperband has no max_trials argument; the oracle honours it
    return tuner


def _skip_over_budget(cfg: SearchConfig, spec: TrialSpec, hypermodel: CAEHyperModel, hp: Any) -> None:
    """Skip (as Optuna does) a point whose code is not one the study compares, before any run exists.

    keras-tuner has no "skipped" state: the trial is FAILED and counts towards its ``max_trials``.
    The model built to measure the code is the one the trial then trains (one build per trial).
    """
    if cfg.max_code_values is None and cfg.code_values is None:
        return
    model = hypermodel.build(hp)  # as the trial's (a PCA code needs the split's basis)
    reason = over_budget(cfg, min(code_sizes(model)))
    if not reason:
        hypermodel.prebuilt = model
    else:
        print(trial_line("", spec.number, "SKIPPED", "-", 0.0, {}, spec.params, SKIPPED + reason), flush=True)
        raise keras_tuner.errors.FailedTrialError(SKIPPED + reason)


def run_tuner(
    cfg: SearchConfig, task: TaskFactory = ReconstructionTask, tracker: Tracker | None = None
) -> dict[str, Any]:
    """Run (or resume) the keras-tuner study; returns its summary (the best scored on test)."""
    tracker = (tracker or Tracker()).check()
    space = load_space(cfg.space, cfg.experiment)
    splits = splits_for(cfg.experiment)
    stage = task(cfg, splits, {})
    parent = tracker.study_parent(cfg.study, {**stage.tags, "engine": ENGINE})
    with parent:  # FINISHED, or FAILED / KILLED with the reason, whatever fails from here on
        # keras-tuner runs trials in this process only: any child run still RUNNING was killed.
        tracker.close_orphans(parent.run_id, cfg.study, still_running=set())
        configure_threads()
        tuner = make_tuner(cfg, space, stage, splits, tracker, parent.run_id)
        print(f"keras-tuner {cfg.tuner} study {cfg.study!r} in {tuner.project_dir}; MLflow {tracker.shown}", flush=True)
        try:
            tuner.search(verbose=0)
        except RuntimeError as err:  # keras-tuner stops after too many failed trials with a RuntimeError
            # Its last line names the cause (the first is "Number of consecutive failures exceeded ...").
            last = str(err).strip().splitlines()[-1:] or [type(err).__name__]
            raise CAEError(f"keras-tuner stopped: {first_line(last[0])}") from None
        summary: dict[str, Any] = {"study": cfg.study, "trials": len(tuner.oracle.trials)}
        if best_paths(cfg.study)[0].exists():
            summary.update(stage.finish(cfg.study, parent, len(tuner.oracle.trials)))
    return summary

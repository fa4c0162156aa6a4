"""The Optuna objective: sample a point, build, skip what cannot run, train it as a tracked trial.

What a trial trains and scores is a *task*: :class:`ReconstructionTask` (an autoencoder, scored by
its validation MSE and code size) or the colorization task (``cae.colorize.task``), which the same
objective, workers and study machinery run as a second objective.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from cae.config import ExperimentConfig, SearchConfig
from cae.data import Splits
from cae.errors import TrialStopped, failure_reason
from cae.search.best import export_trial, trial_record
from cae.search.study import SkippedTrial, optuna_module
from cae.search.tags import SKIPPED
from cae.space import SearchSpace
from cae.tracking import SIZE_PARAMS, Tracker, trial_run
from cae.train import TrainResult, build_model, train_and_evaluate


@dataclass
class TrialOutcome:
    result: TrainResult
    values: dict[str, float]  # every objective a study of this task may name, by name
    metrics: dict[str, float] = field(default_factory=dict)  # extra final metrics for MLflow
    attrs: dict[str, Any] = field(default_factory=dict)  # extra trial user attrs (and best.json keys)


class Task(Protocol):
    """What a trial of a study trains: the base config, the MLflow tags, and training + scoring."""

    base: ExperimentConfig
    tags: dict[str, str]

    def train(self, config: ExperimentConfig, model: Any, callbacks: list[Any]) -> TrialOutcome: ...


class ReconstructionTask:
    """An autoencoder scored by its best validation MSE (and, for a Pareto study, its code size)."""

    def __init__(self, cfg: SearchConfig, splits: Splits):
        self.base, self.splits = cfg.experiment, splits
        self.tags = {"stage": "reconstruction", "data_source": splits.data_source}

    def train(self, config: ExperimentConfig, model: Any, callbacks: list[Any]) -> TrialOutcome:
        result = train_and_evaluate(config, self.splits, model=model, callbacks=callbacks, evaluate_test=False,
                                    verbose=0)  # fmt: skip
        return TrialOutcome(result, {"best_val_loss": result.best_val_loss, "code_values": float(result.code_values)})


def make_task(cfg: SearchConfig, splits: Splits, study_attrs: dict[str, Any]) -> Task:
    if cfg.stage == "colorization":
        from cae.colorize.task import ColorizationTask  # the second objective, run by the same engine

        return ColorizationTask(cfg, splits, study_attrs)
    return ReconstructionTask(cfg, splits)


def progress_callback(prefix: str, epochs: int) -> Any:
    """One line per epoch while a trial trains (silent under CI, where the log is read afterwards)."""
    import keras

    quiet = os.environ.get("CI", "").lower() == "true"

    class Progress(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if not quiet:
                logs = logs or {}
                print(f"{prefix}epoch {epoch + 1}/{epochs}  train {logs.get('loss', float('nan')):.6g}  "
                      f"val {logs.get('val_loss', float('nan')):.6g}  {time.perf_counter() - self.start:.1f}s",
                      flush=True)  # fmt: skip

    return Progress()


ENGINE = "optuna"  # the `engine` tag of this objective's trials (keras-tuner's are "keras-tuner")


class Objective:
    """Builds, trains and logs one trial; the data (and the task) is loaded once per worker."""

    def __init__(
        self, cfg: SearchConfig, space: SearchSpace, task: Task, splits: Splits, tracker: Tracker, parent_id: str,
        *, prefix: str = "", before_trial: Callable[[], None] | None = None,
        extra_callbacks: Callable[[Any], list[Any]] | None = None,
    ):  # fmt: skip
        self.cfg, self.space, self.task, self.splits = cfg, space, task, splits
        self.tracker, self.parent_id, self.prefix = tracker, parent_id, prefix
        self.before_trial = before_trial  # e.g. release the workers' ask lock: the trial exists now
        self.extra_callbacks = extra_callbacks  # tests inject e.g. a NaN-making callback

    @staticmethod
    def _skip(trial: Any, reason: str) -> None:
        trial.set_user_attr("fail_reason", SKIPPED + reason)
        raise SkippedTrial(reason)

    def __call__(self, trial: Any) -> float | tuple[float, ...]:
        if self.before_trial is not None:
            self.before_trial()
        ahead = [t for t in trial.study.get_trials(deepcopy=False) if t.number < trial.number
                 and t.state.name in ("COMPLETE", "PRUNED", "RUNNING")]  # fmt: skip
        if len(ahead) >= self.cfg.trials:
            self._skip(trial, f"the budget of {self.cfg.trials} trials was taken by other workers first")
        import keras

        from cae.model import code_sizes

        keras.backend.clear_session()  # free the previous trial's graph and layer names
        params = self.space.sample_optuna(trial)
        try:
            config = self.space.apply(self.task.base, params)
            model = build_model(config, self.splits)
        except Exception as err:  # a sampled point the config or the builder refuses: say which
            trial.set_user_attr("fail_reason", failure_reason(err))
            raise
        latent, bottleneck = code_sizes(model)
        info = {"n_params": int(model.count_params()), "latent_values": latent, "bottleneck_values": bottleneck}
        for k, v in {**info, "code_values": min(latent, bottleneck)}.items():
            trial.set_user_attr(k, v)
        limit = self.cfg.max_code_values
        if limit is not None and min(latent, bottleneck) > limit:
            self._skip(trial, f"code of {min(latent, bottleneck)} values exceeds max_code_values={limit}")
        return self._train(trial, params, config, model)

    def _train(self, trial: Any, params: dict[str, Any], config: ExperimentConfig, model: Any) -> Any:
        optuna = optuna_module()
        history = keras_history()  # keeps the curve of a trial stopped by the pruner
        try:
            with trial_run(
                self.tracker, self.cfg.study, trial.number, parent_id=self.parent_id, params=params,
                tags={**self.task.tags, "engine": ENGINE}, stopped=(optuna.TrialPruned, TrialStopped),
                splits=self.splits,
            ) as run:  # fmt: skip
                trial.set_user_attr("mlflow_run_id", run.run_id)
                progress = progress_callback(f"{self.prefix}trial {trial.number:3d} ", config.train.epochs)
                callbacks = [history, run.epoch_callback(), progress]
                if len(self.cfg.objectives) == 1:
                    from optuna_integration import KerasPruningCallback

                    callbacks.append(KerasPruningCallback(trial, "val_loss"))
                callbacks += self.extra_callbacks(trial) if self.extra_callbacks else []
                try:
                    outcome = self.task.train(config, model, callbacks)
                except (optuna.TrialPruned, TrialStopped):
                    seen = history.history.get("val_loss", [])
                    if seen:  # the best of the epochs it had, for comparisons in MLflow
                        run.log_metrics({"best_val_loss": min(seen)}, step=len(seen))
                    # Its size too, as a finished trial logs it (`make compare` tables pruned trials).
                    run.log_params({k: trial.user_attrs[k] for k in SIZE_PARAMS if k in trial.user_attrs})
                    raise
                run.log_result(outcome.result)
                run.log_metrics(outcome.metrics, step=outcome.result.epochs_run)
                self._record(trial, outcome, config, params, run)
        except TrialStopped as stop:  # the task's own early stop: finished, like a pruned trial
            trial.set_user_attr("stop_reason", str(stop))
            raise optuna.TrialPruned(str(stop)) from None
        except optuna.TrialPruned:
            raise
        except BaseException as err:
            trial.set_user_attr("fail_reason", failure_reason(err))
            raise
        values = tuple(outcome.values[o] for o in self.cfg.objectives)
        return values[0] if len(values) == 1 else values

    def _record(self, trial: Any, outcome: TrialOutcome, config: ExperimentConfig, params: dict[str, Any],
                run: Any) -> None:  # fmt: skip
        trial.set_user_attr("best_epoch", outcome.result.best_epoch)
        trial.set_user_attr("seconds", round(outcome.result.seconds, 2))
        for k, v in {**outcome.attrs, **outcome.metrics}.items():
            trial.set_user_attr(k, v)
        first = self.cfg.objectives[0]
        record = trial_record(
            self.cfg.study, trial.number, outcome.result, config, params, run_id=run.run_id, engine=ENGINE,
            data_source=self.splits.data_source, uid=trial.study.user_attrs.get("uid"),
            objective=(first, outcome.values[first], self.cfg.directions[0]),
        )  # fmt: skip
        record.update(outcome.attrs)
        # A front is scored (and a colorization front retrained) from every trial's own model.
        keep_all = len(self.cfg.objectives) > 1 or self.cfg.stage == "colorization"
        export_trial(record, outcome.result.model, keep_all=keep_all, run=run)


def keras_history() -> Any:
    import keras

    return keras.callbacks.History()

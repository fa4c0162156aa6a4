"""The Optuna objective: sample a point, build it, skip what the study does not compare, train it as a tracked trial.

What a trial trains is the study's :class:`~cae.search.task.Task`; the lifecycle around the
training (run, record, export) is :mod:`cae.search.trial`, shared with keras-tuner.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
from optuna_integration import KerasPruningCallback

from cae.data import Splits
from cae.errors import TrialStopped, failure_reason
from cae.model import code_sizes
from cae.search import attrs
from cae.search.retry import PointCheckpoint, first_attempt, queued_again_after
from cae.search.rungs import RungPruning, rung_epochs
from cae.search.study import SKIPPED, SkippedTrial, optuna_module
from cae.search.task import Task
from cae.search.trial import TrialSpec, over_budget, tracked_trial
from cae.search_config import SearchConfig
from cae.space import SearchSpace
from cae.tracking import Tracker
from cae.train import build_model

ENGINE = "optuna"  # the `engine` tag of this objective's trials (keras-tuner's are "keras-tuner")


class Objective:
    """Builds, trains and logs one trial; the data (and the task) is loaded once per worker."""

    def __init__(
        self,
        cfg: SearchConfig,
        space: SearchSpace,
        task: Task,
        splits: Splits,
        tracker: Tracker,
        parent_id: str,
        *,
        prefix: str = "",
        before_trial: Callable[[], None] | None = None,
        extra_callbacks: Callable[[Any], list[Any]] | None = None,
    ):
        self.cfg, self.space, self.task, self.splits = cfg, space, task, splits
        self.tracker, self.parent_id, self.prefix = tracker, parent_id, prefix
        self.before_trial = before_trial  # e.g. release the workers' lock: the trial exists now
        self.extra_callbacks = extra_callbacks  # tests inject e.g. a NaN-making callback
        self.current: int | None = None  # the number of the trial this worker runs (or ran last)

    @staticmethod
    def _skip(trial: Any, reason: str) -> None:
        trial.set_user_attr(attrs.FAIL_REASON, SKIPPED + reason)
        raise SkippedTrial(reason)

    def __call__(self, trial: Any) -> float | tuple[float, ...]:
        self.current = trial.number
        if self.before_trial is not None:
            self.before_trial()
        trials = trial.study.get_trials(deepcopy=False)
        ahead = [t for t in trials if t.number < trial.number and t.state.name in ("COMPLETE", "PRUNED", "RUNNING")]
        if len(ahead) >= self.cfg.trials:
            self._skip(trial, f"the budget of {self.cfg.trials} trials was taken by other workers first")
        keras.backend.clear_session()  # free the previous trial's graph and layer names
        params = self.space.sample_optuna(trial)
        try:
            config = self.space.apply(self.task.base, params)
            model = build_model(config, self.splits)
        except BaseException as err:  # a point the config or the builder refuses (or Ctrl-C while building)
            trial.set_user_attr(attrs.FAIL_REASON, failure_reason(err))
            raise
        latent, bottleneck = code_sizes(model)
        size = {
            "n_params": int(model.count_params()),
            "latent_values": latent,
            "bottleneck_values": bottleneck,
            "code_values": min(latent, bottleneck),
        }
        for key, value in size.items():
            trial.set_user_attr(key, value)
        reason = over_budget(self.cfg, size["code_values"])
        if reason:
            self._skip(trial, reason)
        frozen = next(t for t in trials if t.number == trial.number)
        enqueued = attrs.enqueued(frozen) is not None
        spec = TrialSpec(
            self.cfg,
            trial.number,
            ENGINE,
            self.parent_id,
            params,
            config,
            uid=trial.study.user_attrs.get(attrs.UID),
            prefix=self.prefix,
            size=size,
            set_attr=trial.set_user_attr,
            keep_model=enqueued,  # the expert's points' own models are what the report holds the search against
            enqueued=enqueued,
        )
        point = PointCheckpoint(self.cfg.study, first_attempt(frozen), spec.uid, config)
        try:
            result = self._train(trial, spec, model, point)
        except BaseException as err:
            if not queued_again_after(err):  # its retry goes on from the last epoch; nothing else does
                point.discard()
            raise
        point.discard()
        return result

    def _train(self, trial: Any, spec: TrialSpec, model: Any, point: PointCheckpoint) -> float | tuple[float, ...]:
        optuna = optuna_module()
        workdir = point.open()
        done = point.done()
        try:
            with tracked_trial(self.task, self.tracker, self.splits, spec, pruned=(optuna.TrialPruned,)) as tracked:
                if done["val_loss"]:
                    self._carry_over(trial, tracked, done, point.number)
                callbacks = [point.callback(), *tracked.callbacks, *self._pruning(trial, spec)]
                callbacks += self.extra_callbacks(trial) if self.extra_callbacks else []
                outcome = self.task.train(spec.config, model, callbacks, workdir=workdir)
                tracked.complete(outcome)
        except TrialStopped as stop:  # the task's own early stop: finished, like a pruned trial
            raise optuna.TrialPruned(str(stop)) from None
        values = tuple(outcome.values[o] for o in self.cfg.objectives)
        return values[0] if len(values) == 1 else values

    def _carry_over(self, trial: Any, tracked: Any, done: dict[str, list[float]], first: int) -> None:
        """A retry goes on where its point's stopped attempt was: its MLflow curve starts with the epochs
        that attempt trained (Optuna's retry already carries them as the trial's reported values)."""
        epochs = len(done["val_loss"])
        print(
            f"{self.prefix}trial {trial.number:3d} goes on from epoch {epochs} of trial {first}'s point "
            "(stopped before; runs/<study>/resume/)",
            flush=True,
        )
        tracked.carried = list(done["val_loss"])
        for epoch, (train_loss, val_loss) in enumerate(zip(done["train_loss"], done["val_loss"], strict=True)):
            tracked.run.log_metrics({"train_loss": train_loss, "val_loss": val_loss}, step=epoch + 1, queued=True)

    def _pruning(self, trial: Any, spec: TrialSpec) -> list[Any]:
        """Optuna's pruner for one objective; for several, successive halving on the task's rung value."""
        pruner, epochs = self.cfg.pruner, spec.config.train.epochs
        if len(self.cfg.objectives) == 1:
            return [NotAtTheLastEpoch(trial, "val_loss", epochs)]
        if pruner.name in ("hyperband", "successive_halving"):
            low = 1 if pruner.name == "hyperband" else max(1, pruner.n_warmup_steps)
            return [RungPruning(trial, self.task, spec.size["code_values"], rung_epochs(low, epochs))]
        return []


class NotAtTheLastEpoch(KerasPruningCallback):
    """Optuna's Keras pruning callback, which reports the last epoch but does not prune at it: that saves
    no training and would throw a finished model away. Optuna's successive halving judges a trial
    past a rung again at every later step, so without this a trial can be stopped at its last epoch
    (the replay, ``cae.bench.replay``, does the same)."""

    def __init__(self, trial: Any, monitor: str, epochs: int):
        super().__init__(trial, monitor)
        self.trial, self.monitor, self.last = trial, monitor, epochs - 1

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        if epoch < self.last:
            super().on_epoch_end(epoch, logs)
        elif (logs or {}).get(self.monitor) is not None:
            self.trial.report(float(logs[self.monitor]), step=epoch)

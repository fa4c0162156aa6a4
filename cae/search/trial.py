"""One trial's lifecycle, for both engines: a tracked MLflow run, the task's training, the record, the export.

The engine decides what a trial trains (Optuna samples a point, keras-tuner hands over ``hp``) and
how a stopped trial is reported back to it; everything in between is written here once:
tags and params of the child run, one progress line per epoch, the curve of a pruned trial, the
user attrs, the trial's record and its export to ``runs/<study>/best.*``, and the trial's line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import keras

from cae.callbacks import progress_callback
from cae.config import ExperimentConfig
from cae.data import Splits
from cae.errors import TrialStopped, failure_reason
from cae.search import attrs
from cae.search.best import export_trial, trial_record
from cae.search.storage import shared_across_hosts
from cae.search.task import Task, TrialOutcome
from cae.search_config import SearchConfig
from cae.tracking import SIZE_PARAMS, Run, Tracker, trial_run


@dataclass
class TrialSpec:
    """What the engine knows of a trial before it trains."""

    cfg: SearchConfig
    number: int
    engine: str  # the `engine` tag: "optuna" or "keras-tuner"
    parent_id: str
    params: dict[str, Any]  # the sampled keys, as the space names them
    config: ExperimentConfig  # the base config with the params applied
    uid: str | None = None  # the study's uid (tells it from an older study of the same name)
    prefix: str = ""  # "[w1] " in front of a worker's lines
    tags: dict[str, Any] = field(default_factory=dict)  # engine-specific extra tags
    size: dict[str, int] = field(default_factory=dict)  # n_params, latent/bottleneck values, if built already
    keep_model: bool = False  # keep this trial's model in runs/<study>/models/ whatever the task says
    enqueued: bool = False  # a point handed to the study (best.json says whether the best was one)
    set_attr: Callable[[str, Any], None] = lambda key, value: None  # the engine's trial attributes


class TrialRun:
    """The open child run of a trial: its callbacks, and what a finished training records."""

    def __init__(self, spec: TrialSpec, task: Task, run: Run):
        self.spec, self.task, self.run = spec, task, run
        self.history = keras.callbacks.History()  # keeps the curve of a trial the pruner stops
        self.carried: list[float] = []  # val_loss of the epochs a resumed point trained before (resume.py)
        prefix = f"{spec.prefix}trial {spec.number:3d} "
        note = task.epoch_note(spec.size["code_values"]) if spec.size and hasattr(task, "epoch_note") else None
        self.callbacks = [self.history, run.epoch_callback(), progress_callback(prefix, spec.config.train.epochs, note)]

    def log_partial(self) -> None:
        """A stopped trial: the best of the epochs it had and its size, as a finished one logs them."""
        seen = [*self.carried, *self.history.history.get("val_loss", [])]
        if seen:
            self.run.log_metrics({"best_val_loss": min(seen)}, step=len(seen))
        self.run.log_params({k: v for k, v in self.spec.size.items() if k in SIZE_PARAMS})

    def complete(self, outcome: TrialOutcome) -> None:
        """Log the finished training, set the trial's attrs, export it if it is the study's best."""
        spec, result = self.spec, outcome.result
        self.run.log_result(result)
        self.run.log_metrics(outcome.metrics, step=result.epochs_run)
        attrs = {
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "seconds": round(result.seconds, 2),
            "seconds_per_epoch": round(result.seconds_per_epoch, 2),
            **outcome.attrs,
            **outcome.metrics,
        }
        for key, value in attrs.items():
            spec.set_attr(key, value)
        first = spec.cfg.objectives[0]
        record = trial_record(
            spec.cfg.study,
            spec.number,
            result,
            spec.config,
            spec.params,
            run_id=self.run.run_id,
            engine=spec.engine,
            data_source=self.task.tags.get("data_source", ""),
            uid=spec.uid,
            enqueued=spec.enqueued,
            objective=(first, outcome.values[first], spec.cfg.directions[0]),
        )
        record.update(outcome.attrs)
        keep_all = self.task.keep_every_model or spec.keep_model or len(spec.cfg.objectives) > 1
        # A study other hosts may share logs a new best to MLflow: the host that finishes it fetches it there.
        export_trial(record, result.model, keep_all=keep_all, run=self.run if shared_across_hosts(spec.cfg) else None)


@contextmanager
def tracked_trial(
    task: Task, tracker: Tracker, splits: Splits, spec: TrialSpec, *, pruned: tuple[type[BaseException], ...] = ()
) -> Iterator[TrialRun]:
    """The trial's child run (COMPLETE / PRUNED / FAIL with its reason); the exception propagates.

    ``pruned``: the engine's pruning exception(s); a :class:`TrialStopped` (the task's own early
    stop) ends the run PRUNED too, with ``stop_reason`` set; any other exception sets ``fail_reason``.
    """
    stopped = (*pruned, TrialStopped)
    try:
        with trial_run(
            tracker,
            spec.cfg.study,
            spec.number,
            parent_id=spec.parent_id,
            params=spec.params,
            tags={**task.tags, "engine": spec.engine, **spec.tags},
            stopped=stopped,
            splits=splits,
        ) as run:
            spec.set_attr(attrs.RUN_ID, run.run_id)
            trial = TrialRun(spec, task, run)
            try:
                yield trial
            except stopped:
                trial.log_partial()
                raise
    except TrialStopped as stop:
        spec.set_attr(attrs.STOP_REASON, str(stop))
        raise
    except BaseException as err:
        if not isinstance(err, pruned):
            spec.set_attr(attrs.FAIL_REASON, failure_reason(err))
        elif str(err) and not str(err).startswith("Trial was pruned at epoch"):  # which rung stopped it, and why
            # (Optuna's own message counts epochs from 0; the trial's line already says where it stopped.)
            spec.set_attr(attrs.STOP_REASON, str(err))
        raise


def over_budget(cfg: SearchConfig, code_values: int) -> str | None:
    """Why a point whose code has ``code_values`` values is skipped before training (None: the study compares it)."""
    if cfg.code_values is not None and code_values != cfg.code_values:
        return f"code of {code_values} values; the study compares codes of code_values={cfg.code_values}"
    limit = cfg.max_code_values
    if limit is not None and code_values > limit:
        return f"code of {code_values} values exceeds max_code_values={limit}"
    return None


def trial_line(
    prefix: str,
    number: int,
    state: str,
    value: str,
    seconds: float,
    size: Mapping[str, Any],
    params: Mapping[str, Any],
    reason: str = "",
) -> str:
    """The one line each engine prints when a trial ends: state, value, time, size, params, reason."""
    shown = " ".join(
        f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}" for k, v in params.items()
    )
    return (
        f"{prefix}trial {number:3d} {state:8s} val={value}  {seconds:6.1f}s  "
        f"params={size.get('n_params', '?')} code={size.get('code_values', '?')}  {shown}"
        + (f"  ({reason})" if reason else "")
    )

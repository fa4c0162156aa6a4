"""`cae search`: run or resume an Optuna study, every trial a child run of the study's parent run.

Resumable by construction: ``trials`` is the study's total of finished trials, a killed worker's
trial is failed by the heartbeat and retried, a trial stopped by a signal is queued again
(:func:`cae.search.retry.requeue_interrupted`), and MLflow runs a killed worker left RUNNING are closed here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any

from cae.data import splits_for
from cae.errors import CAEError, Interrupted, stop_requested
from cae.hardware import configure_threads
from cae.paths import ensure_dir, runs_dir, study_dir
from cae.schema import flatten, with_overrides
from cae.search import attrs
from cae.search.best import fetch_best
from cae.search.estimate import first_estimate
from cae.search.figures import save_optuna_plots
from cae.search.objective import ENGINE
from cae.search.record import check_resume, study_record
from cae.search.stale import fail_stale_trials
from cae.search.storage import open_storage, shared_across_hosts, storage_url
from cae.search.study import FINISHED, count, create_or_load_study, state_counts
from cae.search.task import ReconstructionTask, Task, TaskFactory
from cae.search.workers import run_worker, spawn_workers
from cae.search_config import SearchConfig
from cae.space import SearchSpace, load_space
from cae.tracking import Run, Tracker
from cae.urls import shown


def first_points(cfg: SearchConfig, space: SearchSpace, extra: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """What a new study runs first: ``cfg.enqueue`` (the expert's points, a prior), then ``extra``.

    Baselines are not trials: the reference CAE is a run of its own (:mod:`cae.baseline_runs`), never
    seen by the sampler.
    """
    points = []
    for i, change in enumerate(cfg.enqueue):
        config = with_overrides(cfg.experiment, change, where=f"enqueue[{i}] of the study config")
        outside = space.outside(config)
        if outside:
            raise CAEError(f"enqueue[{i}] of the study config is outside {space.path}: {', '.join(outside)}")
        label = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in change.items())
        points.append({"params": space.point(config), "attrs": {"enqueued": label}})
    return [*points, *extra]


def prepare(
    cfg: SearchConfig,
    tracker: Tracker,
    task: TaskFactory,
    *,
    extra_points: Sequence[dict[str, Any]] = (),
    study_attrs: dict[str, Any] | None = None,
) -> tuple[Any, Task, Run]:
    """Everything that must exist before a worker starts: checks, schema, study, parent run.

    Every check of the user's input (space, data, runs/ folder, storage) comes before anything is
    created: a bad input must not leave an empty study, study folder or MLflow run behind.
    """
    space = load_space(cfg.space, cfg.experiment)
    splits = splits_for(cfg.experiment)
    ensure_dir(runs_dir())
    storage = open_storage(cfg)
    ensure_dir(study_dir(cfg.study))
    study = create_or_load_study(cfg, space, storage, first_points(cfg, space, extra_points), study_attrs)
    check_resume(study, study_record(cfg, splits), cfg.extend)
    stage = task(cfg, splits, study.user_attrs)
    parent = tracker.study_parent(cfg.study, {**stage.tags, "engine": ENGINE}, uid=study.user_attrs.get(attrs.UID))
    with ExitStack() as guard:
        guard.push(parent)  # a failure from here on ends the parent run FAILED, not RUNNING
        if not study.user_attrs.get(attrs.PARENT_RUN):
            study.set_user_attr(attrs.PARENT_RUN, parent.run_id)
            parent.log_params({k: v for k, v in flatten(cfg).items() if not k.startswith("experiment.model.")})
        parent.set_tags({"trials_requested": cfg.trials, "storage": shown(storage_url(cfg))})
        guard.pop_all()
    return study, stage, parent


def reconcile(study: Any, cfg: SearchConfig, tracker: Tracker, parent: Run) -> None:
    """Close MLflow runs that a killed worker left RUNNING (their trials are FAIL by now)."""
    study_name = cfg.study
    runs = tracker.child_runs(parent.run_id, study_name)  # before the states: see close_orphans
    fail_stale_trials(study, open_storage(cfg))
    running = {t.number for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING"}
    closed = tracker.close_orphans(parent.run_id, study_name, running, runs)
    if closed:
        print(f"closed {closed} MLflow run(s) left RUNNING by a killed worker")


def run_search(
    cfg: SearchConfig,
    task: TaskFactory = ReconstructionTask,
    *,
    tracker: Tracker | None = None,
    extra_callbacks: Callable[[Any], list[Any]] | None = None,
    extra_points: Sequence[dict[str, Any]] = (),
    study_attrs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run (or resume) the study of ``task``'s trials to ``cfg.trials`` finished ones; returns the summary.

    ``task`` makes the study's :class:`~cae.search.task.Task` (:mod:`cae.stages` maps a stage's
    name to it). ``tracker`` (default: ``MLFLOW_TRACKING_URI`` or the local store) receives the
    parent run and, through every worker, the trials' child runs.
    """
    tracker = (tracker or Tracker()).check()
    study, stage, parent = prepare(cfg, tracker, task, extra_points=extra_points, study_attrs=study_attrs)
    print(
        f"study {cfg.study!r}: {count(study, FINISHED)} finished trial(s) of {cfg.trials}; "
        f"storage {shown(storage_url(cfg))}; MLflow {tracker.shown}",
        flush=True,
    )
    with parent:  # FINISHED, or FAILED / KILLED with the reason: never left RUNNING
        reconcile(study, cfg, tracker, parent)
        left = cfg.trials - count(study, FINISHED)
        try:
            if left > 0:
                print(first_estimate(cfg, _first_config(cfg), splits_for(cfg.experiment), left), flush=True)
            if cfg.workers > 1:
                spawn_workers(cfg, parent.run_id, tracker)
            else:
                configure_threads()
                run_worker(cfg, parent.run_id, tracker, task, extra_callbacks=extra_callbacks)
        except KeyboardInterrupt:
            reconcile(study, cfg, tracker, parent)
            raise Interrupted(
                f"interrupted ({stop_requested() or 'Ctrl-C'}): {count(study, FINISHED)} of {cfg.trials} trials "
                "finished; run the same command again to resume"
            ) from None
        reconcile(study, cfg, tracker, parent)
        return finalize_study(cfg, study, stage, parent)


def finalize_study(cfg: SearchConfig, study: Any, task: Task, parent: Run) -> dict[str, Any]:
    """Optuna's plots and the trial states, the exported best, then what the task does at the end."""
    states = state_counts(study)
    print(f"\nstudy {cfg.study!r}: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())))
    for p in save_optuna_plots(study, study_dir(cfg.study) / "plots", list(cfg.objectives)):
        parent.log_artifact(p, "optuna")
    summary: dict[str, Any] = {"study": cfg.study, "states": dict(states)}
    if not states["COMPLETE"]:
        print("no completed trial yet: nothing to export")
        return summary
    if len(study.directions) == 1 and shared_across_hosts(cfg):  # the best may have run on another host
        best = study.best_trial
        fetch_best(
            cfg.study,
            best.number,
            attrs.run_id(best) or "?",
            study.user_attrs.get(attrs.UID),
            parent.tracker,
        )
    summary.update(task.finish(cfg.study, parent, states["COMPLETE"] + states["PRUNED"]))
    return summary


def _first_config(cfg: SearchConfig) -> Any:
    """A typical trial's experiment config: the study's first enqueued point, else the middle of its space."""
    if cfg.enqueue:
        return with_overrides(cfg.experiment, cfg.enqueue[0])
    space = load_space(cfg.space, cfg.experiment)
    middle: dict[str, Any] = {}
    for p in space.params:
        if p.active(middle):
            middle[p.name] = p.choices[len(p.choices) // 2] if p.kind == "categorical" else _middle(p)
    return space.apply(cfg.experiment, middle)


def _middle(p: Any) -> Any:
    low, high = float(p.low), float(p.high)
    value = (low * high) ** 0.5 if p.log else (low + high) / 2
    return round(value) if p.kind == "int" else value

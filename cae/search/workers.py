"""Workers: processes that take trials from a study until it holds its budget of finished ones.

``workers`` > 1 runs that many OS processes on one storage (each with its share of the CPU
threads); other hosts join with ``cae search --join`` (``make worker``). Every worker writes to
the tracking store it is given: the coordinator passes its own down, never the environment's. The
budget (``trials`` finished trials in all) is kept by Optuna's ``MaxTrialsCallback``, and by the
objective, which skips (uncounted) a trial numbered past the budget when workers raced for the last one.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from typing import Any

import yaml

from cae.config_files import yaml_load
from cae.data import splits_for
from cae.errors import NO_SPACE, CAEError, Interrupted, disk_full_message, stop_requested
from cae.hardware import configure_threads, gpu_ids, worker_gpu_env
from cae.schema import from_dict, to_dict
from cae.search import attrs
from cae.search.estimate import duration_estimate, epoch_share
from cae.search.objective import Objective
from cae.search.record import check_resume, study_record
from cae.search.retry import requeue_if_unanswered, requeue_interrupted
from cae.search.stale import fail_stale_trials
from cae.search.storage import open_storage, storage_errors, storage_url
from cae.search.study import FINISHED, SKIPPED, count, load_existing_study, optuna_module, state_name
from cae.search.task import TaskFactory
from cae.search.trial import trial_line
from cae.search_config import SearchConfig
from cae.space import load_space
from cae.tracking import Tracker
from cae.urls import journal_path, sqlite_file

MAX_CONSECUTIVE_FAILURES = 3  # a worker stops when this many trials fail in a row: a config problem
MAX_SKIPPED_IN_A_ROW = 50  # a space (almost) entirely outside the study's code size is a config error
WORKER_CONFIG = "CAE_WORKER_CONFIG"  # a spawned worker's study config (YAML), in its environment: no file to leak


def report_trial(prefix: str, cfg: SearchConfig, margin: Any = None) -> Callable[[Any, Any], None]:
    """An Optuna callback printing one line per finished trial: state, value (and ``margin(trial)``, its
    dB over PCA), time, size, params; then, while trials are left, the study's remaining time."""
    epochs, share = cfg.experiment.train.epochs, epoch_share(cfg)

    def report(study: Any, trial: Any) -> None:
        a, state = trial.user_attrs, state_name(trial)
        value = "-" if trial.values is None else ", ".join(f"{v:.6g}" for v in trial.values)
        if state == "PRUNED" and trial.intermediate_values:
            value = f"{min(trial.intermediate_values.values()):.6g} at epoch {max(trial.intermediate_values) + 1}"
        extra = margin(trial) if margin is not None else None
        if extra is not None:
            value += f" ({extra:+.2f} dB vs PCA)"
        secs = (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_complete else 0
        # A retry carries its failed attempt's attributes: only a reason of this attempt's own state is shown.
        reason = attrs.fail_reason(trial) or attrs.stop_reason(trial)
        print(trial_line(prefix, trial.number, state, value, secs, a, trial.params, reason), flush=True)
        done = [t for t in study.get_trials(deepcopy=False) if t.state.name in FINISHED and t.datetime_complete]
        spent = [
            ((t.datetime_complete - t.datetime_start).total_seconds(), len(t.intermediate_values))
            for t in done
            if t.datetime_start
        ]
        estimate = duration_estimate(spent, cfg.trials - len(done), cfg.workers, epochs, share)
        if estimate:
            print(f"{prefix}{estimate}", flush=True)

    return report


def run_worker(
    cfg: SearchConfig,
    parent_id: str,
    tracker: Tracker,
    task: TaskFactory,
    *,
    index: int = 0,
    extra_callbacks: Callable[[Any], list[Any]] | None = None,
) -> None:
    """Run ``task``'s trials until the study holds ``cfg.trials`` finished ones (or the timeout passes)."""
    optuna = optuna_module()
    space = load_space(cfg.space, cfg.experiment)
    storage = open_storage(cfg)
    study = load_existing_study(cfg, storage, seed_offset=index, conditional=space.conditional)
    splits = splits_for(cfg.experiment)
    check_resume(study, study_record(cfg, splits), cfg.extend)  # a worker on another host, on other data
    prefix = f"[w{index}] " if cfg.workers > 1 else ""
    stage = task(cfg, splits, study.user_attrs)
    objective = Objective(cfg, space, stage, splits, tracker, parent_id, prefix=prefix, extra_callbacks=extra_callbacks)
    outcomes: list[Any] = []  # this worker's own trials, in order
    callbacks = [
        optuna.study.MaxTrialsCallback(
            cfg.trials, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        ),
        report_trial(prefix, cfg, getattr(stage, "margin_of", None)),
        lambda study, trial: outcomes.append(trial),
    ]
    deadline = time.monotonic() + cfg.timeout if cfg.timeout else math.inf
    guard = _Guard()
    while time.monotonic() < deadline:
        fail_stale_trials(study, storage)  # a dead worker's trial: FAIL, then queued again
        finished, running = count(study, FINISHED), count(study, ("RUNNING",))
        if finished >= cfg.trials:
            break
        if finished + running >= cfg.trials:
            # The rest runs elsewhere; wait in case one fails (or its worker died and the heartbeat
            # queues it again), so the study ends with exactly `trials` finished.
            guard.say_waiting(running, journal_path(storage_url(cfg)) is not None)
            time.sleep(min(5, cfg.heartbeat_interval))
            continue
        remaining = None if deadline == math.inf else max(1.0, deadline - time.monotonic())
        try:
            with storage_errors(sqlite_file(storage_url(cfg))):  # the storage's error, not Optuna's follow-ups
                # No gc_after_trial: the next trial's clear_session collects anyway.
                study.optimize(objective, n_trials=1, timeout=remaining, callbacks=callbacks, catch=(Exception,))
        except ValueError:
            if not _failed_by_another(study, objective.current):
                raise
            # This worker was paused past grace_period (SIGSTOP, a suspended machine): another worker
            # failed its trial as stale and queued the retry, so this result cannot be told. Go on.
            print(
                f"{prefix}note: this worker's trial was failed as stale by another worker while it was paused "
                f"(past grace_period: {cfg.grace_period} s); its retry runs in its place",
                flush=True,
            )
            continue
        except KeyboardInterrupt:  # a signal: Optuna has failed the trial; queue its point again
            requeue_interrupted(study, objective.current, space, cfg.trials, prefix)
            raise
        last = outcomes[-1] if outcomes else None
        requeue_if_unanswered(study, last)
        guard.check(last)


def _failed_by_another(study: Any, number: int | None) -> bool:
    """Whether Optuna refused to tell trial ``number`` (this worker's) because it is FAIL already: another
    worker judged it stale (Optuna raises a ValueError for that; a tell of our own would have gone through)."""
    trial = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
    return trial is not None and trial.state.name == "FAIL"


class _Guard:
    """Stops a worker whose trials keep failing or being skipped: that is a configuration problem."""

    def __init__(self) -> None:
        self.failures = self.skipped = 0
        self.waiting_said = False

    def check(self, last: Any) -> None:
        failed = last is not None and last.state.name == "FAIL"
        reason = attrs.fail_reason(last) if failed else ""
        if reason.startswith(NO_SPACE):  # every further trial would fail the same way
            raise CAEError(disk_full_message(reason))
        self.skipped = self.skipped + 1 if reason.startswith(SKIPPED) else 0
        if self.skipped >= MAX_SKIPPED_IN_A_ROW:
            raise CAEError(
                f"{self.skipped} sampled trials in a row were skipped ({reason}); widen the space or its limit"
            )
        if failed and not self.skipped:
            self.failures += 1
            if self.failures >= MAX_CONSECUTIVE_FAILURES:
                raise CAEError(
                    f"{self.failures} trials failed in a row (last: {reason or 'see log'}); stopping this worker"
                )
        else:
            self.failures = 0

    def say_waiting(self, running: int, journal: bool) -> None:
        if not self.waiting_said:
            self.waiting_said = True
            hint = (
                "; with a journal storage a killed worker's trial stays RUNNING: fail it with "
                "optuna.load_study(...).tell(<number>, state=optuna.trial.TrialState.FAIL)"
            )
            print(
                f"waiting for {running} trial(s) running in other workers to finish{hint if journal else ''}",
                flush=True,
            )


def spawn_workers(cfg: SearchConfig, parent_id: str, tracker: Tracker) -> None:
    """``cfg.workers`` OS processes, each with its share of the CPU threads, on ``tracker``'s store.

    The study config and the tracking URI travel in the environment (a database URL may hold a
    password: argv is visible to every user in a process list, and a file would outlive a kill).
    """
    threads = max(1, (os.cpu_count() or 1) // cfg.workers)
    env = {
        **os.environ,
        "CAE_THREADS": str(threads),
        "MLFLOW_TRACKING_URI": tracker.uri,
        WORKER_CONFIG: yaml.safe_dump(to_dict(cfg)),
    }
    gpus = gpu_ids()  # one visible GPU per worker, round-robin; none on a CPU host
    argv = [sys.executable, "-m", "cae", "search-worker", "--parent-run-id", parent_id]
    procs = [
        subprocess.Popen([*argv, "--index", str(i)], env={**env, **worker_gpu_env(i, gpus)}) for i in range(cfg.workers)
    ]
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:  # a signal: let the workers end their trials cleanly
        for p in procs:
            # SIGTERM, not SIGINT: processes started in the background ignore SIGINT; the CLI
            # handles SIGTERM like Ctrl-C (and a second Ctrl-C reaching them changes nothing).
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=120)
            except subprocess.TimeoutExpired:  # stuck in a trial: its heartbeat lets a rerun retry it
                p.kill()
        raise
    bad = [c for c in codes if c != 0]
    if bad:
        raise CAEError(f"{len(bad)} of {cfg.workers} workers exited with an error (codes {bad}); see the log above")


def join(cfg: SearchConfig, task: TaskFactory, index: int = 0, tracker: Tracker | None = None) -> None:
    """A worker on another host joining an existing study (``make worker``)."""
    tracker = (tracker or Tracker()).check()
    study = load_existing_study(cfg)
    parent_id = study.user_attrs.get(attrs.PARENT_RUN)
    if not parent_id:
        raise CAEError(f"study {cfg.study!r} has no MLflow parent run; start it with `make search` first")
    configure_threads()
    # Not the study's own `seed + 0`: every joining host would then sample the same parameters as
    # the first worker and as each other.
    offset = index or 1 + zlib.crc32(f"{socket.gethostname()}/{os.getpid()}".encode()) % 1_000_000
    try:
        run_worker(cfg, parent_id, tracker, task, index=offset)
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted ({stop_requested() or 'Ctrl-C'}): the running trial is queued again; run the same "
            "command again to rejoin the study"
        ) from None


def worker_main(task_for: Callable[[str], TaskFactory], index: int, parent_id: str) -> None:
    """Entry point of a spawned worker process (``cae search-worker``): its coordinator put the study
    config and ``MLFLOW_TRACKING_URI`` in its environment."""
    text = os.environ.get(WORKER_CONFIG)
    if not text:
        raise CAEError(f"search-worker is started by `cae search --workers N` ({WORKER_CONFIG} is not set)")
    cfg = from_dict(SearchConfig, yaml_load(text), WORKER_CONFIG)
    configure_threads()
    run_worker(cfg, parent_id, Tracker(), task_for(cfg.stage), index=index)

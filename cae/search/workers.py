"""Workers: processes that take trials from a study until it holds its budget of finished ones.

``workers`` > 1 runs that many OS processes on one storage (each with its share of the CPU
threads); other hosts join with ``cae search --join`` (``make worker``). Every worker writes to
the tracking store it is given: the coordinator passes its own down, never the environment's.
"""

from __future__ import annotations

import fcntl
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from cae.data import splits_for
from cae.errors import NO_SPACE, CAEError, disk_full_message
from cae.hardware import configure_threads, gpu_ids, worker_gpu_env
from cae.paths import ensure_dir, study_dir
from cae.schema import from_dict, to_dict
from cae.search.objective import Objective
from cae.search.outage import storage_errors
from cae.search.record import check_resume, study_record
from cae.search.retry import requeue_if_unanswered, requeue_interrupted
from cae.search.study import (
    FINISHED,
    SKIPPED,
    count,
    fail_stale_trials,
    load_existing_study,
    state_name,
    storage_url,
)
from cae.search.task import TaskFactory
from cae.search.trial import trial_line
from cae.search_config import SearchConfig
from cae.space import load_space
from cae.tracking import Tracker
from cae.urls import journal_path

MAX_CONSECUTIVE_FAILURES = 3  # a worker stops when this many trials fail in a row: a config problem
MAX_SKIPPED_IN_A_ROW = 50  # a space (almost) entirely outside max_code_values is a config error


class AskLock:
    """A host-wide lock held from the budget check until the new trial is running.

    Without it two workers can both see "one trial left" and both start one. Across hosts
    (PostgreSQL) the objective's own surplus check is the fallback.
    """

    def __init__(self, path: Path):
        self.path = path
        self.fh: Any = None

    def acquire(self) -> None:
        self.fh = self.path.open("a")
        fcntl.flock(self.fh, fcntl.LOCK_EX)

    def release(self) -> None:
        if self.fh is not None:
            fcntl.flock(self.fh, fcntl.LOCK_UN)
            self.fh.close()
            self.fh = None


def duration_estimate(seconds: list[float], left: int, workers: int) -> str | None:
    """What is left of the study at the pace of its finished trials, e.g. ``~1.2 h for 20 trials``.

    The mean, not the median: what is left is a sum of trial times, and under Hyperband most trials
    are pruned within minutes while the few that complete take an hour; the median of such a study
    is a pruned trial's time and would promise a fraction of the real wait.
    """
    if left <= 0 or not seconds:
        return None
    per_trial = statistics.fmean(seconds)
    total = per_trial * left / max(1, workers)
    shown = f"{total / 3600:.1f} h" if total >= 3600 else f"{total / 60:.0f} min"
    return (
        f"estimate: ~{shown} for the {left} trial(s) left at {per_trial:.0f} s per trial (mean of "
        f"{len(seconds)} finished, pruned ones included)"
    )


def report_trial(prefix: str, trials: int = 0, workers: int = 1) -> Callable[[Any, Any], None]:
    """An Optuna callback printing one line per finished trial: state, value, time, size, params;
    then, while trials are left of ``trials``, the study's remaining time at the pace so far."""

    def report(study: Any, trial: Any) -> None:
        a = trial.user_attrs
        value = "-" if trial.values is None else ", ".join(f"{v:.6g}" for v in trial.values)
        if trial.state.name == "PRUNED" and trial.intermediate_values:
            value = f"{min(trial.intermediate_values.values()):.6g} at epoch {max(trial.intermediate_values) + 1}"
        secs = (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_complete else 0
        reason = a.get("fail_reason") or a.get("stop_reason") or ""
        print(trial_line(prefix, trial.number, state_name(trial), value, secs, a, trial.params, reason), flush=True)
        done = [t for t in study.get_trials(deepcopy=False) if t.state.name in FINISHED and t.datetime_complete]
        spent = [(t.datetime_complete - t.datetime_start).total_seconds() for t in done if t.datetime_start]
        estimate = duration_estimate(spent, trials - len(done), workers)
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
    space = load_space(cfg.space, cfg.experiment)
    study = load_existing_study(cfg, seed_offset=index, conditional=space.conditional)
    splits = splits_for(cfg.experiment)
    check_resume(study, study_record(cfg, splits), cfg.extend)  # a worker on another host, on other data
    lock = AskLock(ensure_dir(study_dir(cfg.study)) / ".ask.lock")
    prefix = f"[w{index}] " if cfg.workers > 1 else ""
    objective = Objective(
        cfg,
        space,
        task(cfg, splits, study.user_attrs),
        splits,
        tracker,
        parent_id,
        prefix=prefix,
        before_trial=lock.release,
        extra_callbacks=extra_callbacks,
    )
    outcomes: list[Any] = []  # this worker's own trials, in order
    # One trial per optimize() call: the loop below keeps the study's budget (MaxTrialsCallback would
    # only ever see the trial it was called after).
    callbacks = [
        report_trial(prefix, cfg.trials, cfg.workers),
        lambda study, trial: outcomes.append(trial),
    ]
    deadline = time.monotonic() + cfg.timeout if cfg.timeout else math.inf
    guard = _Guard()
    while time.monotonic() < deadline:
        lock.acquire()
        try:
            fail_stale_trials(study)  # a dead worker's trial: FAIL, then re-queued
            finished, running = count(study, FINISHED), count(study, ("RUNNING",))
            if finished >= cfg.trials:
                break
            if finished + running >= cfg.trials:
                # The rest is running elsewhere; wait in case one fails (or its worker died and the
                # heartbeat re-queues it), so the study ends with exactly `trials` finished.
                guard.say_waiting(running, journal_path(storage_url(cfg)) is not None)
                lock.release()
                time.sleep(min(5, cfg.heartbeat_interval))
                continue
            remaining = None if deadline == math.inf else max(1.0, deadline - time.monotonic())
            try:
                with storage_errors():  # the storage's one-line error, not Optuna's follow-up errors
                    study.optimize(
                        # No gc_after_trial: the next trial's clear_session collects anyway, and each
                        # collection walks TensorFlow's objects (~0.5 s a trial measured).
                        objective,
                        n_trials=1,
                        timeout=remaining,
                        callbacks=callbacks,
                        catch=(Exception,),
                    )
            except ValueError as err:
                if "Cannot tell a" not in str(err):
                    raise
                # This worker was paused past grace_period (SIGSTOP, a suspended machine): another worker
                # failed its trial as stale and queued the retry, so this result cannot be told. Go on.
                print(
                    f"{prefix}note: this worker's trial was failed as stale by another worker while it was "
                    f"paused (past grace_period: {cfg.grace_period} s); its retry runs in its place",
                    flush=True,
                )
                continue
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM: Optuna has failed the trial; queue its point
                if lock.fh is None:  # held from here: two workers stopped together leave one point each
                    lock.acquire()
                requeue_interrupted(study, objective.current, space, cfg.trials, prefix)
                raise
        finally:
            lock.release()
        last = outcomes[-1] if outcomes else None
        requeue_if_unanswered(study, last)
        guard.check(last)


class _Guard:
    """Stops a worker whose trials keep failing or being skipped: that is a configuration problem."""

    def __init__(self) -> None:
        self.failures = self.skipped = 0
        self.waiting_said = False

    def check(self, last: Any) -> None:
        reason = last.user_attrs.get("fail_reason", "") if last is not None else ""
        if reason.startswith(NO_SPACE):  # every further trial would fail the same way
            raise CAEError(disk_full_message(reason))
        self.skipped = self.skipped + 1 if reason.startswith(SKIPPED) else 0
        if self.skipped >= MAX_SKIPPED_IN_A_ROW:
            raise CAEError(
                f"{self.skipped} sampled trials in a row were skipped ({reason}); widen the space or its limit"
            )
        if last is not None and last.state.name == "FAIL" and not self.skipped:
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
    """``cfg.workers`` OS processes, each with its share of the CPU threads, on ``tracker``'s store."""
    fd, path = tempfile.mkstemp(prefix="cae-search-", suffix=".yaml")
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(to_dict(cfg), fh)
    threads = max(1, (os.cpu_count() or 1) // cfg.workers)
    # The tracking URI travels in the environment: a database URI may hold a password, and argv
    # is visible to every user in a process list.
    env = {**os.environ, "CAE_THREADS": str(threads), "MLFLOW_TRACKING_URI": tracker.uri}
    gpus = gpu_ids()  # one visible GPU per worker, round-robin; none on a CPU host
    argv = [sys.executable, "-m", "cae", "search-worker", path, "--parent-run-id", parent_id]
    procs = [
        subprocess.Popen([*argv, "--index", str(i)], env={**env, **worker_gpu_env(i, gpus)}) for i in range(cfg.workers)
    ]
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: let the workers end their trials cleanly
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
    finally:
        os.unlink(path)
    bad = [c for c in codes if c != 0]
    if bad:
        raise CAEError(f"{len(bad)} of {cfg.workers} workers exited with an error (codes {bad}); see the log above")


def join(cfg: SearchConfig, task: TaskFactory, index: int = 0, tracker: Tracker | None = None) -> None:
    """A worker on another host joining an existing study (``make worker``)."""
    tracker = (tracker or Tracker()).check()
    study = load_existing_study(cfg)
    parent_id = study.user_attrs.get("mlflow_parent_run_id")
    if not parent_id:
        raise CAEError(f"study {cfg.study!r} has no MLflow parent run; start it with `make search` first")
    configure_threads()
    # Not the study's own `seed + 0`: every joining host would then sample the same parameters as
    # the first worker and as each other (seen: 3 hosts training one point 3 times).
    offset = index or 1 + zlib.crc32(f"{socket.gethostname()}/{os.getpid()}".encode()) % 1_000_000
    try:
        run_worker(cfg, parent_id, tracker, task, index=offset)
    except KeyboardInterrupt:
        print(
            "\ninterrupted: the running trial is marked FAIL; run the same command again to rejoin the study",
            file=sys.stderr,
        )
        raise


def read_worker_config(config_path: str) -> SearchConfig:
    """The study config a coordinator wrote for its spawned workers (:func:`spawn_workers`)."""
    return from_dict(SearchConfig, yaml.safe_load(Path(config_path).read_text()), config_path)


def worker_main(cfg: SearchConfig, task: TaskFactory, index: int, parent_id: str) -> None:
    """Entry point of a spawned worker process (``cae search-worker``); its coordinator set its
    ``MLFLOW_TRACKING_URI`` to the coordinator's own tracker."""
    configure_threads()
    run_worker(cfg, parent_id, Tracker(), task, index=index)

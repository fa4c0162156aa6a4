"""`cae search`: an Optuna study over a search space, every trial a child run in MLflow.

Resumable by construction: the study lives in a database (default
``sqlite:///<repo>/runs/optuna.db``), ``trials`` is the study's total of finished trials, and a
trial whose worker died is failed by the heartbeat and retried. ``workers`` > 1 runs that many OS
processes on one storage; other hosts join with ``cae search --join`` (``make worker``).
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from cae.config import SearchConfig, flatten, from_dict, to_dict
from cae.data import Splits, load_splits
from cae.errors import CAEError
from cae.paths import atomic_path, ensure_dir, runs_dir, study_dir, write_text_atomic
from cae.space import SearchSpace, load_space
from cae.tracking import Run, Tracker, machine, with_driver
from cae.train import TrainResult, build_model, configure_threads, train_and_evaluate

BEST_ARTIFACTS = "best"  # a trial run's folder for the best.keras / best.json it exported
MAX_CONSECUTIVE_FAILURES = 3  # a worker stops when this many trials fail in a row: a config problem
FINISHED = ("COMPLETE", "PRUNED")


def _optuna() -> Any:
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our one line per trial replaces its INFO
    # The heartbeat API has been "experimental" since Optuna 2.8; the conventions rely on it.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    logger = logging.getLogger("optuna.study._optimize")
    if not any(isinstance(f, _NoCtrlCTraceback) for f in logger.filters):
        logger.addFilter(_NoCtrlCTraceback())
    return optuna


class _NoCtrlCTraceback(logging.Filter):
    """Optuna logs a failed trial with its traceback; for Ctrl-C or a known failure (NaN loss, a
    bad sampled config) that is 30 lines of TensorFlow internals above our one-line summary: keep
    Optuna's line, drop the traceback. Skipped trials are reported by our progress line alone.
    Unexpected exceptions keep their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, SkippedTrial):
            return False
        if isinstance(error, (KeyboardInterrupt, CAEError)):
            record.exc_info, record.exc_text = None, None
        return True


# --------------------------------------------------------------------------------------------
# Storage, sampler, pruner, study


def storage_url(cfg: SearchConfig) -> str:
    return cfg.storage or f"sqlite:///{runs_dir() / 'optuna.db'}"


def shown(url: str) -> str:
    """``url`` without its password, for messages and the parent run's ``storage`` tag."""
    return re.sub(r"(://[^:/@]+:)[^@/]+@", r"\1***@", url)


def is_journal(url: str) -> bool:
    return url.startswith("journal:") or url.endswith((".log", ".jsonl"))


def open_storage(cfg: SearchConfig) -> Any:
    """RDB storage with a heartbeat (SQLite default, PostgreSQL across hosts) or a journal file.

    Creating it creates the schema, so the coordinator calls this before any worker starts.
    """
    optuna = _optuna()
    url = storage_url(cfg)
    if is_journal(url):
        from optuna.storages.journal import JournalFileBackend

        path = Path(url.removeprefix("journal:").removeprefix("///").removeprefix("//"))
        if url.startswith("journal:///"):
            path = Path("/" + str(path))
        ensure_dir(path.parent)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise CAEError(
            f"invalid storage URL {url!r}; expected sqlite:///path.db, postgresql://user@host/db or journal:///path.log"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            ensure_dir(Path(parsed.database).parent)
        connect_args = {"timeout": 30}  # wait for the other workers' writes instead of "database is locked"
    else:
        connect_args = {"connect_timeout": 20}
    try:
        return optuna.storages.RDBStorage(
            with_driver(url),
            engine_kwargs={"connect_args": connect_args, "pool_pre_ping": True},
            heartbeat_interval=cfg.heartbeat_interval,
            grace_period=cfg.grace_period,
            # A trial whose worker died is failed and re-queued with the same parameters, once.
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1),
        )
    except Exception as err:  # driver missing, host unreachable, bad credentials, bad path
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise CAEError(f"cannot open Optuna storage {shown(url)}: {first}") from None


def sampler_seed(cfg: SearchConfig) -> int:
    return cfg.experiment.seed if cfg.sampler.seed is None else cfg.sampler.seed


def make_sampler(cfg: SearchConfig, seed: int) -> Any:
    optuna = _optuna()
    s = cfg.sampler
    if s.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if s.name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    # TPE: multivariate with constant_liar by default in Optuna 5, so parallel workers spread out.
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=s.n_startup_trials)


def make_pruner(cfg: SearchConfig) -> Any:
    optuna = _optuna()
    p = cfg.pruner
    if len(cfg.objectives) > 1 or p.name == "none":
        # Optuna cannot prune multi-objective trials: the budget is kept by epochs and subset.
        return optuna.pruners.NopPruner()
    if p.name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=cfg.experiment.train.epochs)
    if p.name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, p.n_warmup_steps))
    return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps)


def directions(cfg: SearchConfig) -> list[str]:
    return ["minimize"] * len(cfg.objectives)


def load_existing_study(cfg: SearchConfig, storage: Any = None, seed_offset: int = 0) -> Any:
    """The study named ``cfg.study``; a one-line error listing the studies that do exist."""
    optuna = _optuna()
    storage = storage or open_storage(cfg)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    if cfg.study not in names:
        raise CAEError(
            f"no study {cfg.study!r} in {shown(storage_url(cfg))}; existing studies: {', '.join(names) or 'none'} "
            "(run `make search` first)"
        )
    return optuna.load_study(
        study_name=cfg.study, storage=storage, sampler=make_sampler(cfg, sampler_seed(cfg) + seed_offset),
        pruner=make_pruner(cfg),
    )  # fmt: skip


def create_or_load_study(cfg: SearchConfig, space: SearchSpace, storage: Any) -> Any:
    """Create the study (or load it to resume); a new one gets the reference as trial 0."""
    optuna = _optuna()
    study = optuna.create_study(
        storage=storage, study_name=cfg.study, sampler=make_sampler(cfg, sampler_seed(cfg)),
        pruner=make_pruner(cfg), directions=directions(cfg), load_if_exists=True,
    )  # fmt: skip
    if len(study.directions) != len(cfg.objectives):
        raise CAEError(
            f"study {cfg.study!r} has {len(study.directions)} objective(s) but the config asks for "
            f"{list(cfg.objectives)}; use another STUDY name"
        )
    if not study.trials and "uid" not in study.user_attrs:
        study.set_user_attr("uid", uuid.uuid4().hex[:12])  # tells this study from an older one of that name
    if not study.trials:
        study.set_user_attr("space", str(space.path))
        study.set_user_attr("objectives", list(cfg.objectives))
        outside = space.outside(cfg.experiment)
        if cfg.enqueue_reference and outside:
            print(f"note: the base experiment is outside {space.path} ({', '.join(outside)}): not enqueued")
        elif cfg.enqueue_reference:
            # Every study starts with the baseline to beat: the base (reference) architecture.
            study.enqueue_trial(space.point(cfg.experiment), user_attrs={"reference": True})
    return study


def state_name(trial: Any) -> str:
    """COMPLETE / PRUNED / FAIL / RUNNING ..., with skipped trials (FAIL in Optuna) as SKIPPED."""
    skipped = trial.state.name == "FAIL" and trial.user_attrs.get("fail_reason", "").startswith(SKIPPED)
    return "SKIPPED" if skipped else trial.state.name


def state_counts(study: Any) -> Counter[str]:
    return Counter(state_name(t) for t in study.get_trials(deepcopy=False))


def count(study: Any, states: Sequence[str]) -> int:
    optuna = _optuna()
    wanted = tuple(getattr(optuna.trial.TrialState, s) for s in states)
    return len(study.get_trials(deepcopy=False, states=wanted))


# --------------------------------------------------------------------------------------------
# The objective


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


class SkippedTrial(Exception):
    """A trial dropped before training: FAIL with reason "skipped: ...", no MLflow run, not counted.

    Used when another worker took the last trial of the budget first (multi-host race) and when
    the sampled architecture's code exceeds ``max_code_values``.
    """


SKIPPED = "skipped: "
MAX_SKIPPED_IN_A_ROW = 50  # a space (almost) entirely outside max_code_values is a config error


def trial_value(cfg: SearchConfig, result: TrainResult) -> float | tuple[float, ...]:
    values = {"val_loss": result.best_val_loss, "code_values": float(result.code_values)}
    out = tuple(values[o] for o in cfg.objectives)
    return out[0] if len(out) == 1 else out


class Objective:
    """Builds, trains and logs one trial; the data is loaded once per worker and held here."""

    def __init__(
        self, cfg: SearchConfig, space: SearchSpace, splits: Splits, tracker: Tracker, parent_id: str,
        *, engine: str = "optuna", lock: AskLock | None = None,
        extra_callbacks: Callable[[Any], list[Any]] | None = None,
    ):  # fmt: skip
        self.cfg, self.space, self.splits, self.tracker = cfg, space, splits, tracker
        self.parent_id, self.engine, self.lock = parent_id, engine, lock
        self.extra_callbacks = extra_callbacks  # tests inject e.g. a NaN-making callback

    @staticmethod
    def _skip(trial: Any, reason: str) -> None:
        trial.set_user_attr("fail_reason", SKIPPED + reason)
        raise SkippedTrial(reason)

    def __call__(self, trial: Any) -> float | tuple[float, ...]:
        optuna = _optuna()
        if self.lock is not None:
            self.lock.release()  # the trial exists now: other workers may ask for theirs
        ahead = [t for t in trial.study.get_trials(deepcopy=False) if t.number < trial.number
                 and t.state.name in ("COMPLETE", "PRUNED", "RUNNING")]  # fmt: skip
        if len(ahead) >= self.cfg.trials:
            self._skip(trial, f"the budget of {self.cfg.trials} trials was taken by other workers first")

        import keras

        keras.backend.clear_session()  # free the previous trial's graph and layer names
        params = self.space.sample_optuna(trial)
        config = self.space.apply(self.cfg.experiment, params)
        model = build_model(config, self.splits)
        from cae.model import code_sizes

        latent, bottleneck = code_sizes(model)
        info = {"n_params": int(model.count_params()), "latent_values": latent, "bottleneck_values": bottleneck}
        for k, v in {**info, "code_values": min(latent, bottleneck)}.items():
            trial.set_user_attr(k, v)
        limit = self.cfg.max_code_values
        if limit is not None and min(latent, bottleneck) > limit:
            self._skip(trial, f"code of {min(latent, bottleneck)} values exceeds max_code_values={limit}")
        run = self.tracker.start_run(
            self.cfg.study, f"trial-{trial.number}", parent_id=self.parent_id,
            tags={"study": self.cfg.study, "trial_number": trial.number, "engine": self.engine,
                  "trial_state": "RUNNING", "stage": "reconstruction", "data_source": self.splits.data_source},
        )  # fmt: skip
        trial.set_user_attr("mlflow_run_id", run.run_id)
        run.log_params({**params, **info})
        history = keras.callbacks.History()  # keeps the curve of a trial stopped by the pruner
        callbacks = [history, run.epoch_callback()]
        if len(self.cfg.objectives) == 1:
            from optuna_integration import KerasPruningCallback

            callbacks.append(KerasPruningCallback(trial, "val_loss"))
        if self.extra_callbacks:
            callbacks += self.extra_callbacks(trial)
        try:
            result = train_and_evaluate(
                config, self.splits, model=model, callbacks=callbacks, evaluate_test=False, verbose=0
            )
        except optuna.TrialPruned as pruned:
            seen = history.history.get("val_loss", [])
            if seen:
                run.log_metrics({"best_val_loss": min(seen)}, step=len(seen))
            run.end_trial("PRUNED", str(pruned))
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("fail_reason", "interrupted (Ctrl-C)")
            run.end_trial("FAIL", "interrupted (Ctrl-C)")
            raise
        except Exception as err:
            reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:300]
            trial.set_user_attr("fail_reason", reason)
            run.end_trial("FAIL", reason)
            raise
        run.log_metrics(
            {"best_val_loss": result.best_val_loss, "seconds_per_epoch": result.seconds_per_epoch},
            step=result.epochs_run,
        )
        trial.set_user_attr("best_epoch", result.best_epoch)
        trial.set_user_attr("seconds", round(result.seconds, 2))
        value = trial_value(self.cfg, result)
        export_trial(
            self.cfg,
            trial.number,
            result,
            config,
            params,
            run.run_id,
            self.engine,
            self.splits.data_source,
            multi=len(self.cfg.objectives) > 1,
            run=run,
            uid=trial.study.user_attrs.get("uid"),
        )
        run.end_trial("COMPLETE")
        return value


# --------------------------------------------------------------------------------------------
# best.json / best.keras


def best_paths(study: str) -> tuple[Path, Path]:
    d = study_dir(study)
    return d / "best.json", d / "best.keras"


def export_trial(
    cfg: SearchConfig, number: int, result: TrainResult, config: Any, params: dict[str, Any], run_id: str,
    engine: str, data_source: str, *, multi: bool = False, run: Run | None = None, uid: str | None = None,
) -> bool:  # fmt: skip
    """Write ``best.json`` + ``best.keras`` if this trial beats the exported best (validation).

    Multi-objective studies also keep every completed trial's model under ``models/`` so the
    Pareto front can be scored on the test split later. Files are written atomically (temp file,
    then rename) under a lock, so readers never see a partial or mixed export. With ``run``, a new
    best is also logged to it (``best/``): the host that finishes a multi-host study fetches it.
    """
    json_path, model_path = best_paths(cfg.study)
    d = ensure_dir(json_path.parent)
    record = {
        "study": cfg.study, "trial_number": number, "engine": engine, "val_loss": result.best_val_loss,
        "best_epoch": result.best_epoch, "epochs": result.epochs_run, "params": params,
        "config": to_dict(config), "n_params": result.n_params, "latent_values": result.latent_values,
        "bottleneck_values": result.bottleneck_values, "code_values": result.code_values,
        "mlflow_run_id": run_id, "data_source": data_source, "seconds": round(result.seconds, 2),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "study_uid": uid,
    }  # fmt: skip
    result.model.name = f"trial_{number}"  # lets a reader check that best.keras matches best.json
    if multi:
        with atomic_path(ensure_dir(d / "models") / f"trial-{number}.keras") as tmp:
            result.model.save(tmp)
        write_text_atomic(d / "models" / f"trial-{number}.json", json.dumps(record, indent=2))
    with (d / ".best.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            old = json.loads(json_path.read_text()) if json_path.exists() else None
            # Only a better trial of the same study replaces it; an export from an older study
            # that had this name is replaced whatever its score.
            if old is not None and old.get("study_uid") == uid and old["val_loss"] <= result.best_val_loss:
                return False
        except (ValueError, KeyError):
            pass  # unreadable old export: replace it
        with atomic_path(model_path) as tmp:
            result.model.save(tmp)
        write_text_atomic(json_path, json.dumps(record, indent=2))
        if run is not None:
            run.log_artifact(model_path, BEST_ARTIFACTS)
            run.log_artifact(json_path, BEST_ARTIFACTS)
    return True


def fetch_best(cfg: SearchConfig, study: Any, tracker: Tracker) -> None:
    """Make ``runs/<study>/best.*`` the study's best trial, from its MLflow run if it ran elsewhere.

    With workers on several hosts, each host exports only the trials it ran; the host that
    finishes the study may not hold the overall best one.
    """
    best = study.best_trial
    json_path, model_path = best_paths(cfg.study)
    try:
        old = json.loads(json_path.read_text())
        if old["trial_number"] == best.number and old.get("study_uid") == study.user_attrs.get("uid"):
            return
    except (OSError, ValueError, KeyError):
        pass  # none here yet: fetch it
    run_id = best.user_attrs.get("mlflow_run_id", "?")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            folder = tracker.download(run_id, BEST_ARTIFACTS, Path(tmp))
            record = json.loads((folder / "best.json").read_text())
        except Exception as err:  # an old run without best/, or the store lost it: keep this host's best
            print(
                f"note: best trial {best.number} ran on another host and its model is not in MLflow run "
                f"{run_id} ({type(err).__name__}); exporting this host's best instead"
            )
            return
        with (ensure_dir(json_path.parent) / ".best.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            with atomic_path(model_path) as tmp_model:
                shutil.copyfile(folder / "best.keras", tmp_model)
            write_text_atomic(json_path, json.dumps(record, indent=2))
    print(f"best trial {best.number} ran on another host: fetched best.keras from MLflow run {run_id}")


def read_best(study: str) -> dict[str, Any]:
    json_path, _ = best_paths(study)
    if not json_path.exists():
        raise CAEError(
            f"no best trial exported for study {study!r} ({json_path} missing); run `make search STUDY={study}` first"
        )
    return json.loads(json_path.read_text())


def load_best_model(study: str) -> tuple[Any, dict[str, Any]]:
    import keras

    import cae.model  # noqa: F401  (registers the custom layers)

    record = read_best(study)
    model = keras.models.load_model(best_paths(study)[1], compile=False)
    if model.name != f"trial_{record['trial_number']}":
        raise CAEError(f"{best_paths(study)[1]} does not match best.json (interrupted export); rerun the search")
    return model, record


# --------------------------------------------------------------------------------------------
# Workers and the coordinator


def _progress(prefix: str) -> Callable[[Any, Any], None]:
    def report(study: Any, trial: Any) -> None:
        a = trial.user_attrs
        value = "-" if trial.values is None else ", ".join(f"{v:.6g}" for v in trial.values)
        if trial.state.name == "PRUNED" and trial.intermediate_values:
            value = f"{min(trial.intermediate_values.values()):.6g} at epoch {max(trial.intermediate_values) + 1}"
        secs = (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_complete else 0
        params = " ".join(f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                          for k, v in trial.params.items())  # fmt: skip
        reason = a.get("fail_reason", "")
        why = f"  ({reason})" if reason else ""
        state = state_name(trial)
        print(
            f"{prefix}trial {trial.number:3d} {state:8s} val={value}  {secs:6.1f}s  "
            f"params={a.get('n_params', '?')} code={a.get('code_values', '?')}  {params}{why}",
            flush=True,
        )

    return report


def run_worker(
    cfg: SearchConfig, parent_id: str, *, index: int = 0,
    extra_callbacks: Callable[[Any], list[Any]] | None = None,
) -> None:  # fmt: skip
    """Run trials until the study holds ``cfg.trials`` finished ones (or the timeout passes)."""
    optuna = _optuna()
    space = load_space(cfg.space)
    study = load_existing_study(cfg, seed_offset=index)
    splits = load_splits(cfg.experiment.data.source, cfg.experiment.seed, cfg.experiment.data.subset)
    tracker = Tracker()
    lock = AskLock(ensure_dir(study_dir(cfg.study)) / ".ask.lock")
    objective = Objective(cfg, space, splits, tracker, parent_id, lock=lock, extra_callbacks=extra_callbacks)
    finished_states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    callbacks = [
        optuna.study.MaxTrialsCallback(cfg.trials, states=finished_states),
        _progress(f"[w{index}] " if cfg.workers > 1 else ""),
    ]
    outcomes: list[Any] = []  # this worker's own trials, in order
    callbacks.append(lambda study, trial: outcomes.append(trial))
    deadline = time.monotonic() + cfg.timeout if cfg.timeout else math.inf
    failures = skipped = 0
    waiting_said = False
    while time.monotonic() < deadline:
        lock.acquire()
        try:
            optuna.storages.fail_stale_trials(study)  # a dead worker's trial: FAIL, then re-queued
            finished, running = count(study, FINISHED), count(study, ("RUNNING",))
            if finished >= cfg.trials:
                break
            if finished + running >= cfg.trials:
                # The rest is running elsewhere; wait in case one fails (or its worker died and the
                # heartbeat re-queues it), so the study ends with exactly `trials` finished.
                if not waiting_said:
                    waiting_said = True
                    print(f"waiting for {running} trial(s) running in other workers to finish" + (
                        "; with a journal storage a killed worker's trial stays RUNNING: fail it with "
                        "optuna.load_study(...).tell(<number>, state=optuna.trial.TrialState.FAIL)"
                        if is_journal(storage_url(cfg)) else ""), flush=True)  # fmt: skip
                lock.release()
                time.sleep(min(5, cfg.heartbeat_interval))
                continue
            remaining = None if deadline == math.inf else max(1.0, deadline - time.monotonic())
            study.optimize(
                objective, n_trials=1, timeout=remaining, callbacks=callbacks, catch=(Exception,), gc_after_trial=True
            )
        finally:
            lock.release()
        last = outcomes[-1] if outcomes else None
        reason = last.user_attrs.get("fail_reason", "") if last is not None else ""
        skipped = skipped + 1 if reason.startswith(SKIPPED) else 0
        if skipped >= MAX_SKIPPED_IN_A_ROW:
            raise CAEError(f"{skipped} sampled trials in a row were skipped ({reason}); widen the space or its limit")
        if last is not None and last.state.name == "FAIL" and not skipped:
            failures += 1
            if failures >= MAX_CONSECUTIVE_FAILURES:
                raise CAEError(
                    f"{failures} trials failed in a row (last: {last.user_attrs.get('fail_reason', 'see log')}); "
                    "stopping this worker"
                )
        else:
            failures = 0


def _spawn_workers(cfg: SearchConfig, parent_id: str) -> None:
    """``cfg.workers`` OS processes, each with its share of the CPU threads."""
    fd, path = tempfile.mkstemp(prefix="cae-search-", suffix=".yaml")
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(to_dict(cfg), fh)
    threads = max(1, (os.cpu_count() or 1) // cfg.workers)
    env = {**os.environ, "CAE_THREADS": str(threads)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "cae", "search-worker", path, "--index", str(i), "--parent-run-id", parent_id],
            env=env,
        )
        for i in range(cfg.workers)
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


def _parent_tags(cfg: SearchConfig, data_source: str, engine: str) -> dict[str, str]:
    return {"engine": engine, "stage": "reconstruction", "data_source": data_source, "machine": machine()}


def prepare(cfg: SearchConfig, tracker: Tracker, engine: str = "optuna") -> tuple[Any, Run, SearchSpace]:
    """Everything that must exist before a worker starts: checks, schema, study, parent run.

    Every check of the user's input (space, data, runs/ folder, storage) comes before anything is
    created: a bad input must not leave an empty study, study folder or MLflow run behind.
    """
    space = load_space(cfg.space)
    source = load_splits(cfg.experiment.data.source, cfg.experiment.seed, cfg.experiment.data.subset).data_source
    ensure_dir(runs_dir())
    storage = open_storage(cfg)
    ensure_dir(study_dir(cfg.study))
    study = create_or_load_study(cfg, space, storage)
    parent = tracker.study_parent(cfg.study, _parent_tags(cfg, source, engine), uid=study.user_attrs.get("uid"))
    if not study.user_attrs.get("mlflow_parent_run_id"):
        study.set_user_attr("mlflow_parent_run_id", parent.run_id)
        parent.log_params({k: v for k, v in flatten(cfg).items() if not k.startswith("experiment.model.")})
    parent.set_tags({"trials_requested": cfg.trials, "storage": shown(storage_url(cfg))})
    return study, parent, space


def reconcile(study: Any, tracker: Tracker, parent: Run, study_name: str) -> None:
    """Close MLflow runs that a killed worker left RUNNING (their trials are FAIL by now)."""
    _optuna().storages.fail_stale_trials(study)
    running = {t.number for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING"}
    closed = tracker.close_orphans(parent.run_id, study_name, running)
    if closed:
        print(f"closed {closed} MLflow run(s) left RUNNING by a killed worker")


def run_search(
    cfg: SearchConfig, *, tracker: Tracker | None = None,
    extra_callbacks: Callable[[Any], list[Any]] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Run (or resume) the study to ``cfg.trials`` finished trials; returns the summary."""
    tracker = (tracker or Tracker()).check()
    study, parent, _ = prepare(cfg, tracker)
    reconcile(study, tracker, parent, cfg.study)
    done = count(study, FINISHED)
    print(
        f"study {cfg.study!r}: {done} finished trial(s) of {cfg.trials}; storage {shown(storage_url(cfg))}; "
        f"MLflow {tracker.uri}",
        flush=True,
    )
    try:
        if cfg.workers > 1:
            _spawn_workers(cfg, parent.run_id)
        else:
            configure_threads()
            run_worker(cfg, parent.run_id, extra_callbacks=extra_callbacks)
        reconcile(study, tracker, parent, cfg.study)
        summary = finalize_study(cfg, study, parent)
    except KeyboardInterrupt:
        reconcile(study, tracker, parent, cfg.study)
        parent.end("KILLED")
        print(
            f"\ninterrupted: {count(study, FINISHED)} of {cfg.trials} trials finished; "
            "run the same command again to resume",
            file=sys.stderr,
        )
        raise
    except BaseException as err:  # a stopped worker, a failed finalize: never leave the parent RUNNING
        parent.set_tags({"error": (str(err).splitlines() or [type(err).__name__])[0][:500]})
        parent.end("FAILED")
        raise
    parent.end("FINISHED")
    return summary


def join(cfg: SearchConfig, index: int = 0) -> None:
    """A worker on another host joining an existing study (``make worker``)."""
    Tracker().check()
    study = load_existing_study(cfg)
    parent_id = study.user_attrs.get("mlflow_parent_run_id")
    if not parent_id:
        raise CAEError(f"study {cfg.study!r} has no MLflow parent run; start it with `make search` first")
    configure_threads()
    # Not the study's own `seed + 0`: every joining host would then sample the same parameters as
    # the first worker and as each other (seen: 3 hosts training one point 3 times).
    offset = index or 1 + zlib.crc32(f"{socket.gethostname()}/{os.getpid()}".encode()) % 1_000_000
    try:
        run_worker(cfg, parent_id, index=offset)
    except KeyboardInterrupt:
        print(
            "\ninterrupted: the running trial is marked FAIL; run the same command again to rejoin the study",
            file=sys.stderr,
        )
        raise


def worker_main(config_path: str, index: int, parent_id: str) -> None:
    """Entry point of a spawned worker process (``cae search-worker``)."""
    cfg = from_dict(SearchConfig, yaml.safe_load(Path(config_path).read_text()), config_path)
    configure_threads()
    run_worker(cfg, parent_id, index=index)


def _save_optuna_plots(study: Any, out: Path) -> list[Path]:
    """Optuna's own figures (matplotlib backend) for the parent run; skips what cannot be drawn yet."""
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ov

    single = len(study.directions) == 1
    figures = {
        "optimization_history": lambda: ov.plot_optimization_history(
            study, target=None if single else (lambda t: t.values[0]), target_name="val_loss"
        ),
        "intermediate_values": lambda: ov.plot_intermediate_values(study),
        "param_importances": lambda: ov.plot_param_importances(
            study, target=None if single else (lambda t: t.values[0]), target_name="val_loss"
        ),
        "parallel_coordinate": lambda: ov.plot_parallel_coordinate(
            study, target=None if single else (lambda t: t.values[0]), target_name="val_loss"
        ),
    }
    if not single:
        figures["pareto_front"] = lambda: ov.plot_pareto_front(study, target_names=["val_loss", "code_values"])
    ensure_dir(out)
    # Optuna switches matplotlib to its ggplot style globally; the context restores ours after.
    with plt.style.context("ggplot"):
        return _draw(figures, out)


def _draw(figures: dict[str, Callable[[], Any]], out: Path) -> list[Path]:
    import warnings

    import matplotlib.pyplot as plt

    saved = []
    for name, draw in figures.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = draw()
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).get_figure()
            fig.set_size_inches(9, 5.5)
            with atomic_path(out / f"{name}.png") as tmp:
                fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
            plt.close(fig)
            saved.append(out / f"{name}.png")
        except Exception as err:  # e.g. importances need 2+ completed trials with varied params
            print(
                f"note: no {name} plot yet ({type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''})"
            )
    return saved


def finalize_study(cfg: SearchConfig, study: Any, parent: Run) -> dict[str, Any]:
    """Optuna's plots and the trial states, then the exported best scored on the test split."""

    states = state_counts(study)
    print(f"\nstudy {cfg.study!r}: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())))
    for p in _save_optuna_plots(study, study_dir(cfg.study) / "plots"):
        parent.log_artifact(p, "optuna")
    summary: dict[str, Any] = {"study": cfg.study, "states": dict(states)}
    if not states["COMPLETE"]:
        print("no completed trial yet: nothing to export")
        return summary
    reference = next((t for t in study.trials if t.user_attrs.get("reference") and t.state.name == "COMPLETE"), None)
    if len(study.directions) == 1:
        fetch_best(cfg, study, parent.tracker)
    summary["best"] = score_best(cfg, parent, step=states["COMPLETE"] + states["PRUNED"])
    if reference is not None:
        print(f"reference (trial {reference.number}): val MSE {reference.values[0]:.6f}")
    return summary


def score_best(cfg: SearchConfig, parent: Run, step: int) -> dict[str, Any]:
    """Score the exported best trial once on the test split; log it to the study's parent run."""
    from cae.train import evaluate

    model, record = load_best_model(cfg.study)
    config = from_dict(type(cfg.experiment), record["config"], "best.json")
    splits = load_splits(config.data.source, config.seed, config.data.subset)
    test, _ = evaluate(model, splits.x_test, config.data.input)
    record["test"] = test
    json_path = best_paths(cfg.study)[0]
    with (study_dir(cfg.study) / ".best.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if json.loads(json_path.read_text())["trial_number"] == record["trial_number"]:
            write_text_atomic(json_path, json.dumps(record, indent=2))
    parent.log_metrics({"best_val_loss": record["val_loss"], **test}, step=step)
    parent.set_tags({"best_trial_number": record["trial_number"], "best_run_id": record["mlflow_run_id"]})
    parent.log_text(json.dumps(record, indent=2), "best.json")
    print(
        f"best: trial {record['trial_number']}  val MSE {record['val_loss']:.6f}  "
        f"test MSE {test['test_mse']:.6f}  PSNR {test['test_psnr']:.2f} dB  "
        f"({record['n_params']:,} params, code {record['code_values']} values)\nexported to {json_path}"
    )
    return record

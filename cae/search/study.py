"""The Optuna study: its storage and pruner (its sampler: :mod:`cae.search.sampling`), and counting its trials.

Resumable by construction: the study lives in a database (default
``sqlite:///<repo>/runs/optuna.db``); a trial whose worker died is failed by the heartbeat and
retried once with the same parameters (one stopped by Ctrl-C or SIGTERM: :mod:`cae.search.retry`).
"""

from __future__ import annotations

import logging
import uuid
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cae.errors import CAEError, TrialStopped, disk_full, first_line
from cae.paths import ensure_dir, runs_dir
from cae.search.outage import patience, sqlite_disk_full
from cae.search.sampling import make_sampler, resumed_seed
from cae.search_config import SearchConfig
from cae.space import SearchSpace
from cae.storelock import creating_schema
from cae.urls import journal_path, shown, with_driver

FINISHED = ("COMPLETE", "PRUNED")
SKIPPED = "skipped: "  # fail reason prefix of a point dropped before training (no run, not counted)


class SkippedTrial(Exception):
    """A trial dropped before training: FAIL with reason "skipped: ...", no MLflow run, not counted.

    Used when another worker took the last trial of the budget first (multi-host race) and when
    the sampled architecture's code exceeds ``max_code_values``.
    """


def optuna_module() -> Any:
    """Optuna, imported once with the harness's logging: our one line per trial replaces its INFO."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logger = logging.getLogger("optuna.study._optimize")
    if not any(isinstance(f, _KnownFailureFilter) for f in logger.filters):
        logger.addFilter(_KnownFailureFilter())
    return optuna


class _KnownFailureFilter(logging.Filter):
    """Optuna logs a failed trial with its traceback; for Ctrl-C or a known failure (NaN loss, a
    bad sampled config, a full disk) that is 30 lines of TensorFlow internals above our one-line summary: keep
    Optuna's line, drop the traceback. Skipped trials are reported by our progress line alone.
    Unexpected exceptions keep their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, SkippedTrial):
            return False
        if isinstance(error, (KeyboardInterrupt, CAEError, TrialStopped)) or (error and disk_full(error)):
            record.exc_info, record.exc_text = None, None
        return True


def storage_url(cfg: SearchConfig) -> str:
    return cfg.storage or f"sqlite:///{runs_dir() / 'optuna.db'}"


def open_storage(cfg: SearchConfig) -> Any:
    """RDB storage with a heartbeat (SQLite default, PostgreSQL across hosts) or a journal file.

    Creating it creates the schema, so the coordinator calls this before any worker starts. An RDB
    storage comes wrapped in :class:`~cae.search.resilient.ResilientStorage`: a database that goes
    away later (restart, failover) is waited for, up to ``CAE_STORAGE_PATIENCE`` seconds. At the
    start it must answer: a storage that cannot be opened is a one-line error at once.
    """
    optuna = optuna_module()
    url = storage_url(cfg)
    journal = journal_path(url)
    if journal is not None:
        from optuna.storages.journal import JournalFileBackend

        ensure_dir(journal.absolute().parent)
        return optuna.storages.JournalStorage(JournalFileBackend(str(journal.absolute())))
    return _rdb_storage(cfg, url, parse_storage_url(url))


def parse_storage_url(url: str) -> Any:
    """The SQLAlchemy URL of an RDB storage; a one-line error naming the forms that work."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url)
    except ArgumentError:
        raise CAEError(
            f"invalid storage URL {url!r}; expected sqlite:///path.db, postgresql://user@host/db or journal:///path.log"
        ) from None


def open_existing_storage(url: str) -> Any:
    """The storage behind ``url`` for reading (the dashboard): nothing is created if it is missing,
    and a database without Optuna's tables is a one-line error rather than a new schema."""
    optuna = optuna_module()
    journal = journal_path(url)
    if journal is not None:
        if not journal.is_file():
            raise CAEError(f"journal storage {journal} does not exist (run `make search STORAGE={url}` first)")
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    parsed = parse_storage_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite and not (parsed.database and Path(parsed.database).is_file()):
        raise CAEError(f"no study storage at {url} (run `make search` first, or pass STORAGE=)")
    try:
        storage = optuna.storages.RDBStorage(
            with_driver(url),
            skip_compatibility_check=True,
            skip_table_creation=True,
            engine_kwargs={"connect_args": {"timeout": 30} if sqlite else {"connect_timeout": 20}},
        )
        storage.get_all_studies()
    except Exception as err:  # driver, host, credentials, or a database without Optuna's tables
        first = first_line(err)
        raise CAEError(f"cannot read Optuna storage {shown(url)}: {first}") from None
    return storage


def _rdb_storage(cfg: SearchConfig, url: str, parsed: Any) -> Any:
    """``RDBStorage`` with the heartbeat, in the proxy that waits out database outages."""
    optuna = optuna_module()
    sqlite_file = None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            sqlite_file = Path(parsed.database).absolute()
            ensure_dir(sqlite_file.parent)
        connect_args = {"timeout": 30}  # wait for the other workers' writes instead of "database is locked"
    else:
        connect_args = {"connect_timeout": 20}
    wait = patience()  # a bad CAE_STORAGE_PATIENCE fails here, before anything is created
    try:
        with warnings.catch_warnings():
            # The heartbeat API has been "experimental" since Optuna 2.8; the conventions rely on it.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            with creating_schema(url):  # two first workers on an empty file: one creates the tables
                backend = optuna.storages.RDBStorage(
                    with_driver(url),
                    # pool_pre_ping: a pooled connection that died with a database restart is replaced
                    # before use instead of failing the next call.
                    engine_kwargs={"connect_args": connect_args, "pool_pre_ping": True},
                    heartbeat_interval=cfg.heartbeat_interval,
                    grace_period=cfg.grace_period,
                    # A trial whose worker died is failed and re-queued with the same parameters, once.
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1),
                )
    except Exception as err:  # driver missing, host unreachable, bad credentials, bad path, full disk
        full = sqlite_disk_full(err, sqlite_file)
        if full is not None:
            raise full from None
        first = first_line(err)
        raise CAEError(f"cannot open Optuna storage {shown(url)}: {first}") from None
    from cae.search.resilient import ResilientStorage  # lazy: Optuna; cae.preflight imports this module

    return ResilientStorage(backend, shown(url), wait, sqlite_file)


def make_pruner(cfg: SearchConfig) -> Any:
    """The study's pruner (:mod:`cae.search.pruning`); none for several objectives, which Optuna cannot
    prune: the objective's own rung pruning does (:mod:`cae.search.rungs`)."""
    from cae.search.pruning import make_pruner as pruner_named  # lazy: Optuna

    p = cfg.pruner
    name = "none" if len(cfg.objectives) > 1 else p.name
    return pruner_named(
        name, epochs=cfg.experiment.train.epochs, n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps
    )


def load_existing_study(cfg: SearchConfig, storage: Any = None, seed_offset: int = 0, conditional: bool = False) -> Any:
    """The study named ``cfg.study``; a one-line error listing the studies that do exist."""
    optuna = optuna_module()
    storage = storage or open_storage(cfg)
    summaries = {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if cfg.study not in summaries:
        raise CAEError(
            f"no study {cfg.study!r} in {shown(storage_url(cfg))}; existing studies: "
            f"{', '.join(summaries) or 'none'} (run `make search` first)"
        )
    seed = resumed_seed(cfg.sampler_seed, seed_offset, summaries[cfg.study].n_trials)
    return optuna.load_study(
        study_name=cfg.study,
        storage=storage,
        pruner=make_pruner(cfg),
        sampler=make_sampler(cfg, seed, conditional),
    )


def delete_study(cfg: SearchConfig) -> bool:
    """Delete the study ``cfg.study`` from its storage; False if there was none."""
    optuna = optuna_module()
    storage = open_storage(cfg)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    if cfg.study not in names:
        return False
    optuna.delete_study(study_name=cfg.study, storage=storage)
    return True


def create_or_load_study(
    cfg: SearchConfig,
    space: SearchSpace,
    storage: Any,
    first_points: Sequence[dict[str, Any]] = (),
    attrs: dict[str, Any] | None = None,
) -> Any:
    """Create the study (or load it to resume); a new one is given ``first_points`` to run first.

    ``attrs`` are stored with a new study (e.g. a colorization study's lineage), so workers on
    other hosts read them from the storage.
    """
    optuna = optuna_module()
    study = optuna.create_study(
        storage=storage,
        study_name=cfg.study,
        sampler=make_sampler(cfg, cfg.sampler_seed, space.conditional),
        pruner=make_pruner(cfg),
        directions=cfg.directions,
        load_if_exists=True,
    )
    if study.metric_names is None:  # optuna-dashboard and Optuna's figures then name the objectives
        with warnings.catch_warnings():  # "experimental" since Optuna 3.2
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(cfg.objectives))
    if [d.name.lower() for d in study.directions] != cfg.directions:
        raise CAEError(
            f"study {cfg.study!r} optimises {len(study.directions)} objective(s) in other directions than "
            f"{list(cfg.objectives)}; use another STUDY name"
        )
    if not study.trials and "uid" not in study.user_attrs:
        study.set_user_attr("uid", uuid.uuid4().hex[:12])  # tells this study from an older one of that name
    if not study.trials:
        for key, value in {"space": str(space.path), "objectives": list(cfg.objectives), **(attrs or {})}.items():
            study.set_user_attr(key, value)
        for point in first_points:
            study.enqueue_trial(point["params"], user_attrs=point.get("attrs", {}))
    return study


def state_name(trial: Any) -> str:
    """COMPLETE / PRUNED / FAIL / RUNNING ..., with skipped trials (FAIL in Optuna) as SKIPPED."""
    skipped = trial.state.name == "FAIL" and trial.user_attrs.get("fail_reason", "").startswith(SKIPPED)
    return "SKIPPED" if skipped else trial.state.name


def state_counts(study: Any) -> Counter[str]:
    return Counter(state_name(t) for t in study.get_trials(deepcopy=False))


def count(study: Any, states: Sequence[str]) -> int:
    optuna = optuna_module()
    wanted = tuple(getattr(optuna.trial.TrialState, s) for s in states)
    return len(study.get_trials(deepcopy=False, states=wanted))


def fail_stale_trials(study: Any) -> None:
    """Fail (and re-queue once) trials whose worker stopped sending heartbeats."""
    optuna = optuna_module()
    with warnings.catch_warnings():  # "experimental" since Optuna 2.9; the heartbeat relies on it
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def importances(study: Any, target: Any = None) -> dict[str, float]:
    """Each parameter's share of the explained variance of the first objective (fANOVA, seeded).

    fANOVA rather than Optuna 5's default PED-ANOVA, because "share of the explained variance" is
    what the report says and what fANOVA measures.
    """
    optuna = optuna_module()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.importance.get_param_importances(
            study,
            evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0),
            target=target or (lambda t: t.values[0]),
        )

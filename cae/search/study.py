"""The Optuna study: its sampler and pruner, creating or loading it, and counting its trials.

Resumable by construction: the study lives in a database (:mod:`cae.search.storage`); a trial
whose worker died is failed by the heartbeat and queued again with the same parameters, as is one
stopped by Ctrl-C, SIGTERM or SIGHUP (:mod:`cae.search.retry`).
"""

from __future__ import annotations

import logging
import uuid
import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any

from cae.errors import CAEError, TrialStopped, disk_full
from cae.search import attrs
from cae.search.storage import open_storage, storage_url
from cae.search_config import SearchConfig
from cae.space import SearchSpace
from cae.urls import shown

FINISHED = ("COMPLETE", "PRUNED")
SKIPPED = "skipped: "  # fail reason prefix of a point dropped before training (no run, not counted)


class SkippedTrial(Exception):
    """A trial dropped before training: FAIL with reason "skipped: ...", no MLflow run, not counted.

    Used when another worker took the last trial of the budget first (multi-host race) and when the
    sampled architecture's code is not the study's size.
    """


def optuna_module() -> Any:
    """Optuna, with its log lines through a handler of ours: a failure our own trial line reports (Ctrl-C,
    a NaN loss, a refused point, a full disk) is not said a second time with a traceback."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logger = logging.getLogger("optuna")
    if not any(isinstance(h, OptunaLines) for h in logger.handlers):
        optuna.logging.disable_default_handler()
        logger.addHandler(OptunaLines())
    return optuna


class OptunaLines(logging.StreamHandler):
    """Optuna's warnings as it prints them, but none for a failure the harness reports in its own line
    (a trial failed by Ctrl-C, a NaN loss, a refused point, a full disk, another worker's stale sweep)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("[%(levelname).1s %(asctime)s] %(message)s"))
        # Optuna says a failed trial in two warnings, the error's and then its value's ("failed with
        # value None"); the second, with no error attached, follows from the same place and thread.
        self._follow_up: tuple[int | None, str] | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        from optuna.exceptions import UpdateFinishedTrialError  # a paused worker's trial: the worker says so

        error = record.exc_info[1] if record.exc_info else None
        origin = (record.thread, record.pathname)
        if error is None and self._follow_up == origin:
            self._follow_up = None
            return False
        known = (KeyboardInterrupt, CAEError, TrialStopped, SkippedTrial, UpdateFinishedTrialError)
        said = isinstance(error, known) or (error is not None and disk_full(error))
        self._follow_up = origin if said else None
        return not said


def make_sampler(cfg: SearchConfig, seed: int, conditional: bool = False) -> Any:
    """The Optuna sampler ``cfg.sampler`` names, seeded with ``seed``."""
    optuna = optuna_module()
    s = cfg.sampler
    with warnings.catch_warnings():  # GPSampler and TPE's `group` are "experimental"
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if s.name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if s.name == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed)
        if s.name == "gp":  # Gaussian-process Bayesian optimisation; needs PyTorch (pip install torch)
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=s.n_startup_trials)
        # TPE: multivariate with constant_liar by default in Optuna 5, so parallel workers spread out.
        # A space with conditional parameters needs `group` to keep modelling them jointly.
        grouped = {"multivariate": True, "group": True} if conditional else {}
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=s.n_startup_trials, **grouped)


def resumed_seed(seed: int, worker: int, trials: int) -> int:
    """The sampler seed of a worker that finds ``trials`` trials in its study.

    Seeding a resumed study as a new one would repeat the first run's random draws; mixing in the
    trial count gives each resume new draws, still the same ones for the same study history.
    """
    if trials == 0:
        return seed + worker  # a new study: seed, seed + 1, ... as the config says
    import numpy as np

    return int(np.random.SeedSequence([seed, worker, trials]).generate_state(1)[0])


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


def create_or_load_study(
    cfg: SearchConfig,
    space: SearchSpace,
    storage: Any,
    first_points: Sequence[dict[str, Any]] = (),
    extra: dict[str, Any] | None = None,
) -> Any:
    """Create the study (or load it to resume); a new one is given ``first_points`` to run first.

    ``extra`` attributes are stored with a new study (e.g. a colorization study's lineage), so workers on
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
    if not study.trials and attrs.UID not in study.user_attrs:
        study.set_user_attr(attrs.UID, uuid.uuid4().hex[:12])  # tells this study from an older one of that name
    if not study.trials:
        for key, value in {
            attrs.SPACE: str(space.path),
            attrs.OBJECTIVES: list(cfg.objectives),
            **(extra or {}),
        }.items():
            study.set_user_attr(key, value)
        for point in first_points:
            study.enqueue_trial(point["params"], user_attrs=point.get("attrs", {}))
    return study


def state_name(trial: Any) -> str:
    """COMPLETE / PRUNED / FAIL / RUNNING ..., with skipped trials (FAIL in Optuna) as SKIPPED."""
    skipped = attrs.fail_reason(trial).startswith(SKIPPED)
    return "SKIPPED" if skipped else trial.state.name


def state_counts(study: Any) -> Counter[str]:
    return Counter(state_name(t) for t in study.get_trials(deepcopy=False))


def count(study: Any, states: Sequence[str]) -> int:
    optuna = optuna_module()
    wanted = tuple(getattr(optuna.trial.TrialState, s) for s in states)
    return len(study.get_trials(deepcopy=False, states=wanted))


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

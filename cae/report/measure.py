"""From the study, its exported best trial and the two retrains to the report's plain values.

The study is only read (trials, their states and times, its attributes); importances come from
``cae.search.study`` (fANOVA), the one place that talks to Optuna.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from cae.codec import BaselinePoint
from cae.config import SearchConfig
from cae.data import Splits
from cae.hardware import machine
from cae.report.data import BestTrial, Importance, ReportData, Retrained
from cae.report.locations import repo_relative, shown_storage
from cae.report.points import Point, front_points, importance, pareto_front, size_correlations, thumbnail_psnr


@dataclass(frozen=True)
class Inputs:
    """What ``build`` gathered before measuring: the study, the best trial, the retrains, the thumbnail curves."""

    cfg: SearchConfig
    study: Any  # an Optuna study, read only
    points: list[Point]
    best: dict[str, Any]  # the validated best.json
    budget: int
    splits: Splits
    reference: dict[str, Any]  # retrain records (see ``retrain``)
    top: dict[str, Any]
    test_curve: list[BaselinePoint]
    val_curve: list[BaselinePoint]
    parent_run_id: str | None
    colorization: str | None = None
    front_test: dict[int, float] | None = None  # front trial -> its own model's test PSNR


def measure(inputs: Inputs, command: str) -> ReportData:
    """Every number and name the Markdown states, but the figures (``build`` adds those drawn); no side effects."""
    cfg, study, best = inputs.cfg, inputs.study, inputs.best
    trials = study.get_trials(deepcopy=False)
    wall, trial_seconds = study_times(trials)
    rho_code, rho_params = size_correlations(inputs.points)
    return ReportData(
        study=cfg.study, generated=time.strftime("%Y-%m-%d %H:%M"), command=command, machine=machine(),
        data_source=inputs.splits.data_source, data_location=repo_relative(inputs.splits.location),
        split=inputs.splits.sizes, seed=inputs.splits.seed, parent_run_id=inputs.parent_run_id,
        storage=shown_storage(cfg.storage), states=dict(sorted(_state_counts(study).items())),
        objectives=list(study.user_attrs.get("objectives", ["best_val_loss"])),
        epochs_per_trial=best["config"]["train"]["epochs"], wall_seconds=wall, trial_seconds=trial_seconds,
        space=repo_relative(str(study.user_attrs.get("space", cfg.space))),
        best=BestTrial(best["trial_number"], best["best_val_loss"], best["mlflow_run_id"], dict(best["params"]),
                       best["n_params"], best["latent_values"], best["bottleneck_values"]),
        budget=inputs.budget,
        reference=retrained(inputs.reference, inputs.test_curve), top=retrained(inputs.top, inputs.test_curve),
        rho_code=rho_code, rho_params=rho_params, n_completed=len(inputs.points),
        single_objective=len(study.directions) == 1,
        front=front_points(pareto_front(inputs.points), inputs.val_curve, inputs.front_test or {},
                           inputs.test_curve),
        importances=importances(study, inputs.points),
        colorization=inputs.colorization,
        thumb_largest=(inputs.val_curve[-1].values, inputs.val_curve[-1].psnr) if inputs.val_curve else None,
    )  # fmt: skip


def retrained(record: dict[str, Any], test_curve: list[BaselinePoint]) -> Retrained:
    """A retrain record as a table row, beside the thumbnail codec on the same test images."""
    return Retrained(
        label=record["label"], run_id=record["run_id"], n_params=record["n_params"],
        code_values=record["code_values"], latent_values=record["latent_values"], test_mse=record["test_mse"],
        test_psnr=record["test_psnr"], test_ssim=record["test_ssim"], q8_psnr=record["test_q8_psnr"],
        seconds_per_epoch=record["seconds_per_epoch"],
        thumb_at_code=thumbnail_psnr(test_curve, record["code_values"]),
        thumb_at_latent=thumbnail_psnr(test_curve, record["latent_values"]),
    )  # fmt: skip


def importances(study: Any, points: list[Point]) -> list[Importance]:
    """fANOVA shares of validation MSE's variance, largest first; none below two completed trials."""
    from cae.search.study import importances as fanova

    if len(points) < 2:
        return []
    return [importance(name, share, points) for name, share in fanova(study).items()]


def study_times(trials: list[Any]) -> tuple[float, float]:
    """(first start to last finish, summed trial time) in seconds; NaN wall time if nothing finished."""
    started = min((t.datetime_start for t in trials if t.datetime_start), default=None)
    ended = max((t.datetime_complete for t in trials if t.datetime_complete), default=None)
    wall = (ended - started).total_seconds() if started and ended else float("nan")
    trial_seconds = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in trials
                        if t.datetime_complete and t.datetime_start)  # fmt: skip
    return wall, trial_seconds


def _state_counts(study: Any) -> dict[str, int]:
    from cae.search.study import state_counts

    return dict(state_counts(study))

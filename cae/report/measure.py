"""From the study, its scored models and the baseline tables to the report's plain values: no side effects.

``build`` gathers the inputs (the study, the exported best, each scored model's numbers, PCA's and
the thumbnail's PSNR on each set of images); this turns them into a :class:`ReportData`. The
study is only read (trials, their states and times, its attributes); importances come from
``cae.search.study`` (fANOVA), the one place that talks to Optuna.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from cae.baselines import BaselineTable
from cae.hardware import machine
from cae.metrics import psnr_from_mse
from cae.report.data import Against, BestTrial, FrontPoint, Importance, ReportData, ScoredModel, StoppedPoint
from cae.report.locations import repo_relative, shown_storage
from cae.report.points import MIN_FOR_IMPORTANCES, Point, importance, pareto_front, size_correlations
from cae.search import attrs
from cae.search.retry import retried
from cae.search.study import importances as fanova
from cae.search.study import state_counts
from cae.search_config import SearchConfig


@dataclass(frozen=True)
class Inputs:
    """What ``build`` gathered before measuring."""

    cfg: SearchConfig
    study: Any  # an Optuna study, read only
    points: list[Point]
    best: dict[str, Any]  # the validated best.json
    budget: int
    data: dict[str, Any]  # data_source, location, sizes (train, val, test), seed
    reference: dict[str, Any]  # scored-model records (see ``build.score``)
    reference_val_psnr: float  # the reference baseline run's validation PSNR
    top: dict[str, Any]
    tables: dict[str, BaselineTable]  # "val", "test", "photos"
    parent_run_id: str | None
    front_scored: dict[int, dict[str, Any]] = field(default_factory=dict)  # front trial -> its own model's record
    ablation: list[dict[str, Any]] = field(default_factory=list)  # the enqueued points' own models
    colorization: str | None = None


def against(table: BaselineTable | None, code_values: int, latent_values: int) -> Against:
    """The baselines at a model's code size (float) and at its 8-bit latent's bytes, from a table."""
    if table is None:
        return Against()
    return Against(table.pca.get(code_values), table.pca_q8.get(latent_values), table.thumb(code_values))


def scored(record: dict[str, Any], tables: dict[str, BaselineTable]) -> ScoredModel:
    """A scored model's record as a row, beside the baselines on the same images."""
    code, latent = record["code_values"], record["latent_values"]
    return ScoredModel(
        label=record["label"],
        run_id=record["run_id"],
        epochs=record["epochs"],
        retrained=record["retrained"],
        n_params=record["n_params"],
        code_values=code,
        latent_values=latent,
        test_mse=record["test_mse"],
        test_psnr=record["test_psnr"],
        test_ssim=record["test_ssim"],
        q8_psnr=record["test_q8_psnr"],
        seconds_per_epoch=record["seconds_per_epoch"],
        test=against(tables.get("test"), code, latent),
        photos_psnr=record.get("photos_psnr"),
        photos=against(tables.get("photos"), code, latent),
    )


def measure(inputs: Inputs, command: str) -> ReportData:
    """Every number and name the Markdown states, but the figures (``build`` adds those drawn)."""
    cfg, study, best, tables = inputs.cfg, inputs.study, inputs.best, inputs.tables
    trials = study.get_trials(deepcopy=False)
    wall, trial_seconds = study_times(trials)
    rho_code, rho_params = size_correlations(inputs.points)
    front = [
        FrontPoint(
            p.trial,
            p.code_values,
            p.n_params,
            p.val_loss,
            against(tables.get("val"), p.code_values, p.code_values),
            scored(inputs.front_scored[p.trial], tables) if p.trial in inputs.front_scored else None,
        )
        for p in pareto_front(inputs.points)
    ]
    test = tables.get("test")
    grid = sorted({r["code_values"] for r in [inputs.top, *inputs.ablation]})
    return ReportData(
        study=cfg.study,
        generated=time.strftime("%Y-%m-%d %H:%M"),
        command=command,
        machine=machine(),
        data_source=inputs.data["data_source"],
        data_location=repo_relative(inputs.data["location"]),
        split=tuple(inputs.data["sizes"]),
        seed=inputs.data["seed"],
        parent_run_id=inputs.parent_run_id,
        storage=shown_storage(cfg.storage),
        states=dict(sorted(_state_counts(study).items())),
        objectives=list(study.user_attrs.get(attrs.OBJECTIVES, ["best_val_loss"])),
        epochs_per_trial=best["config"]["train"]["epochs"],
        wall_seconds=wall,
        trial_seconds=trial_seconds,
        space=repo_relative(str(study.user_attrs.get(attrs.SPACE, cfg.space))),
        best=BestTrial(
            best["trial_number"],
            best["best_val_loss"],
            best["mlflow_run_id"],
            dict(best["params"]),
            best["n_params"],
            best["latent_values"],
            best["bottleneck_values"],
        ),
        budget=inputs.budget,
        reference=scored(inputs.reference, tables),
        top=scored(inputs.top, tables),
        rho_code=rho_code,
        rho_params=rho_params,
        n_completed=len(inputs.points),
        single_objective=len(study.directions) == 1,
        front=front,
        ablation=[scored(r, tables) for r in inputs.ablation],
        stopped=stopped_points(study, tables.get("val")),
        pca_test={k: test.pca[k] for k in grid if test and k in test.pca},
        pca_q8_test={k: test.pca_q8[k] for k in grid if test and k in test.pca_q8},
        importances=importances(study, inputs.points),
        colorization=inputs.colorization,
    )


def stopped_points(study: Any, val: BaselineTable | None) -> list[StoppedPoint]:
    """The enqueued points that were pruned or failed, with how far they got (their kept epochs)."""
    out = []
    trials = study.get_trials(deepcopy=False)
    stood_in_for = retried(trials)  # a point stopped and queued again is told by its retry
    for t in trials:
        if attrs.enqueued(t) is None or t.state.name in ("COMPLETE", "RUNNING", "WAITING"):
            continue
        if t.number in stood_in_for:
            continue
        values = t.intermediate_values
        sizes = [t.user_attrs[k] for k in ("latent_values", "bottleneck_values") if k in t.user_attrs]
        code = min(sizes) if sizes else None
        pca_val = val.pca.get(code) if val and code else None
        epochs, val_psnr = (max(values) + 1, psnr_from_mse(min(values.values()))) if values else (0, None)
        rungs = attrs.rung_values(t.user_attrs)
        if not values and rungs:
            # A two-objective trial reports no epochs to Optuna; its rungs hold the margin over PCA
            # on validation at the rung's epoch (ReconstructionTask.rung_value).
            epochs = max(rungs)
            val_psnr = pca_val + rungs[epochs] if pca_val is not None else None
        out.append(
            StoppedPoint(
                trial=t.number,
                label=str(attrs.enqueued(t)),
                state=t.state.name,
                epochs=epochs,
                val_psnr=val_psnr,
                code_values=code,
                pca_val=pca_val,
            )
        )
    return out


def importances(study: Any, points: list[Point]) -> list[Importance]:
    """fANOVA shares of validation MSE's variance, largest first; none below ``MIN_FOR_IMPORTANCES`` trials."""
    if len(points) < MIN_FOR_IMPORTANCES:
        return []
    return [importance(name, share, points) for name, share in fanova(study).items()]


def study_times(trials: list[Any]) -> tuple[float, float]:
    """(first start to last finish, summed trial time) in seconds; NaN wall time if nothing finished."""
    started = min((t.datetime_start for t in trials if t.datetime_start), default=None)
    ended = max((t.datetime_complete for t in trials if t.datetime_complete), default=None)
    wall = (ended - started).total_seconds() if started and ended else float("nan")
    trial_seconds = sum(
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in trials
        if t.datetime_complete and t.datetime_start
    )
    return wall, trial_seconds


def _state_counts(study: Any) -> dict[str, int]:
    return dict(state_counts(study))

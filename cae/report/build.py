"""`cae report`: ``reports/<study>/search.md``, a search written up for a supervisor.

Study summary, best parameters, the reference and the best trial retrained at the same epoch
budget and scored on the test split (with the no-learning thumbnail codec at equal code size and
the latent quantised to 8 bits), the loss-curve comparison, reconstruction grids, what mattered
(fANOVA importances, size vs error with rank correlations) and the rate–distortion picture.
"Best" and the Pareto front are chosen on validation; the test split scores the chosen points only.

This module runs the steps: load → retrain (``retrain``) → figures (``figures``) → numbers
(``measure``) → Markdown (``render``) → write and log to the study's parent run.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from cae.codec import baseline_curve
from cae.config import SearchConfig
from cae.data import Splits, load_splits
from cae.errors import CAEError
from cae.paths import ensure_dir, reports_dir, study_dir, write_text_atomic
from cae.report.data import ReportData
from cae.report.figures import plot_rate_distortion, plot_size_vs_error, reconstruction_grid
from cae.report.measure import Inputs, measure
from cae.report.points import Point, completed_points, pareto_front
from cae.report.render import render
from cae.report.retrain import retrain_configs, retrain_pair
from cae.tracking import Run, Tracker

OPTUNA_FIGURES = ("param_importances", "optimization_history", "pareto_front")  # the ones the report shows
COLORIZATION = "colorization.md"  # written next to search.md by `make colorize-best`


def build_report(
    cfg: SearchConfig, *, epochs: int | None = None, data: dict[str, Any] | None = None, tracker: Tracker | None = None
) -> Path:
    """Write ``reports/<study>/search.md`` (+ images) and log them to the study's parent run.

    The reference and the best trial are retrained for ``epochs`` (default: the search's) on the
    study's data, or on ``data`` overrides (``data.source``, ``data.subset``, ``seed``): a search
    run on a subset can be retrained on the full split.
    """
    from cae.search.best import read_best

    tracker = tracker or Tracker()
    study, points = _load(cfg)
    best = read_best(cfg.study)
    reference_trial = next((t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("reference")), None)
    budget, best_config, reference_config = retrain_configs(
        best, reference_trial.params if reference_trial else None, epochs, data
    )
    out = ensure_dir(reports_dir() / cfg.study)
    splits = load_splits(best_config.data.source, best_config.seed, best_config.data.subset)
    parent_id = tracker.find_study_parent(cfg.study)
    ref, top = retrain_pair(best_config, reference_config, best["trial_number"], cfg.study, splits, tracker)
    inputs = Inputs(
        cfg=cfg, study=study, points=points, best=best, budget=budget, splits=splits, reference=ref, top=top,
        test_curve=baseline_curve(splits.x_test), val_curve=baseline_curve(splits.x_val), parent_run_id=parent_id,
        colorization=COLORIZATION if (out / COLORIZATION).exists() else None,
        front_test=front_test_psnr(cfg.study, pareto_front(points), splits),
    )  # fmt: skip
    numbers = measure(inputs, report_command(cfg.study, epochs, data or {}))
    numbers = replace(numbers, images=_figures(inputs, numbers, out, tracker))
    report = out / "search.md"
    write_text_atomic(report, render(numbers))
    if parent_id:
        run = Run(tracker, parent_id)
        run.log_artifact(report, "report")
        for name in numbers.images.values():
            run.log_artifact(out / name, "report")
    return report


def _load(cfg: SearchConfig) -> tuple[Any, list[Point]]:
    """The study and its completed trials; a one-line error when there is nothing to report."""
    from cae.search.study import load_existing_study, state_counts

    study = load_existing_study(cfg)
    points = completed_points(study)
    if not points:
        states = state_counts(study)
        raise CAEError(
            f"study {cfg.study!r} has no completed trial "
            f"({', '.join(f'{n} {s}' for s, n in sorted(states.items())) or 'no trials'}): "
            "nothing to report; run more trials with `make search`"
        )
    return study, points


def _figures(inputs: Inputs, numbers: ReportData, out: Path, tracker: Tracker) -> dict[str, str]:
    """Draw (or copy) every figure into ``out``; returns figure key -> file name for those that exist."""
    from cae.compare import compare
    from cae.search.figures import save_optuna_plots

    cfg, ref, top, number = inputs.cfg, inputs.reference, inputs.top, inputs.best["trial_number"]
    images: dict[str, str] = {}
    try:
        _, png, _ = compare([cfg.study], top=5, tracker=tracker, out_dir=out)
        images["compare"] = png.name
    except CAEError as err:
        print(f"note: no comparison plot ({err})")
    for p in save_optuna_plots(inputs.study, study_dir(cfg.study) / "plots"):
        if p.stem in OPTUNA_FIGURES:
            shutil.copy(p, out / p.name)
            images[p.stem] = p.name
    models = [(f"reference\n{ref['test_psnr']:.1f} dB", ref["model"]),
              (f"best #{number}\n{top['test_psnr']:.1f} dB", top["model"])]  # fmt: skip
    title = f"{cfg.study}: test images, {inputs.budget}-epoch retrains"
    reconstruction_grid(inputs.splits, models, out / "reconstructions.png", title)
    images["reconstructions"] = "reconstructions.png"
    plot_size_vs_error(inputs.points, numbers.rho_code, numbers.rho_params, out / "size_vs_error.png")
    images["size_vs_error"] = "size_vs_error.png"
    scored = [(r["label"], r["code_values"], r["test_psnr"]) for r in (ref, top)]
    plot_rate_distortion(inputs.points, pareto_front(inputs.points), inputs.val_curve, out / "rate_distortion.png",
                         scored)  # fmt: skip
    images["rate_distortion"] = "rate_distortion.png"
    return images


def report_command(study: str, epochs: int | None, data: dict[str, Any]) -> str:
    """The `make report` call that reproduces this report (its make variables, as given)."""
    names = {"data.source": "DATA", "data.subset": "SUBSET", "seed": "SEED"}
    args = [f"EPOCHS={epochs}"] if epochs else []
    args += [f"{names[k]}={0 if k == 'data.subset' and v is None else v}" for k, v in data.items() if k in names]
    return " ".join(["make report", f"STUDY={study}", *args])


def front_test_psnr(study: str, front: list[Point], splits: Splits) -> dict[int, float]:
    """Each front trial's own model (kept by a two-objective study) scored once on the test split."""
    import keras

    from cae.train import evaluate

    out = {}
    for p in front:
        path = study_dir(study) / "models" / f"trial-{p.trial}.keras"
        if path.exists():
            keras.backend.clear_session()
            scores, _ = evaluate(keras.models.load_model(path, compile=False), splits.x_test)
            out[p.trial] = scores["test_psnr"]
    return out

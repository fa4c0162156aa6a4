"""`cae report` (``make report``): ``runs/<study>/report/search.md``, a search written up for a supervisor.

The steps: load the study and its exported best → the models to score (each trial's own model, the
study trained them to the length they are quoted at; ``EPOCHS=`` or data overrides retrain the
reference and the best instead) → the baseline tables (PCA and the thumbnail on validation, test
and the photo tiles) → figures → numbers (``measure``) → Markdown (``render``) → ``publish``.
"Best" and the front are chosen on validation; the test split scores the chosen models only.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from cae.baseline_runs import baseline_runs
from cae.baselines import PCA_VALUES, baseline_table, pca_basis
from cae.colorize.photos import photo_tiles
from cae.compare import compare
from cae.data import Splits, splits_for
from cae.errors import CAEError
from cae.paths import ensure_dir, report_dir, study_dir
from cae.report.data import ReportData
from cae.report.figures import plot_rate_distortion, plot_search_progress, plot_size_vs_error, reconstruction_grid
from cae.report.measure import Inputs, measure
from cae.report.points import MIN_FOR_IMPORTANCES, Point, completed_points, pareto_front
from cae.report.publish import publish
from cae.report.render import render
from cae.report.retrain import retrain, retrain_config
from cae.report.score import score
from cae.search import attrs
from cae.search.best import load_best_model, read_best
from cae.search.figures import save_optuna_plots
from cae.search.study import load_existing_study, state_counts
from cae.search_config import SearchConfig
from cae.tracking import Tracker

OPTUNA_FIGURES = ("param_importances", "optimization_history", "pareto_front")  # the ones the report shows
COLORIZATION = "colorization.md"  # written next to search.md by `make colorize-best`


def _same_data(data: dict[str, Any], splits: Any, recorded: dict[str, Any], best: dict[str, Any]) -> bool:
    """Whether the ``data`` overrides name the data the best trial trained on: its images (the data
    source's digest, whatever the path is called), its subset and its seed. A study extended onto
    other data (``EXTEND=1``) records only the latest digest, so any data override there retrains."""
    if any({"data_digest", "subset"} & set(e.get("changed", {})) for e in recorded.get("extensions", [])):
        return not data
    trained = {
        "data.source": recorded.get("data_digest"),
        "data.subset": best["config"]["data"].get("subset"),
        "seed": best["config"].get("seed"),
    }
    given = {"data.source": splits.digest, "data.subset": data.get("data.subset"), "seed": data.get("seed")}
    return all(given[key] == trained[key] for key in data)


def build_report(
    cfg: SearchConfig, *, epochs: int | None = None, data: dict[str, Any] | None = None, tracker: Tracker | None = None
) -> Path:
    """Write ``runs/<study>/report/search.md`` (+ images) and log them to the study's parent run.

    Without ``epochs`` or other ``data`` than the study's the trials' own models are scored; with them
    the best is retrained for ``epochs`` (default: the search's) on the study's data or on ``data``
    (``data.source``, ``data.subset``, ``seed``). The reference CAE is a baseline run at the same length
    (:mod:`cae.baseline_runs`: trained once per split and length, cached).
    """
    import keras

    tracker = tracker or Tracker()
    study, points = _load(cfg)
    best = read_best(cfg.study)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    budget, best_config = retrain_config(best, epochs, data)
    splits = splits_for(best_config)
    # DATA= naming the very data the best trial trained on (see _same_data) is no other data:
    # the trials' own models are scored, not retrained (a 30-epoch retrain of a hybrid is ~40 min on 2 cores).
    own = epochs is None and _same_data(data or {}, splits, study.user_attrs, best)
    if own:
        top = score(load_best_model(cfg.study)[0], splits, **_own(trials[best["trial_number"]], "best", best))
    else:
        top = retrain(best_config, f"best-trial-{best['trial_number']}", cfg.study, splits, tracker)
    held = baseline_runs(splits, best["code_values"], best_config, budget, tracker).reference
    ref = score(
        keras.models.load_model(held["model"], compile=False),
        splits,
        label="reference CAE (baseline run)",
        run_id=held["run_id"],
        epochs=held["epochs"],
        retrained=False,
        seconds_per_epoch=held["seconds_per_epoch"],
    )
    front = {p.trial: m for p in pareto_front(points) if (m := _own_model(cfg.study, trials[p.trial], splits))}
    ablation = [
        m
        for t in trials.values()
        if attrs.enqueued(t) is not None and t.state.name == "COMPLETE"
        if (m := _own_model(cfg.study, t, splits))
    ]
    scored = [ref, top, *front.values(), *ablation]
    inputs = Inputs(
        cfg=cfg,
        study=study,
        points=points,
        best=best,
        budget=budget,
        data={
            "data_source": splits.data_source,
            "location": splits.location,
            "sizes": splits.sizes,
            "seed": splits.seed,
        },
        reference=ref,
        reference_val_psnr=held["val_psnr"],
        top=top,
        tables=_tables(splits, points, scored),
        parent_run_id=tracker.find_study_parent(cfg.study),
        front_scored=front,
        ablation=ablation,
        colorization=COLORIZATION if (report_dir(cfg.study) / COLORIZATION).exists() else None,
    )
    out = ensure_dir(report_dir(cfg.study))
    numbers = measure(inputs, report_command(cfg.study, epochs, data or {}))
    models = {m["run_id"]: m["model"] for m in scored}
    numbers = replace(numbers, images=_figures(inputs, numbers, out, tracker, models, splits))
    return publish(
        out / "search.md",
        render(numbers),
        tracker=tracker,
        runs=[inputs.parent_run_id],
        figures=numbers.images.values(),
    )


def _own(trial: Any, label: str, record: dict[str, Any] | None = None) -> dict[str, Any]:
    """The scoring labels of a trial's own model: its run, epochs and time per epoch."""
    epochs = (record or {}).get("epochs") or (
        max(trial.intermediate_values) + 1 if trial.intermediate_values else trial.user_attrs.get("epochs_run", 0)
    )
    seconds = trial.user_attrs.get("seconds_per_epoch") or trial.user_attrs.get("seconds", 0.0) / max(1, epochs)
    return {
        "label": label,
        "run_id": attrs.run_id(trial) or "?",
        "epochs": epochs,
        "retrained": False,
        "seconds_per_epoch": seconds,
    }


def _own_model(study: str, trial: Any, splits: Splits) -> dict[str, Any] | None:
    """A trial's own model (kept under runs/<study>/models/) scored, or None if it was not kept."""
    import keras

    path = study_dir(study) / "models" / f"trial-{trial.number}.keras"
    if trial.state.name != "COMPLETE" or not path.exists():
        return None
    keras.backend.clear_session()
    label = f"trial {trial.number}"
    return score(keras.models.load_model(path, compile=False), splits, **_own(trial, label))


def _tables(splits: Splits, points: list[Point], scored: list[dict[str, Any]]) -> dict[str, Any]:
    """PCA and the thumbnail at every size the report names, on validation, test and the photo tiles."""
    basis = pca_basis(splits)
    sizes = {*PCA_VALUES, *(p.code_values for p in points)}
    sizes |= {m[k] for m in scored for k in ("code_values", "latent_values")}
    tiles, _ = photo_tiles()
    return {
        "val": baseline_table(basis, splits.x_val, sizes, "validation"),
        "test": baseline_table(basis, splits.x_test, sizes, "test"),
        "photos": baseline_table(basis, tiles, sizes, "photo tiles"),
    }


def _load(cfg: SearchConfig) -> tuple[Any, list[Point]]:
    """The study and its completed trials; a one-line error when there is nothing to report."""
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


def _figures(
    inputs: Inputs, numbers: ReportData, out: Path, tracker: Tracker, models: dict[str, Any], splits: Splits
) -> dict[str, str]:
    """Draw (or copy) every figure into ``out``; returns figure key -> file name for those that exist."""
    cfg = inputs.cfg
    images: dict[str, str] = {}
    try:
        _, png, _ = compare([cfg.study], top=5, tracker=tracker, out_dir=out)
        images["compare"] = png.name
    except CAEError as err:
        print(f"note: no comparison plot ({err})")
    for p in save_optuna_plots(inputs.study, study_dir(cfg.study) / "plots"):
        if p.stem in OPTUNA_FIGURES and (p.stem != "param_importances" or numbers.importances):
            shutil.copy(p, out / p.name)
            images[p.stem] = p.name
    ref, top = numbers.reference, numbers.top
    grid = [
        (f"reference\n{ref.test_psnr:.1f} dB", models[ref.run_id]),
        (f"best #{numbers.best.number}\n{top.test_psnr:.1f} dB", models[top.run_id]),
    ]
    how = "their own models" if not top.retrained else f"{inputs.budget}-epoch retrains"
    reconstruction_grid(splits, grid, out / "reconstructions.png", f"{cfg.study}: test images, {how}")
    images["reconstructions"] = "reconstructions.png"
    if numbers.single_objective:  # one code size: the search in dB over PCA there, against the baselines
        code = numbers.best.latent_values
        val = inputs.tables["val"]
        lines = {f"reference CAE ({ref.epochs} epochs)": inputs.reference_val_psnr, "thumbnail": val.thumb(code)}
        plot_search_progress(inputs.study.get_trials(deepcopy=False), val.pca[code], lines, out / "search_progress.png")
        images["search_progress"] = "search_progress.png"
        return images
    if numbers.n_completed >= MIN_FOR_IMPORTANCES:  # fewer: the report says there are too few to tell
        plot_size_vs_error(inputs.points, numbers.rho_code, numbers.rho_params, out / "size_vs_error.png")
        images["size_vs_error"] = "size_vs_error.png"
    shown = [numbers.top, *(p.scored for p in numbers.front if p.scored and p.scored.run_id != top.run_id)]
    plot_rate_distortion(
        inputs.points, pareto_front(inputs.points), inputs.tables["val"], out / "rate_distortion.png", shown
    )
    images["rate_distortion"] = "rate_distortion.png"
    return images


def report_command(study: str, epochs: int | None, data: dict[str, Any]) -> str:
    """The `make report` call that reproduces this report (its make variables, as given)."""
    names = {"data.source": "DATA", "data.subset": "SUBSET", "seed": "SEED"}
    args = [f"EPOCHS={epochs}"] if epochs else []
    args += [f"{names[k]}={0 if k == 'data.subset' and v is None else v}" for k, v in data.items() if k in names]
    return " ".join(["make report", f"STUDY={study}", *args])

"""`runs/<study>/report/colorization-search.md`: the colorization study's front, measured and written up.

:func:`measure` gathers the numbers from models already trained (``cae.colorize.search.report_models``
trains them), :func:`cae.colorize.search_render.render` writes the Markdown from those numbers alone
(both tested without training), and :func:`write_search_report` registers the chosen model, draws,
writes and logs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cae.colorize.classifier import Classifier
from cae.colorize.figures import front_figure, grid_figure
from cae.colorize.final import FinalModel, choose, describe, gray_and_true_accuracy, gray_photos_psnr
from cae.colorize.scoring import baselines
from cae.colorize.search_render import Measured, render
from cae.data import TRANSFORMS, Splits, to_unit
from cae.hardware import machine
from cae.paths import ensure_dir, report_dir, write_text_atomic
from cae.report.publish import publish
from cae.search import attrs
from cae.search.study import state_name
from cae.search_config import SearchConfig
from cae.tracking import Run, Tracker
from cae.tracking.registry import register_model


@dataclass(kw_only=True)
class StudyModels:
    """What the report scores, trained beforehand (``cae.colorize.search.report_models``)."""

    study: Any  # the Optuna study
    splits: Splits
    classifier: Classifier
    finals: list[FinalModel]
    oracle: FinalModel | None = None


def measure(cfg: SearchConfig, models: StudyModels) -> Measured:
    """The report's numbers from trained models and the study's trials (no training here)."""
    study, splits, classifier, finals = models.study, models.splits, models.classifier, models.finals
    front_numbers = {t.number for t in study.best_trials}
    trials = [
        {
            "number": t.number,
            "state": state_name(t),
            "recipe": describe(t.params),
            "val_psnr": t.user_attrs.get("val_psnr"),
            "val_colourfulness": t.user_attrs.get("val_colourfulness"),
            "temperature": t.user_attrs.get("temperature"),
            "front": t.number in front_numbers,
            "first": t.user_attrs.get(attrs.RECIPE, ""),
            "reason": attrs.stop_reason(t) or attrs.fail_reason(t),
        }
        for t in study.get_trials(deepcopy=False)
    ]
    starts = [t.datetime_start for t in study.trials if t.datetime_start]
    ends = [t.datetime_complete for t in study.trials if t.datetime_complete]
    return Measured(
        study=cfg.study,
        source=cfg.source_study or "",
        command=command_of(cfg),
        data={
            "data_source": splits.data_source,
            "sizes": splits.sizes,
            "seed": splits.seed,
            "machine": machine(),
            "epochs": cfg.experiment.train.epochs,
            "final_epochs": cfg.final_epochs,
            "vivid": cfg.vivid,
        },
        trials=trials,
        finals=finals,
        chosen=choose(finals, cfg.vivid).trial if finals else -1,
        baselines=baselines(splits),
        oracle=models.oracle,
        source_config=cfg.source_config,
        semantic={
            **gray_and_true_accuracy(classifier, splits),
            "classifier_acc": classifier.test_accuracy,
            "classifier_run_id": classifier.run_id,
        },
        gray_photos_psnr=gray_photos_psnr(),
        parent_run_id=study.user_attrs.get(attrs.PARENT_RUN),
        wall_hours=(max(ends) - min(starts)).total_seconds() / 3600 if starts and ends else float("nan"),
    )


def command_of(cfg: SearchConfig) -> str:
    data, subset = cfg.experiment.data.source, cfg.experiment.data.subset
    source = f"FROM={cfg.source_config}" if cfg.source_config else f"STUDY={cfg.source_study}"
    parts = [source, f"TRIALS={cfg.trials}", f"EPOCHS={cfg.experiment.train.epochs}"]
    parts += [f"FINAL_EPOCHS={cfg.final_epochs}"] if cfg.final_epochs else []
    parts += [f"SUBSET={subset}"] if subset else []
    parts += [f"DATA={data}"] if data else []
    return "make colorize-search " + " ".join(parts)


def write_search_report(cfg: SearchConfig, tracker: Tracker, models: StudyModels) -> Path:
    """Measure, register the chosen model, draw, render and log ``runs/<source>/report/colorization-search.md``."""
    m = measure(cfg, models)
    if m.finals:
        chosen = next(f for f in m.finals if f.trial == m.chosen)
        m.registered = register_chosen(cfg.study, chosen, tracker, models.splits)
    accuracies = {k: m.semantic[k] for k in ("gray_classifier_acc", "true_classifier_acc")}
    for run_id in {f.run_id for f in m.finals} | ({m.parent_run_id} if m.parent_run_id else set()):
        Run(tracker, run_id).log_metrics(accuracies)  # the semantic check's reference points, beside each model
    out = ensure_dir(report_dir(m.source))
    if m.finals:
        front_figure(m, out / "colorization-front.png")
        grid_figure(cfg, m.finals, models.splits, out / "colorization-search.png")
    return publish(
        out / "colorization-search.md",
        render(m),
        tracker=tracker,
        runs=[m.parent_run_id],
        figures=["colorization-front.png", "colorization-search.png"],
    )


def register_chosen(study: str, chosen: FinalModel, tracker: Tracker, splits: Splits) -> str | None:
    """The chosen model in the MLflow Model Registry as ``<study>``; the version goes into its JSON."""
    example = TRANSFORMS[chosen.config.data.input](to_unit(splits.x_test[:2]))
    try:
        version = register_model(tracker, run_id=chosen.run_id, name=study, model=chosen.model, example=example)
    except Exception as err:  # a registry problem must not lose the study's report
        print(f"note: the chosen model was not registered ({type(err).__name__}: {str(err)[:200]})")
        return None
    record_path = chosen.path.with_suffix(".json")
    record = json.loads(record_path.read_text())
    write_text_atomic(
        record_path, json.dumps({**record, "registered_model": {"name": study, "version": version}}, indent=2)
    )
    return f"models:/{study}/{version}"


# --------------------------------------------------------------------------------------------

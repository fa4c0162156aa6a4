"""`cae colorize` (`make colorize-best`): colour from grayscale, starting from a search's best architecture.

The best trial's architecture, learning rate and batch size (``runs/<study>/best.json``, or an
explicit experiment ``--config``) are rebuilt with a 1-channel BT.601 luma input and trained on
the same split, once per variant (``--variant``: see :mod:`cae.colorize.variants`).

Every variant is an MLflow run tagged ``stage=colorization`` with lineage tags back to the
reconstruction trial; ``runs/<study>/report/colorization.md`` compares them with two no-learning
baselines (gray copied to RGB; gray plus the training set's mean chroma).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from cae.colorize.render import render
from cae.colorize.scoring import COLLAPSED, baselines, calibrate_gain, colour_scores, predict_rgb, saturate
from cae.colorize.variants import (
    capped,
    check_variants,
    default_variants,
    source_architecture,
    variant_config,
    warm_start,
)
from cae.config import ExperimentConfig
from cae.data import CLASSES, Splits, load_splits, luma, to_unit
from cae.errors import CAEError
from cae.hardware import machine
from cae.metrics import per_class_mse, psnr_from_mse
from cae.paths import ensure_dir, report_dir
from cae.plots import image_grid
from cae.report.publish import publish
from cae.search.best import load_best_model
from cae.tags import colorize_best_experiment
from cae.tracked_training import grid_indices, run_experiment
from cae.tracking import Run, Tracker
from cae.train import build_model, predict


def evaluate_variant(
    model: Any, config: ExperimentConfig, splits: Splits, vivid: float | None = None
) -> dict[str, Any]:
    """Test scores; with ``vivid``, also with a chroma gain set on validation to reach it.

    MSE regression predicts the conditional mean colour, whose spread is only the correlation
    between prediction and truth times the true spread; a gain trades a little MSE (flat near
    its optimum) for colours as vivid as asked. The gain is chosen on validation, never on test.
    """
    oracle = config.model.semantic_oracle  # the bound takes the true class as its second input
    truth = to_unit(splits.x_test)
    pred = np.clip(predict(model, splits.x_test, config.data.input, splits.y_test if oracle else None), 0, 1)
    pred_luma, true_luma = luma(pred), luma(truth)
    scores = {
        **colour_scores(pred, truth),
        # How much of the error is brightness the network was given and lost (the bottleneck).
        "luma_psnr": psnr_from_mse(float(np.mean((pred_luma - true_luma) ** 2))),
        "per_class_mse": per_class_mse(pred, truth, splits.y_test),
    }
    # A collapsed network's chroma is noise around a constant; a gain would only amplify the noise.
    if vivid is not None and COLLAPSED <= scores["test_colourfulness"] < vivid:
        val_pred = np.clip(predict(model, splits.x_val, config.data.input, splits.y_val if oracle else None), 0, 1)
        gain = calibrate_gain(val_pred, to_unit(splits.x_val), vivid)
        scores["vivid"] = {"gain": gain, **colour_scores(saturate(pred, gain), truth)}
    return scores


def colorize(
    study: str | None = None,
    *,
    config_path: str | None = None,
    variants: Sequence[str] | None = None,
    overrides: dict[str, Any] | None = None,
    tracker: Tracker | None = None,
    vivid: float | None = 0.7,
    source: tuple[ExperimentConfig, dict[str, Any]] | None = None,
) -> Path:
    """Train the variants (default: :func:`default_variants` of the source), score them against the
    baselines, write the report. ``source``: (config, lineage) already read (`cae colorize` checks it first)."""
    tracker = (tracker or Tracker()).check()
    base, lineage = source or source_architecture(study, config_path)
    variants = list(variants or default_variants(base))
    check_variants(variants, base)
    base = capped(base, lineage, overrides or {})
    study_name = lineage.get("source_study", Path(config_path or "colorization").stem)
    configs = {v: variant_config(base, v, overrides or {}) for v in variants}
    first = next(iter(configs.values()))
    splits = load_splits(first.data.source, first.seed, first.data.subset)
    # Its own MLflow experiment: the source study's run list stays its trials (and its parent run).
    experiment = colorize_best_experiment(study_name)
    results = {v: train_variant(v, c, splits, tracker, experiment, lineage, vivid) for v, c in configs.items()}
    command = "make colorize-best " + " ".join(
        f"{k}={v}"
        for k, v in (
            ("STUDY", lineage.get("source_study")),
            ("CONFIG", config_path),
            ("VARIANT", ",".join(variants)),
            ("EPOCHS", first.train.epochs),
            ("SUBSET", first.data.subset),
            ("DATA", first.data.source),
            ("VIVID", vivid or 0),
        )
        if v is not None
    )
    out = ensure_dir(report_dir(study_name))
    colorization_grid(
        splits,
        [(v, r["model"], r["config"]) for v, r in results.items()],
        out / "colorization.png",
        f"{study_name}: colorization on fixed test images",
    )
    data = {"data_source": splits.data_source, "sizes": splits.sizes, "seed": splits.seed, "machine": machine()}
    markdown = render(study_name, lineage, base, data, results, baselines(splits), command)
    return publish(out / "colorization.md", markdown, tracker=tracker, runs=[r["run_id"] for r in results.values()])


def train_variant(
    variant: str,
    config: ExperimentConfig,
    splits: Splits,
    tracker: Tracker,
    experiment: str,
    lineage: dict[str, Any],
    vivid: float | None,
) -> dict[str, Any]:
    """One variant trained as a tracked run, scored on test (and with a vivid chroma gain)."""
    keras.backend.clear_session()
    model = None
    if variant == "chroma-warm":
        if "source_study" not in lineage:
            raise CAEError("chroma-warm needs a study's best.keras (STUDY=), not CONFIG=")
        model = build_model(config, splits)
        warm_start(model, load_best_model(lineage["source_study"])[0])
    run_id, result, out = run_experiment(
        config,
        tracker,
        experiment=experiment,
        run_name=f"colorize-{variant}",
        splits=splits,
        model=model,
        tags={"variant": variant, **{k: str(v) for k, v in lineage.items()}},
        evaluate_test=False,
    )
    scores = evaluate_variant(result.model, config, splits, vivid)
    run = Run(tracker, run_id)
    run.log_metrics({k: v for k, v in scores.items() if isinstance(v, float)})
    if "vivid" in scores:
        run.log_metrics({f"vivid_{k}": v for k, v in scores["vivid"].items()})
    run.log_text(json.dumps(scores["per_class_mse"], indent=2), "per_class_mse.json")
    print(
        f"{variant}: test PSNR {scores['test_psnr']:.2f} dB, colourfulness {scores['test_colourfulness']:.2f} "
        f"(MLflow run {run_id})",
        flush=True,
    )
    return {
        **scores,
        "run_id": run_id,
        "n_params": result.n_params,
        "epochs": result.epochs_run,
        "seconds_per_epoch": result.seconds_per_epoch,
        "seconds": result.seconds,
        "train_loss": result.history["train_loss"],
        "model": result.model,
        "config": config,
        "loss_curve": out / "loss_curve.png",
    }


def colorization_grid(splits: Splits, models: list[tuple[str, Any, ExperimentConfig]], path: Path, title: str) -> Path:
    """Fixed test images (one per class): gray input, each model's colours, the truth."""
    idx = grid_indices(splits.y_test)
    truth = to_unit(splits.x_test[idx])
    rows = [("gray input", luma(truth))]
    labels = splits.y_test[idx]  # only a semantic oracle reads them
    rows += [(label, predict_rgb(model, splits.x_test[idx], config, labels)) for label, model, config in models]
    rows.append(("truth", truth))
    return image_grid(rows, path, title, [CLASSES[c] for c in splits.y_test[idx]])

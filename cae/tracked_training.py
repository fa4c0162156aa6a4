"""A training tracked as an MLflow run (`cae train`, the baselines, colorization variants, report retrains):
one experiment config trained, scored on the test split, its curves, figures and model logged.

Resumable: a killed run continues from its last epoch (Keras ``BackupAndRestore`` under
``runs/train/``) in the same MLflow run, so its curves have no gap.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cae import plots
from cae.callbacks import progress_callback
from cae.config import ExperimentConfig
from cae.data import CLASSES, TRANSFORMS, Splits, load_splits, to_unit
from cae.paths import ensure_dir, runs_dir
from cae.schema import flatten, to_dict
from cae.tags import run_tags, stage_of
from cae.tracking import Run, Tracker
from cae.train import TrainResult, predict, train_and_evaluate


def grid_indices(labels: np.ndarray) -> np.ndarray:
    """One fixed test image per class (the first of each), so grids compare across runs."""
    return np.array([int(np.flatnonzero(labels == c)[0]) for c in range(len(CLASSES)) if (labels == c).any()])


def run_params(config: ExperimentConfig, splits: Splits) -> dict[str, Any]:
    """The flattened config (dotted keys, as search spaces name them), then derived values
    (``derived.``: the level widths, the data's identity), which are no config keys."""
    return {**flatten(config), "derived.level_filters": list(config.model.level_filters()), **splits.describe()}


def log_outputs(run: Run, config: ExperimentConfig, splits: Splits, result: TrainResult, title: str) -> Path:
    """Metrics, loss curve, image grid, config and model of a finished training run.

    Written to ``runs/outputs/<run id>/`` (returned) and logged as artifacts.
    """
    run.log_result(result)
    out = ensure_dir(runs_dir() / "outputs" / run.run_id)
    plots.loss_curve(result.history, out / "loss_curve.png", title)
    idx = grid_indices(splits.y_test)
    truth = to_unit(splits.x_test[idx])
    labels = splits.y_test[idx] if config.model.semantic_oracle else None  # the oracle's second input
    prediction = predict(result.model, splits.x_test[idx], config.data.input, labels)
    if config.data.input == "rgb":
        rows, what = [("original", truth), ("reconstruction", prediction)], "originals over reconstructions"
    else:
        gray = TRANSFORMS[config.data.input](truth)
        rows, what = [("gray input", gray), ("predicted", prediction), ("truth", truth)], "input, prediction, truth"
    plots.image_grid(
        rows, out / "reconstructions.png", f"{title}: test images, {what}", [CLASSES[c] for c in splits.y_test[idx]]
    )
    (out / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    (out / "metrics.json").write_text(json.dumps(result.summary(), indent=2))
    result.model.save(out / "model.keras")
    for f in sorted(out.iterdir()):
        run.log_artifact(f)
    return out


def run_experiment(
    config: ExperimentConfig,
    tracker: Tracker,
    *,
    experiment: str | None = None,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
    splits: Splits | None = None,
    model: Any = None,
    evaluate_test: bool = True,
) -> tuple[str, TrainResult, Path]:
    """Train ``config`` with MLflow tracking; returns (run id, result, folder of its outputs).

    The run goes to the MLflow experiment ``experiment`` (default: the config's name).
    """
    splits = splits or load_splits(config.data.source, config.seed, config.data.subset)
    identity = [to_dict(config), experiment, run_name, tags]
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
    workdir = ensure_dir(runs_dir() / "train" / f"{config.name}-{key}")
    id_file = workdir / "mlflow_run_id"
    resumed = id_file.exists() and tracker.run_exists(id_file.read_text().strip())
    if resumed:
        run = tracker.resume_run(id_file.read_text().strip())
        print(f"resuming MLflow run {run.run_id} from {workdir}")
    else:
        shutil.rmtree(workdir)  # stale backup of a run the store no longer has
        ensure_dir(workdir)
        run = tracker.start_run(
            experiment or config.name,
            run_name or config.name,
            tags={**run_tags(stage_of(config), splits.data_source), **(tags or {})},
        )
        run.log_params(run_params(config, splits))
        run.log_datasets(splits)
        id_file.write_text(run.run_id)
    with run:
        progress = progress_callback(f"{run_name or config.name} ", config.train.epochs)
        result = train_and_evaluate(
            config,
            splits,
            callbacks=[run.epoch_callback(), progress],
            workdir=workdir,
            model=model,
            evaluate_test=evaluate_test,
        )
        n_train, n_val, n_test = splits.sizes
        title = f"{run_name or config.name}: {n_train:,}/{n_val:,}/{n_test:,} images ({Path(splits.location).name})"
        out = log_outputs(run, config, splits, result, title)
    shutil.rmtree(workdir, ignore_errors=True)  # finished: nothing left to resume
    return run.run_id, result, out

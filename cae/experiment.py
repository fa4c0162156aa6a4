"""`cae train`: one experiment config trained, scored on the test split, and logged to MLflow.

Resumable: a killed run continues from its last epoch (Keras ``BackupAndRestore`` under
``runs/train/``) in the same MLflow run, so its curves have no gap.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cae import plots
from cae.config import ExperimentConfig, flatten, to_dict
from cae.data import CLASSES, Splits, load_splits, to_unit
from cae.paths import ensure_dir, runs_dir
from cae.tracking import Run, Tracker, machine
from cae.train import TrainResult, predict, train_and_evaluate


def grid_indices(labels: np.ndarray) -> np.ndarray:
    """One fixed test image per class (the first of each), so grids compare across runs."""
    return np.array([int(np.flatnonzero(labels == c)[0]) for c in range(len(CLASSES)) if (labels == c).any()])


def run_params(config: ExperimentConfig, splits: Splits) -> dict[str, Any]:
    """The flattened config (dotted keys, as search spaces name them) and the data's identity."""
    return {**flatten(config), "model.level_filters": list(config.model.level_filters()), **splits.describe()}


def code_params(result: TrainResult) -> dict[str, int]:
    return {"n_params": result.n_params, "latent_values": result.latent_values,
            "bottleneck_values": result.bottleneck_values}


def run_tags(splits: Splits, stage: str) -> dict[str, str]:
    return {"stage": stage, "data_source": splits.data_source, "machine": machine()}


def log_outputs(run: Run, config: ExperimentConfig, splits: Splits, result: TrainResult, title: str) -> Path:
    """Metrics, loss curve, reconstruction grid, config and model of a finished training run.

    Written to a temporary folder and logged as artifacts; returns nothing to keep locally.
    """
    run.log_metrics({"best_val_loss": result.best_val_loss, **result.test})
    run.log_metrics({"seconds_per_epoch": result.seconds_per_epoch, "epochs_run": result.epochs_run})
    run.log_params(code_params(result))
    out = Path(tempfile.mkdtemp(prefix="cae-run-"))
    plots.loss_curve(result.history, out / "loss_curve.png", title)
    idx = grid_indices(splits.y_test)
    recon = predict(result.model, splits.x_test[idx], config.data.input)
    plots.image_grid(
        [("original", to_unit(splits.x_test[idx])), ("reconstruction", recon)], out / "reconstructions.png",
        f"{title}: test images (top) and reconstructions (bottom)", [CLASSES[c] for c in splits.y_test[idx]],
    )  # fmt: skip
    (out / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    (out / "metrics.json").write_text(json.dumps(result.summary(), indent=2))
    result.model.save(out / "model.keras")
    for f in sorted(out.iterdir()):
        run.log_artifact(f)
    return out


def run_experiment(config: ExperimentConfig, tracker: Tracker) -> tuple[str, TrainResult, Path]:
    """Train ``config`` with MLflow tracking; returns (run id, result, folder of its outputs)."""
    splits = load_splits(config.data.source, config.seed, config.data.subset)
    key = hashlib.sha256(json.dumps(to_dict(config), sort_keys=True).encode()).hexdigest()[:10]
    workdir = ensure_dir(runs_dir() / "train" / f"{config.name}-{key}")
    id_file = workdir / "mlflow_run_id"
    resumed = id_file.exists() and tracker.run_exists(id_file.read_text().strip())
    if resumed:
        run = tracker.resume_run(id_file.read_text().strip())
        print(f"resuming MLflow run {run.run_id} from {workdir}")
    else:
        shutil.rmtree(workdir)  # stale backup of a run the store no longer has
        ensure_dir(workdir)
        run = tracker.start_run(config.name, f"{config.name}", tags=run_tags(splits, "reconstruction"))
        run.log_params(run_params(config, splits))
        id_file.write_text(run.run_id)
    with run:
        result = train_and_evaluate(config, splits, callbacks=[run.epoch_callback()], workdir=workdir)
        out = log_outputs(run, config, splits, result, f"{config.name} ({splits.data_source})")
    shutil.rmtree(workdir, ignore_errors=True)  # finished: nothing left to resume
    return run.run_id, result, out

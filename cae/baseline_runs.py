"""The baselines of a study as runs of their own: PCA, the thumbnail and the reference CAE, never trials.

Each is computed once per data digest, split and (for the reference) training length, cached under
``runs/baselines/<split key>/`` and logged to the MLflow experiment ``baselines`` as a run tagged
``cae.role=baseline``: no sampler ever sees them, and every report and study summary reads the same
numbers. The reference is the seed's CAE (``experiments/reference.yaml``, 4,911 parameters) trained
on the study's data for the study's epochs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cae.baselines import baseline_curve, baseline_psnr_at, pca_basis, pca_point, split_key
from cae.config import ExperimentConfig, load_experiment
from cae.data import Splits
from cae.metrics import psnr_from_mse
from cae.paths import ensure_dir, project_root, runs_dir, write_text_atomic
from cae.schema import to_dict, with_overrides
from cae.tracking import Tracker

EXPERIMENT = "baselines"  # the MLflow experiment of every baseline run
REFERENCE = "experiments/reference.yaml"


@dataclass(frozen=True)
class Baselines:
    """What a study is held against at its code size: validation and test PSNR of each baseline."""

    code_values: int
    pca: dict[str, float]  # val_psnr, test_psnr, test_q8_psnr (8-bit coefficients)
    thumbnail: dict[str, float]  # val_psnr, test_psnr (NaN outside its sizes, 192..2,028 values)
    reference: dict[str, Any] | None  # val_psnr, test_psnr, test_mse, test_ssim, epochs, n_params, run_id, model


def _folder(splits: Splits) -> Path:
    return ensure_dir(runs_dir() / "baselines" / split_key(splits))


def _tags(splits: Splits, which: str) -> dict[str, str]:
    return {
        "cae.role": "baseline",
        "baseline": which,
        "data_source": splits.data_source,
        "data_digest": splits.digest,
        "split": "/".join(map(str, splits.sizes)),
        "stage": "reconstruction",
    }


def _codec(splits: Splits, which: str, code_values: int, tracker: Tracker | None) -> dict[str, float]:
    """PCA's or the thumbnail's scores at ``code_values``, cached, logged once as a run."""
    path = _folder(splits) / f"{which}-{code_values}.json"
    if path.exists():
        return json.loads(path.read_text())
    if which == "pca":
        basis = pca_basis(splits)
        scores = {
            "val_psnr": pca_point(basis, splits.x_val, code_values).psnr,
            "test_psnr": pca_point(basis, splits.x_test, code_values).psnr,
            "test_q8_psnr": pca_point(basis, splits.x_test, code_values, bits=8).psnr,
        }
    else:
        scores = {
            split: _thumbnail(getattr(splits, f"x_{s}"), code_values)
            for split, s in (("val_psnr", "val"), ("test_psnr", "test"))
        }
    if tracker is not None:
        run = tracker.start_run(EXPERIMENT, f"{which}-{code_values}", tags=_tags(splits, which))
        with run:
            run.log_params({"code_values": code_values})
            run.log_metrics({k: v for k, v in scores.items() if math.isfinite(v)})
        scores["run_id"] = run.run_id  # type: ignore[assignment]
    write_text_atomic(path, json.dumps(scores, indent=1))
    return scores


def _thumbnail(images: Any, code_values: int) -> float:
    try:
        return baseline_psnr_at(code_values, baseline_curve(images))
    except ValueError:  # outside the thumbnail's sizes
        return math.nan


def reference_config(base: ExperimentConfig, epochs: int) -> ExperimentConfig:
    """The seed's CAE on ``base``'s data, split and seed, for ``epochs`` epochs."""
    reference = load_experiment(project_root() / REFERENCE)
    return with_overrides(
        reference,
        {"data": to_dict(base.data), "seed": base.seed, "train.epochs": epochs, "name": "reference"},
    )


def _reference(splits: Splits, base: ExperimentConfig, epochs: int, tracker: Tracker) -> dict[str, Any]:
    """The reference CAE trained once per split and length (its own run), cached with its model."""
    folder = _folder(splits)
    path, model_path = folder / f"reference-{epochs}.json", folder / f"reference-{epochs}.keras"
    if path.exists() and model_path.exists():
        return {**json.loads(path.read_text()), "model": model_path}
    from cae.tracked_training import run_experiment

    config = reference_config(base, epochs)
    print(
        f"baseline: training the reference CAE for {epochs} epochs on {splits.sizes[0]:,} images (once) ...", flush=True
    )
    run_id, result, _ = run_experiment(
        config,
        tracker,
        experiment=EXPERIMENT,
        run_name=f"reference-{epochs}",
        tags=_tags(splits, "reference"),
        splits=splits,
    )
    record = {
        "val_psnr": psnr_from_mse(result.best_val_loss),
        **result.test,
        "epochs": result.epochs_run,
        "n_params": result.n_params,
        "code_values": result.code_values,
        "seconds_per_epoch": result.seconds_per_epoch,
        "run_id": run_id,
    }
    result.model.save(model_path)
    write_text_atomic(path, json.dumps(record, indent=1))
    return {**record, "model": model_path}


def baseline_runs(
    splits: Splits,
    code_values: int,
    base: ExperimentConfig,
    epochs: int,
    tracker: Tracker | None,
) -> Baselines:
    """PCA and the thumbnail at ``code_values`` and (with a tracker) the reference CAE at ``epochs``, on ``splits``."""
    ref = _reference(splits, base, epochs, tracker) if tracker is not None else None
    return Baselines(
        code_values, _codec(splits, "pca", code_values, tracker), _codec(splits, "thumbnail", code_values, tracker), ref
    )

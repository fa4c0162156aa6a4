"""Retraining the best trial at another epoch budget or on other data (``make report EPOCHS=``), cached.

A study's trials train to the length its best is quoted at, so a report normally scores the trials'
own models; retraining is for comparing at another budget or on other data (a subset search
retrained on the full split). Each retrain is a tracked run in the study's experiment and is
kept under ``runs/<study>/report/``, so a later report reuses it instead of training again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cae.config import ExperimentConfig
from cae.data import Splits
from cae.paths import atomic_path, ensure_dir, study_dir, write_text_atomic
from cae.report.locations import repo_relative
from cae.report.score import score
from cae.schema import from_dict, to_dict, with_overrides
from cae.tags import report_experiment
from cae.tracked_training import run_experiment
from cae.tracking import Tracker

# What report rendering reads from a cached record: a record lacking one is retrained, not trusted.
RECORD_KEYS = (
    "label",
    "run_id",
    "epochs",
    "retrained",
    "n_params",
    "code_values",
    "latent_values",
    "seconds_per_epoch",
    "test_mse",
    "test_psnr",
    "test_ssim",
    "test_q8_psnr",
    "photos_psnr",
)


def retrain_config(
    best: dict[str, Any], epochs: int | None, data: dict[str, Any] | None
) -> tuple[int, ExperimentConfig]:
    """(epoch budget, the best trial's config at that budget and on ``data``: ``data.source``,
    ``data.subset``, ``seed``, so a search run on a subset can be retrained on the full split)."""
    searched = from_dict(ExperimentConfig, best["config"], "best.json")
    budget = epochs or searched.train.epochs
    return budget, with_overrides(searched, {"train.epochs": budget, **(data or {})})


def retrain(config: ExperimentConfig, label: str, study: str, splits: Splits, tracker: Tracker) -> dict[str, Any]:
    """Train ``config`` once (a tracked run in ``<study>-report``); reuse it on later reports."""
    cache = ensure_dir(study_dir(study) / "report")
    key = hashlib.sha256(json.dumps([to_dict(config), splits.digest], sort_keys=True).encode()).hexdigest()[:10]
    record_path, model_path = cache / f"{label}-{key}.json", cache / f"{label}-{key}.keras"
    cached = _read_cached(record_path, model_path)
    if cached is not None:
        return cached
    print(f"retraining {label} for {config.train.epochs} epochs on {splits.sizes[0]:,} images ...", flush=True)
    run_id, result, out = run_experiment(
        # Beside the study, never in it: the study's run list in MLflow stays its trials.
        config,
        tracker,
        experiment=report_experiment(study),
        run_name=f"{label} (report retrain)",
        splits=splits,
        tags={"cae.role": "retrain", "study": study, "label": label},
    )
    record = score(
        result.model,
        splits,
        label=label,
        run_id=run_id,
        epochs=result.epochs_run,
        retrained=True,
        seconds_per_epoch=result.seconds_per_epoch,
    )
    model = record.pop("model")
    record.update(
        best_val_loss=result.best_val_loss,
        config=to_dict(config),
        loss_curve=repo_relative(str(out / "loss_curve.png")),
    )
    with atomic_path(model_path) as tmp:  # a killed report never leaves half a model in the cache
        model.save(tmp)
    write_text_atomic(record_path, json.dumps(record, indent=2))
    return {**record, "model": model}


def _read_cached(record_path: Path, model_path: Path) -> dict[str, Any] | None:
    """The cached record with its model, or None (absent, damaged or incomplete: retrain instead)."""
    if not (record_path.exists() and model_path.exists()):
        return None
    try:
        record = json.loads(record_path.read_text())
        if not isinstance(record, dict) or any(k not in record for k in RECORD_KEYS):
            raise ValueError("missing keys")
        import keras  # only once the record is usable: importing it takes seconds

        record["model"] = keras.models.load_model(model_path, compile=False)
    except Exception as err:  # a cache: a truncated or hand-edited entry is rebuilt, not fatal
        print(f"note: ignoring the damaged retrain cache {record_path.name} ({type(err).__name__}); retraining")
        return None
    return record

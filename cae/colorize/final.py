"""The colorization study's front, trained to the end and scored on the test split.

The study's trials are short; each front model (chosen on validation) is trained again for
``final_epochs`` (or its trial's model is kept), its decoding temperature is set on validation,
and only then is it scored on test: PSNR, SSIM, colourfulness, Hasler–Süsstrunk colourfulness,
per class, on ordinary photos, and by the semantic-check classifier. Each is saved as a
self-contained Keras model (1-channel luma in [0, 1] → RGB in [0, 1]) with a JSON of its scores.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cae.colorize.classifier import Classifier, accuracy
from cae.colorize.photos import photo_tiles
from cae.colorize.scoring import colour_scores, per_class_colour, predict_rgb, validation_scores, vivid_enough
from cae.config import ExperimentConfig
from cae.data import Splits, luma, to_unit
from cae.metrics import mse, psnr_from_mse
from cae.paths import atomic_path, ensure_dir, study_dir, write_text_atomic
from cae.schema import to_dict, with_overrides
from cae.search import attrs
from cae.search_config import SearchConfig
from cae.tags import report_experiment
from cae.tracked_training import run_experiment
from cae.tracking import Run, Tracker

MAX_FRONT = 3  # front models trained again at most (spread along the front)


@dataclass(kw_only=True)  # 16 fields: built by name, never by position
class FinalModel:
    trial: int
    label: str
    run_id: str
    config: ExperimentConfig
    params: dict[str, Any]
    epochs: int
    val: dict[str, float]
    test: dict[str, float]
    classifier_acc: float
    photos_psnr: float
    per_class: dict[str, dict[str, float]]
    path: Path
    seconds: float
    temperature: float | None = None
    curve: list[dict[str, float]] = field(default_factory=list)
    model: Any = None


def describe(params: dict[str, Any]) -> str:
    """A short name for a trial's recipe: ``classification (rebalance 0.50), skips, semantic branch 128
    (class weight 0.30), width ×1.40``."""
    loss = params.get("train.loss", "mse")
    parts = [f"{loss}" + (f" (rebalance {params['train.rebalance']:.2f})" if loss == "classification" else "")]
    if loss != "classification":
        parts.append(f"predicts {params.get('model.predict', 'chroma')}")
    if params.get("model.skips"):
        parts.append("skips")
    if params.get("model.semantic"):
        weight = params.get("train.class_weight")
        head = f" (class weight {weight:.2f})" if weight else ""
        parts.append(f"semantic branch {params['model.semantic']}{head}")
    if "model.width_multiplier" in params:
        parts.append(f"width ×{params['model.width_multiplier']:.2f}")
    if "model.depth" in params:
        parts.append(f"depth {params['model.depth']}")
    return ", ".join(parts)


def pick_front(front: list[Any], k: int = MAX_FRONT) -> list[Any]:
    """Up to ``k`` front trials spread along it (by colourfulness gap), best PSNR first.

    A study of validation PSNR alone has a front of one trial: its best.
    """
    ordered = sorted(front, key=lambda t: t.values[-1] if len(t.values) > 1 else -t.values[0])
    if len(ordered) > k:
        ordered = [ordered[round(i * (len(ordered) - 1) / (k - 1))] for i in range(k)]
    return sorted(ordered, key=lambda t: -t.values[0])


def train_final(
    cfg: SearchConfig,
    trial: Any,
    splits: Splits,
    tracker: Tracker,
    classifier: Classifier,
    lineage: dict[str, Any],
    space: Any,
) -> FinalModel:
    """One front model: trained for ``cfg.final_epochs`` (or the trial's own), decoded, scored, saved."""
    import keras

    config = space.apply(cfg.experiment, trial.params)
    if cfg.final_epochs:
        config = with_overrides(config, {"train.epochs": cfg.final_epochs, "name": f"{cfg.study}-final"})
    folder = ensure_dir(study_dir(cfg.study) / "final")
    cached = load_final(folder / f"trial-{trial.number}.json", config)
    if cached is not None:
        return cached
    keras.backend.clear_session()
    if cfg.final_epochs:
        tags = {
            "stage": "colorization",
            "cae.role": "final",
            "source_trial_number": trial.number,
            **{k: str(v) for k, v in lineage.items()},
        }
        run_id, result, _ = run_experiment(
            config,
            tracker,
            experiment=report_experiment(cfg.study),
            run_name=f"final-trial-{trial.number}",
            splits=splits,
            tags=tags,
            evaluate_test=False,
        )
        model, seconds, epochs = result.model, result.seconds, result.epochs_run
    else:
        model = keras.models.load_model(study_dir(cfg.study) / "models" / f"trial-{trial.number}.keras", compile=False)
        run_id, seconds, epochs = attrs.run_id(trial), trial.user_attrs.get("seconds", 0.0), None
    return scored(
        model,
        config,
        splits,
        tracker,
        classifier,
        vivid=cfg.vivid,
        trial=trial.number,
        label=describe(trial.params),
        params=dict(trial.params),
        run_id=run_id,
        seconds=seconds,
        epochs=epochs or config.train.epochs,
        path=folder / f"trial-{trial.number}.keras",
    )


def train_oracle(
    cfg: SearchConfig,
    chosen: FinalModel,
    splits: Splits,
    tracker: Tracker,
    classifier: Classifier,
    lineage: dict[str, Any],
) -> FinalModel:
    """The chosen model's network given the true class (the semantic oracle), trained as long as it.

    An upper bound on what knowing the object could buy this architecture on this data; reported
    beside the front, never chosen or registered (its saved model takes the label as a second input).
    """
    import keras

    config = with_overrides(
        chosen.config,
        {
            "model.semantic": chosen.config.model.semantic or ORACLE_BRANCH,
            "model.semantic_oracle": True,
            "train.class_weight": 0.0,
            "train.epochs": chosen.epochs,
            "name": f"{cfg.study}-oracle",
        },
    )
    folder = ensure_dir(study_dir(cfg.study) / "final")
    path = folder / f"oracle-trial-{chosen.trial}.keras"
    cached = load_final(path.with_suffix(".json"), config)
    if cached is not None:
        return cached
    keras.backend.clear_session()
    tags = {
        "stage": "colorization",
        "cae.role": "oracle",
        "source_trial_number": chosen.trial,
        **{k: str(v) for k, v in lineage.items()},
    }
    run_id, result, _ = run_experiment(
        config,
        tracker,
        experiment=report_experiment(cfg.study),
        run_name=f"oracle-trial-{chosen.trial}",
        splits=splits,
        tags=tags,
        evaluate_test=False,
    )
    return scored(
        result.model,
        config,
        splits,
        tracker,
        classifier,
        vivid=cfg.vivid,
        trial=chosen.trial,
        label=f"{chosen.label}, given the true class (oracle)",
        params=chosen.params,
        run_id=run_id,
        seconds=result.seconds,
        epochs=result.epochs_run,
        path=path,
    )


ORACLE_BRANCH = 128  # width of the semantic branch an oracle adds to a chosen model that has none


def scored(
    model: Any,
    config: ExperimentConfig,
    splits: Splits,
    tracker: Tracker,
    classifier: Classifier,
    *,
    vivid: float,
    trial: int,
    label: str,
    params: dict[str, Any],
    run_id: str,
    seconds: float,
    epochs: int,
    path: Path,
) -> FinalModel:
    """A trained colorizer decoded on validation, scored on test (and the photo tiles), saved, logged."""
    model, val, attrs = validation_scores(model, config, splits, vivid)
    truth = to_unit(splits.x_test)
    pred = predict_rgb(model, splits.x_test, config, splits.y_test)
    test = colour_scores(pred, truth)
    test["test_classifier_acc"] = accuracy(classifier.model, pred, splits.y_test)
    # The photo tiles have no class: an oracle cannot be run on them.
    photos_psnr = float("nan") if config.model.semantic_oracle else photos_score(model, config)
    final = FinalModel(
        trial=trial,
        label=label,
        run_id=run_id,
        config=config,
        params=params,
        epochs=epochs,
        val=val,
        test=test,
        classifier_acc=test["test_classifier_acc"],
        photos_psnr=photos_psnr,
        per_class=per_class_colour(pred, truth, splits.y_test),
        path=path,
        seconds=seconds,
        temperature=attrs.get("temperature"),
        curve=attrs.get("temperature_curve", []),
        model=model,
    )
    save(final)
    Run(tracker, run_id).log_metrics(
        {
            **val,
            **test,
            **({"photos_psnr": photos_psnr} if photos_psnr == photos_psnr else {}),
            **({"temperature": final.temperature} if final.temperature else {}),
        }
    )
    return final


def photos_score(model: Any, config: ExperimentConfig) -> float:
    """PSNR on the ordinary photo tiles (not CIFAR-10)."""
    tiles, _ = photo_tiles()
    return psnr_from_mse(mse(predict_rgb(model, tiles, config), to_unit(tiles)))


def save(final: FinalModel) -> None:
    """The model (self-contained: built-in layers only) and, beside it, what it scores (the conventions' names)."""
    final.model.name = f"colorizer_trial_{final.trial}"
    with atomic_path(final.path) as tmp:
        final.model.save(tmp)
    record = {
        "trial_number": final.trial,
        "recipe": final.label,
        "mlflow_run_id": final.run_id,
        "epochs": final.epochs,
        "input": "1-channel BT.601 luma in [0, 1], 32×32"
        + (" and the one-hot true class (an oracle)" if final.config.model.semantic_oracle else ""),
        "output": "RGB in [0, 1]",
        "temperature": final.temperature,
        **final.val,
        **final.test,
        "colourfulness": final.test["test_colourfulness"],
        "photos_psnr": None if np.isnan(final.photos_psnr) else final.photos_psnr,  # an oracle has none
        "config": to_dict(final.config),
        "params": final.params,
        "per_class": final.per_class,
        "temperature_curve": final.curve,
        "seconds": final.seconds,
    }
    write_text_atomic(final.path.with_suffix(".json"), json.dumps(record, indent=2))


def load_final(path: Path, config: ExperimentConfig) -> FinalModel | None:
    """A front model scored by an earlier call with the same config (the rerun resumes, not retrains)."""
    import keras

    try:
        r = json.loads(path.read_text())
        if r["config"] != to_dict(config):
            return None
        model = keras.models.load_model(path.with_suffix(".keras"), compile=False)
        val = {k: v for k, v in r.items() if k.startswith("val_")}
        test = {k: v for k, v in r.items() if k.startswith("test_") or k == "true_hasler_cf"}
        return FinalModel(
            trial=r["trial_number"],
            label=r["recipe"],
            run_id=r["mlflow_run_id"],
            config=config,
            params=r["params"],
            epochs=r["epochs"],
            val=val,
            test=test,
            classifier_acc=r["test_classifier_acc"],
            photos_psnr=float("nan") if r["photos_psnr"] is None else r["photos_psnr"],
            per_class=r["per_class"],
            path=path.with_suffix(".keras"),
            seconds=r["seconds"],
            temperature=r["temperature"],
            curve=r["temperature_curve"],
            model=model,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None  # none yet, or from another config: train it


def choose(finals: list[FinalModel], vivid: float) -> FinalModel:
    """The model closest to the aim, chosen on validation: the best PSNR among those vivid enough
    (colourfulness within 1 − vivid of the truth's), else the best PSNR."""
    vivid_ones = [f for f in finals if vivid_enough(f.val["val_colourfulness"], vivid)]
    return max(vivid_ones or finals, key=lambda f: f.val["val_psnr"])


def gray_and_true_accuracy(classifier: Classifier, splits: Splits) -> dict[str, float]:
    truth = to_unit(splits.x_test)
    return {
        "true_classifier_acc": accuracy(classifier.model, truth, splits.y_test),
        "gray_classifier_acc": accuracy(classifier.model, np.repeat(luma(truth), 3, axis=-1), splits.y_test),
    }


def gray_photos_psnr() -> float:
    tiles, _ = photo_tiles()
    truth = to_unit(tiles)
    return psnr_from_mse(mse(np.repeat(luma(truth), 3, axis=-1), truth))

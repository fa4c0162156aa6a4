"""The semantic check: does a CIFAR-10 classifier recognise colorized images better than gray ones?

Zhang et al. (2016) call it semantic interpretability. A small CNN is trained once per data source
and split (cached under ``runs/classifier/``, logged as its own MLflow run with its test accuracy)
and scores the test images in true colour, as gray copied to RGB, and as colorized.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from cae.data import Splits, make_labelled_dataset, to_unit
from cae.fitting import fit
from cae.hardware import machine
from cae.paths import atomic_path, ensure_dir, runs_dir, write_text_atomic
from cae.tracking import Tracker

EXPERIMENT = "cifar10-classifier"  # the MLflow experiment of the classifiers
EPOCHS = 12  # enough for ~80 % on the full split with this network; early stopping guards it


@dataclass
class Classifier:
    model: Any
    test_accuracy: float
    run_id: str


def build_classifier() -> Any:
    """A small VGG-style CNN (~0.3 M parameters) on RGB in [0, 1], with flip/shift augmentation."""
    import keras
    from keras import layers

    keras.mixed_precision.set_global_policy("float32")  # not whatever the last colorizer used
    inputs = keras.Input((32, 32, 3), name="image")
    x = layers.RandomFlip("horizontal")(inputs)
    x = layers.RandomTranslation(0.1, 0.1)(x)
    for i, width in enumerate((32, 64, 128)):
        for j in range(2):
            x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"c{i}{j}")(x)
            x = layers.BatchNormalization()(x)
            x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    return keras.Model(inputs, layers.Dense(10, name="logits")(x), name="cifar10_classifier")


def accuracy(model: Any, images: np.ndarray, labels: np.ndarray, batch_size: int = 500) -> float:
    """Top-1 accuracy on float RGB images in [0, 1]."""
    logits = np.asarray(model.predict(images.astype(np.float32), batch_size=batch_size, verbose=0))
    return float((logits.argmax(axis=1) == labels).mean())


def semantic_classifier(splits: Splits, tracker: Tracker, epochs: int = EPOCHS) -> Classifier:
    """The classifier of this data source and split: trained once, then read from the cache."""
    import keras

    folder = ensure_dir(runs_dir() / "classifier")
    n_train = len(splits.x_train)
    key = f"cifar10-{splits.digest}-seed{splits.seed}-n{n_train}-e{epochs}"
    model_path, record_path = folder / f"{key}.keras", folder / f"{key}.json"
    if model_path.exists() and record_path.exists():
        try:
            record = json.loads(record_path.read_text())
            return Classifier(keras.models.load_model(model_path), float(record["test_accuracy"]), record["run_id"])
        except (ValueError, KeyError, OSError):
            pass  # a damaged cache is retrained
    print(f"training the semantic-check classifier ({n_train:,} images, {epochs} epochs) ...", flush=True)
    keras.utils.set_random_seed(splits.seed)
    model = build_classifier()
    tags = {
        "stage": "colorization",
        "cae.role": "classifier",
        "data_source": splits.data_source,
        "machine": machine(),
        "data_digest": splits.digest,
    }
    with tracker.start_run(EXPERIMENT, key, tags=tags) as run:
        run.log_params({"epochs": epochs, "n_train": n_train, "n_params": model.count_params()})
        fitted = fit(
            model,
            make_labelled_dataset(splits.x_train, splits.y_train, 64, shuffle=True, seed=splits.seed),
            make_labelled_dataset(splits.x_val, splits.y_val, 500, shuffle=False, seed=0),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            learning_rate=1e-3,
            epochs=epochs,
            metrics=["accuracy"],
            early_stopping_patience=3,
            callbacks=[run.epoch_callback()],
        )
        test_accuracy = accuracy(model, to_unit(splits.x_test), splits.y_test)
        run.log_metrics({"test_accuracy": test_accuracy, "best_val_accuracy": max(fitted.history["val_accuracy"])})
    with atomic_path(model_path) as tmp:
        model.save(tmp)
    write_text_atomic(record_path, json.dumps({"test_accuracy": test_accuracy, "run_id": run.run_id}))
    print(f"classifier test accuracy {test_accuracy:.3f} (MLflow run {run.run_id})", flush=True)
    return Classifier(model, test_accuracy, run.run_id)

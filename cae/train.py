"""One unit of work: ``train_and_evaluate(config, splits) -> TrainResult``.

`cae train`, the Optuna objective, the keras-tuner adapter, colorization and the benchmark all
call it; they differ only in the callbacks they pass (tracking, pruning) and whether the test
split is scored. :func:`fit` under it is the package's only ``model.fit`` (the semantic-check
classifier uses it too). Nothing here talks to MLflow or Optuna.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cae.baselines import pca_basis
from cae.colour import (
    CHROMA_BINS,
    DEFAULT_TEMPERATURE,
    chroma_prior,
    class_weights,
    classification_loss,
    decoding_model,
)
from cae.config import ExperimentConfig
from cae.data import Splits, luma, make_dataset, to_unit
from cae.fitting import checked_history, fit
from cae.metrics import image_metrics
from cae.model import build_from_config, code_sizes


@dataclass
class TrainResult:
    model: Any  # keras.Model with the best epoch's weights
    history: dict[str, list[float]]  # train_loss / val_loss per epoch, epoch 1 first
    best_val_loss: float
    best_epoch: int  # 1-based
    seconds: float
    n_params: int
    latent_values: int
    bottleneck_values: int
    test: dict[str, float] = field(default_factory=dict)  # test_mse, test_psnr, test_ssim
    epoch_seconds: list[float] = field(default_factory=list)  # this call's epochs, validation included

    @property
    def epochs_run(self) -> int:
        return len(self.history["val_loss"])

    @property
    def seconds_per_epoch(self) -> float:
        # This call's epochs: after a resume, `seconds` covers only the last segment.
        return statistics.fmean(self.epoch_seconds) if self.epoch_seconds else self.seconds / max(1, self.epochs_run)

    @property
    def code_values(self) -> int:
        """The narrower of latent and bottleneck: the size a no-learning codec is compared at."""
        return min(self.latent_values, self.bottleneck_values)

    def code_params(self) -> dict[str, int]:
        """The derived size params every run logs (the conventions' names)."""
        return {
            "n_params": self.n_params,
            "latent_values": self.latent_values,
            "bottleneck_values": self.bottleneck_values,
        }

    def final_metrics(self) -> dict[str, float]:
        """``best_val_loss``, time per epoch, epochs run and the test scores (if scored)."""
        return {
            "best_val_loss": self.best_val_loss,
            "seconds_per_epoch": self.seconds_per_epoch,
            "epochs_run": self.epochs_run,
            **self.test,
        }

    def summary(self) -> dict[str, float]:
        return {**self.final_metrics(), "best_epoch": self.best_epoch, "seconds": round(self.seconds, 2)}


def input_stats(config: ExperimentConfig, splits: Splits) -> tuple[list[float] | None, list[float] | None]:
    """Per-channel mean/std of the model input over the training split, if standardising."""
    if config.data.normalization != "standardize":
        return None, None
    if config.data.input == "rgb":
        return list(splits.mean), list(splits.std)
    x = to_unit(splits.x_train)
    gray = luma(x) if config.data.input == "luma" else x.mean(axis=-1, keepdims=True)
    return [float(gray.mean())], [float(max(gray.std(), 1e-6))]


def build_model(config: ExperimentConfig, splits: Splits) -> Any:
    """The configured CAE, seeded, with the input statistics of ``splits`` if standardising.

    A classification colorizer is built as its class-logits network (what is trained);
    :func:`train_and_evaluate` returns it wrapped with its decoding.
    """
    import keras

    keras.utils.set_random_seed(config.seed)
    # The policy is global in Keras and read when layers are created: set it for every model.
    keras.mixed_precision.set_global_policy(config.train.precision)
    mean, std = input_stats(config, splits)
    classes = len(CHROMA_BINS) if config.train.loss == "classification" else 0
    pca = None
    if config.model.pca_init:
        basis = pca_basis(splits)  # fitted once per split, cached beside the decoded images
        pca = (basis.mean, basis.components)
    return build_from_config(
        config.model,
        input_channels=config.data.input_channels,
        input_mean=mean,
        input_std=std,
        chroma_classes=classes,
        pca=pca,
        class_head=config.train.class_weight > 0,
    )


def loss_for(config: ExperimentConfig, splits: Splits) -> Any:
    """The configured loss (a Keras name or, for chroma classes, the rebalanced cross-entropy)."""
    import keras

    name = config.train.loss
    if name == "classification":
        return classification_loss(class_weights(chroma_prior(splits.x_train), config.train.rebalance))
    if name == "huber":
        return keras.losses.Huber(delta=0.1)  # pixel units: quadratic within 0.1, L1 beyond
    return {"mse": "mse", "bce": "binary_crossentropy", "l1": "mae"}[name]


def predict(
    model: Any,
    images: np.ndarray,
    input_transform: str = "rgb",
    labels: np.ndarray | None = None,
    batch_size: int = 500,
) -> np.ndarray:
    """Model outputs for uint8 images, in [0, 1] pixel units (``labels``: a semantic oracle's second input)."""
    ds = make_dataset(
        images,
        batch_size,
        shuffle=False,
        seed=0,
        input_transform=input_transform,
        labels=labels,
        label_input=labels is not None,
    )
    out = model.predict(ds.map(lambda x, y: x), verbose=0)
    if isinstance(out, (list, tuple)):  # a model in training with its class head: [image, class logits]
        out = out[0]
    return np.asarray(out, dtype=np.float32)


def evaluate(
    model: Any, images: np.ndarray, input_transform: str = "rgb", labels: np.ndarray | None = None
) -> tuple[dict[str, float], np.ndarray]:
    """``test_mse`` / ``test_psnr`` / ``test_ssim`` of a whole split, and the predictions."""
    pred = predict(model, images, input_transform, labels)
    return image_metrics(pred, to_unit(images)), pred


def train_and_evaluate(
    config: ExperimentConfig,
    splits: Splits,
    *,
    callbacks: Sequence[Any] = (),
    model: Any = None,
    epochs: int | None = None,
    initial_epoch: int = 0,
    evaluate_test: bool = True,
    workdir: Path | None = None,
) -> TrainResult:
    """Train the configured network with its loss and Adam; restore the best epoch; score it.

    ``callbacks`` see every epoch after the built-in ones (see :func:`cae.fitting.fit`). ``workdir``
    makes training resumable. ``model``/``epochs``/``initial_epoch`` let keras-tuner's Hyperband
    continue a model. ``result.model`` always maps the input to RGB in [0, 1]: a classification
    colorizer is returned with its decoding, one trained with a class head without that head.
    """
    import keras

    model = model if model is not None else build_model(config, splits)
    tc, oracle, class_head = config.train, config.model.semantic_oracle, config.train.class_weight > 0
    epochs = epochs or tc.epochs
    steps = math.ceil(len(splits.x_train) / tc.batch_size)
    lr: Any = tc.learning_rate
    if tc.lr_schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(tc.learning_rate, decay_steps=max(1, epochs * steps))
    labelled = {"label_input": oracle, "label_target": class_head}
    train_ds = make_dataset(
        splits.x_train,
        tc.batch_size,
        shuffle=True,
        seed=config.seed,
        input_transform=config.data.input,
        labels=splits.y_train,
        **labelled,
    )
    val_ds = make_dataset(
        splits.x_val, 500, shuffle=False, seed=0, input_transform=config.data.input, labels=splits.y_val, **labelled
    )
    loss: Any = loss_for(config, splits)
    if class_head:  # the auxiliary class loss beside the colour loss (Iizuka et al.)
        loss = [loss, keras.losses.SparseCategoricalCrossentropy(from_logits=True)]
    fitted = fit(
        model,
        train_ds,
        val_ds,
        loss=loss,
        learning_rate=lr,
        epochs=epochs,
        initial_epoch=initial_epoch,
        callbacks=callbacks,
        jit_compile=tc.jit_compile,
        early_stopping_patience=tc.early_stopping_patience,
        plateau=tc.lr_schedule == "plateau",
        workdir=workdir,
        loss_weights=[1.0, tc.class_weight] if class_head else None,
    )
    history = checked_history(fitted, workdir, tc.learning_rate)
    if class_head:
        model = keras.Model(model.inputs, model.outputs[0], name=model.name)
    if tc.loss == "classification":
        model = decoding_model(model, DEFAULT_TEMPERATURE)
    best_epoch = int(np.argmin(history["val_loss"])) + 1
    latent_values, bottleneck_values = code_sizes(model)
    result = TrainResult(
        model=model,
        history=history,
        best_val_loss=float(history["val_loss"][best_epoch - 1]),
        best_epoch=best_epoch,
        seconds=fitted.seconds,
        n_params=int(model.count_params()),
        latent_values=latent_values,
        bottleneck_values=bottleneck_values,
        epoch_seconds=fitted.epoch_seconds,
    )
    if evaluate_test:
        result.test, _ = evaluate(model, splits.x_test, config.data.input, splits.y_test if oracle else None)
    return result

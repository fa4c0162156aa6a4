"""The colorization study's trial: train a colorizer, stop it if its colours collapse, score it.

Run by the same engine as the reconstruction search (``cae.search``): the objective samples the
space, builds the model and tracks the trial; this task trains it and reports validation PSNR
and the colourfulness gap |1 − pred/true chroma spread| as the study's two objectives.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cae.colorize.scoring import COLLAPSED, decode_at, predict_rgb, validation_scores
from cae.colour import DEFAULT_TEMPERATURE
from cae.config import ExperimentConfig
from cae.data import Splits, to_unit
from cae.errors import TrialStopped
from cae.metrics import colourfulness_ratio, psnr_from_mse
from cae.search.task import TrialOutcome
from cae.search_config import SearchConfig
from cae.tags import run_tags
from cae.train import train_and_evaluate

PROBE_IMAGES = 256  # validation images checked after every epoch


def collapse_stop(images: np.ndarray, config: ExperimentConfig) -> Any:
    """A Keras callback that stops training once the predicted colours collapse to one.

    At a learning rate tuned for reconstruction (6e-3) the chroma head can die in its first epoch,
    and every later epoch would be wasted. ``.reason`` says why it stopped.
    """
    import keras

    truth = to_unit(images)

    class CollapseStop(keras.callbacks.Callback):
        reason: str | None = None

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            ratio = colourfulness_ratio(rgb_of_training_model(self.model, images, config), truth)
            if ratio < COLLAPSED:
                self.reason = (
                    f"colours collapsed: colourfulness {ratio:.3f} after epoch {epoch + 1} "
                    f"(one colour for every pixel; learning rate {config.train.learning_rate:.3g})"
                )
                self.model.stop_training = True

    return CollapseStop()


def rgb_of_training_model(model: Any, images: np.ndarray, config: ExperimentConfig) -> np.ndarray:
    """RGB of the network being trained: a classification colorizer trains on its class logits, which
    are decoded at the default temperature; every other colorizer outputs RGB itself."""
    if config.train.loss == "classification":
        return decode_at(model, images, config.data.input, [DEFAULT_TEMPERATURE])[DEFAULT_TEMPERATURE]
    return predict_rgb(model, images, config)


class ColorizationTask:
    """Gray in, RGB out; scored on validation by PSNR and by how colourful it is.

    Every trial keeps its model: the study's front is trained to the end and scored on test from
    them by the report (``make colorize-search``), so the study itself adds nothing at the end.
    """

    keep_every_model = True

    def __init__(self, cfg: SearchConfig, splits: Splits, study_attrs: Mapping[str, Any]):
        self.base, self.splits, self.vivid = cfg.experiment, splits, cfg.vivid
        self.training = cfg.experiment
        lineage = study_attrs.get("lineage") or {}
        self.tags = {**run_tags("colorization", splits.data_source), **{k: str(v) for k, v in lineage.items()}}

    def train(
        self,
        config: ExperimentConfig,
        model: Any,
        callbacks: list[Any],
        *,
        epochs: int | None = None,
        initial_epoch: int = 0,
        workdir: Path | None = None,
    ) -> TrialOutcome:
        stop = collapse_stop(self.splits.x_val[:PROBE_IMAGES], config)
        self.training = config  # the trial in training (one per process): what rung_value decodes with
        result = train_and_evaluate(
            config,
            self.splits,
            model=model,
            callbacks=[*callbacks, stop],
            epochs=epochs,
            initial_epoch=initial_epoch,
            evaluate_test=False,
            workdir=workdir,
        )
        if stop.reason:
            raise TrialStopped(stop.reason)
        result.model, metrics, attrs = validation_scores(result.model, config, self.splits, self.vivid)
        values = {
            "val_psnr": metrics["val_psnr"],
            "colourfulness_gap": abs(1.0 - metrics["val_colourfulness"]),
            "best_val_loss": result.best_val_loss,
        }
        if "temperature" in attrs:
            metrics["temperature"] = attrs["temperature"]
        return TrialOutcome(result, values, metrics, attrs)

    def rung_value(self, model: Any, val_loss: float, code_values: int) -> float:
        """How good an epoch's colorizer is, for the rungs of a two-objective study (higher is better):
        PSNR on the probe images, less 10 dB per unit of colourfulness short of the study's ``vivid``
        aim, so a grey model does not survive a rung on PSNR alone."""
        images = self.splits.x_val[:PROBE_IMAGES]
        truth = to_unit(images)
        rgb = rgb_of_training_model(model, images, self.training)
        shortfall = max(0.0, (self.vivid or 0.0) - colourfulness_ratio(rgb, truth))
        return psnr_from_mse(float(np.mean((rgb - truth) ** 2))) - 10.0 * shortfall

    def finish(self, study: str, parent: Any, step: int) -> dict[str, Any]:
        return {}

"""The stage seam: what the search engines ask of the thing a trial trains.

The engines (``objective``, ``tuner``, ``workers``, ``run``) receive a :data:`TaskFactory` and
call the few members of :class:`Task`; they never import a stage's modules. The one map from a
stage's name to its task is :mod:`cae.stages`, where commands (and spawned workers) are wired.
:class:`ReconstructionTask`, the autoencoder, lives beside the protocol as the default.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cae.baseline_runs import baseline_runs
from cae.baselines import baseline_curve, baseline_psnr_at, pca_basis, pca_point
from cae.callbacks import dead_stop
from cae.config import ExperimentConfig
from cae.data import Splits, to_unit
from cae.errors import TrialStopped
from cae.metrics import psnr_from_mse
from cae.search import attrs
from cae.search.best import score_best, update_best
from cae.search_config import SearchConfig
from cae.tags import run_tags, stage_of
from cae.train import TrainResult, train_and_evaluate


@dataclass
class TrialOutcome:
    result: TrainResult
    values: dict[str, float]  # every objective a study of this task may name, by name
    metrics: dict[str, float] = field(default_factory=dict)  # extra final metrics for MLflow
    attrs: dict[str, Any] = field(default_factory=dict)  # extra trial user attrs (and best.json keys)


class Task(Protocol):
    """What a study's trials train, and what happens once the study has its trials."""

    base: ExperimentConfig  # the config every trial starts from (the space changes its keys)
    tags: dict[str, str]  # tags of every run of the study (stage, data source, lineage ...)
    keep_every_model: bool  # every completed trial keeps its model (runs/<study>/models/)

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
        """Train ``model`` (``config``'s architecture); ``workdir`` makes the training resumable."""
        ...

    def rung_value(self, model: Any, val_loss: float, code_values: int) -> float:
        """How good a trial's ``model`` is after an epoch, comparably across trials (higher is better).

        A study Optuna cannot prune (several objectives) stops, at each rung, the trials whose value
        is not among the best third (:class:`cae.search.rungs.RungPruning`).
        """
        ...

    def finish(self, study: str, parent: Any, step: int) -> dict[str, Any]:
        """After the last trial (the best trial is exported): what the study's summary adds.

        ``parent`` is the study's parent :class:`~cae.tracking.Run`; ``step`` its finished trials.
        """
        ...


# (search config, the worker's data, the study's user attrs) -> the task of every trial it runs.
TaskFactory = Callable[[SearchConfig, Splits, Mapping[str, Any]], Task]


class ReconstructionTask:
    """An autoencoder scored by its best validation MSE (and, for a Pareto study, its code size).

    Every trial is also scored against the two baselines at its own code size on the validation
    images (``pca_val_psnr``, ``thumbnail_val_psnr`` and the margins over them), and a study that
    Optuna cannot prune (two objectives) ranks trials at its rungs by the margin over PCA.
    """

    def __init__(self, cfg: SearchConfig, splits: Splits, study_attrs: Mapping[str, Any] | None = None):
        self.base, self.splits, self.code_values = cfg.experiment, splits, cfg.code_values
        self.tags = run_tags(stage_of(cfg.experiment), splits.data_source)
        # Every completed trial keeps its model: the report scores the best at each code size on the test
        # split from the trials' own models, and the best at one size need not be the study's best. Under
        # a pruner few trials complete, so this costs little disk.
        self.keep_every_model = True
        self._pca: Any = None
        self._thumbnails: list[Any] | None = None
        self._pca_psnr: dict[int, float] = {}
        self._mean_image_mse: float | None = None

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
        # The mean image's score is in MSE units: a model trained on another loss, or with a class loss
        # added to its val_loss, is never called dead.
        plain_mse = config.train.loss == "mse" and config.train.class_weight == 0
        dead_at = self.mean_image_mse() if plain_mse else math.inf
        stop = dead_stop(dead_at, config.train.learning_rate)
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
        values = {"best_val_loss": result.best_val_loss, "code_values": float(result.code_values)}
        return TrialOutcome(result, values, metrics=self.baseline_metrics(result.best_val_loss, result.code_values))

    def mean_image_mse(self) -> float:
        """Validation MSE of the training split's mean image: what a model that learned nothing scores."""
        if self._mean_image_mse is None:  # PCA with no component: its basis's mean (fitted once, cached)
            self._pca = self._pca or pca_basis(self.splits)
            x_val = to_unit(self.splits.x_val).reshape(len(self.splits.x_val), -1)
            self._mean_image_mse = float(np.mean((x_val - self._pca.mean) ** 2))
        return self._mean_image_mse

    def pca_val_psnr(self, code_values: int) -> float:
        """PCA's validation PSNR at ``code_values`` (the basis fitted once, on the training split)."""
        if code_values not in self._pca_psnr:
            self._pca = self._pca or pca_basis(self.splits)
            self._pca_psnr[code_values] = pca_point(self._pca, self.splits.x_val, code_values).psnr
        return self._pca_psnr[code_values]

    def baseline_metrics(self, val_loss: float, code_values: int) -> dict[str, float]:
        """The trial's validation PSNR beside PCA's and the thumbnail's at its code size."""
        if self._thumbnails is None:
            self._thumbnails = baseline_curve(self.splits.x_val)
        val_psnr, pca = psnr_from_mse(val_loss), self.pca_val_psnr(code_values)
        out = {"val_psnr": val_psnr, "pca_val_psnr": pca, "val_margin_vs_pca": val_psnr - pca}
        lo, hi = self._thumbnails[0].values, self._thumbnails[-1].values
        if lo <= code_values <= hi:  # the thumbnail exists from 8×8 to 26×26 pixels only
            thumb = baseline_psnr_at(code_values, self._thumbnails)
            out.update(thumbnail_val_psnr=thumb, val_margin_vs_thumbnail=val_psnr - thumb)
        return out

    def rung_value(self, model: Any, val_loss: float, code_values: int) -> float:
        """How good an epoch's model is across code sizes (higher is better): its margin over PCA."""
        return psnr_from_mse(val_loss) - self.pca_val_psnr(code_values)

    def margin_of(self, trial: Any) -> float | None:
        """A finished trial's validation margin over PCA at its code size (dB): what its line shows.

        Within a study of one code size, validation MSE and this margin rank trials alike.
        """
        values = list(trial.values or []) or list(trial.intermediate_values.values())
        code = attrs.code_values(trial)
        if not values or not code or (trial.values is not None and len(trial.values) > 1):
            return None
        return psnr_from_mse(min(values[:1] if trial.values else values)) - self.pca_val_psnr(int(code))

    def epoch_note(self, code_values: int) -> Callable[[float], str]:
        """What each epoch's progress line adds: the validation margin over PCA at ``code_values``."""
        return lambda val_loss: f"  {psnr_from_mse(val_loss) - self.pca_val_psnr(code_values):+.2f} dB vs PCA"

    def finish(self, study: str, parent: Any, step: int) -> dict[str, Any]:
        """The exported best scored once on the test split and registered as ``study``; in a study of one
        code size, held against the baselines there (runs of their own: PCA, the thumbnail, the reference CAE)."""
        best = score_best(study, parent, step=step)
        if self.code_values is None:
            return {"best": best}
        held = baseline_runs(self.splits, self.code_values, self.base, self.base.train.epochs, parent.tracker)
        test = best["test"]["test_psnr"]
        against = {"PCA": held.pca["test_psnr"], "thumbnail": held.thumbnail["test_psnr"]}
        if held.reference is not None:
            against[f"reference CAE ({held.reference['epochs']} epochs)"] = held.reference["test_psnr"]
        update_best(
            study,
            best["trial_number"],
            baselines={
                "pca_test_psnr": held.pca["test_psnr"],
                "pca_q8_test_psnr": held.pca["test_q8_psnr"],
                "thumbnail_test_psnr": held.thumbnail["test_psnr"],
                "reference_test_psnr": held.reference["test_psnr"] if held.reference else None,
                "reference_epochs": held.reference["epochs"] if held.reference else None,
            },
        )
        chosen = "an enqueued point" if best.get("enqueued") else "a point the search chose"
        print(
            f"best trial {best['trial_number']} ({chosen}) on test: {test:.2f} dB; "
            + "; ".join(f"{name} {psnr:.2f} dB ({test - psnr:+.2f})" for name, psnr in against.items())
        )
        return {"best": best, "baselines": held}

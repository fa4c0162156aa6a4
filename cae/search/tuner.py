"""The second engine: keras-tuner over the same search space, logged to MLflow the same way.

``make search ENGINE=keras-tuner`` (study ``<study>-kt`` unless STUDY is given). The space file
is read by the same parser as Optuna's; trials are child runs with ``engine=keras-tuner`` and
per-epoch curves; the best trial is exported to the same ``best.json`` / ``best.keras``.
Training goes through the same ``train_and_evaluate``: ``HyperModel.fit`` calls it with the
model, epochs and callbacks that keras-tuner hands over (Hyperband continues models this way).
"""

from __future__ import annotations

import time
from typing import Any

from cae.config import SearchConfig
from cae.data import Splits, load_splits
from cae.errors import CAEError
from cae.hardware import configure_threads
from cae.paths import ensure_dir, study_dir
from cae.search.best import best_paths, export_trial, score_best, trial_record
from cae.search.tags import SKIPPED, parent_tags
from cae.space import SearchSpace, load_space
from cae.tracking import Tracker, trial_run
from cae.train import TrainResult, build_model, train_and_evaluate

MAX_FAILED_IN_A_ROW = 50  # skipped trials count as failed in keras-tuner: as many as Optuna skips


def _hypermodel(cfg: SearchConfig, space: SearchSpace, splits: Splits) -> Any:
    import keras_tuner

    class CAEHyperModel(keras_tuner.HyperModel):
        """``build(hp)`` only turns ``hp`` values into a config; the builder takes plain values."""

        last_result: TrainResult | None = None

        def config_for(self, hp: Any) -> Any:
            return space.apply(cfg.experiment, space.sample_keras_tuner(hp))

        def build(self, hp: Any) -> Any:
            import keras

            keras.backend.clear_session()  # free the previous trial's graph (and its retracing)
            return build_model(self.config_for(hp), splits)

        def fit(
            self,
            hp: Any,
            model: Any,
            *args: Any,
            callbacks: Any = (),
            epochs: int | None = None,
            initial_epoch: int = 0,
            **kwargs: Any,
        ) -> dict[str, float]:
            self.last_result = train_and_evaluate(
                self.config_for(hp), splits, model=model, callbacks=list(callbacks or []), epochs=epochs,
                initial_epoch=initial_epoch, evaluate_test=False, verbose=0,
            )  # fmt: skip
            return {"val_loss": self.last_result.best_val_loss}

    return CAEHyperModel()


def make_tuner(cfg: SearchConfig, space: SearchSpace, splits: Splits, tracker: Tracker, parent_id: str) -> Any:
    import keras_tuner

    base = {"hyperband": keras_tuner.Hyperband, "bayesian": keras_tuner.BayesianOptimization,
            "random": keras_tuner.RandomSearch}[cfg.tuner]  # fmt: skip
    budget = (
        # One Hyperband iteration is ~10 trials at 5 epochs; unlimited iterations let TRIALS decide.
        {"max_epochs": cfg.experiment.train.epochs, "factor": 3, "hyperband_iterations": None}
        if cfg.tuner == "hyperband"
        else {"max_trials": cfg.trials}
    )

    class TrackedTuner(base):  # type: ignore[misc, valid-type]
        """keras-tuner has no MLflow logger: each trial is wrapped in a child run here."""

        def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> Any:
            hp = trial.hyperparameters
            params = {k: v for k, v in hp.values.items() if not k.startswith("tuner/")}
            number = int(trial.trial_id)
            start = time.perf_counter()
            config = self.hypermodel.config_for(hp)
            _skip_over_budget(cfg, config, number)
            tags = {"engine": "keras-tuner", "stage": "reconstruction", "data_source": splits.data_source,
                    **{f"kt.{k[6:]}": v for k, v in hp.values.items() if k.startswith("tuner/")}}  # fmt: skip
            try:
                with trial_run(tracker, cfg.study, number, parent_id=parent_id, tags=tags, params=params,
                               splits=splits) as run:  # fmt: skip
                    kwargs["callbacks"] = [*kwargs.get("callbacks", []), run.epoch_callback()]
                    out = super().run_trial(trial, *args, **kwargs)
                    result = self.hypermodel.last_result
                    run.log_result(result)
                    record = trial_record(
                        cfg.study, number, result, config, params, run_id=run.run_id, engine="keras-tuner",
                        data_source=splits.data_source, uid=None,
                        objective=("best_val_loss", result.best_val_loss, "minimize"),
                    )  # fmt: skip
                    export_trial(record, result.model)
            except Exception as err:
                print(f"trial {number:3d} FAIL     {type(err).__name__}: {str(err)[:200]}", flush=True)
                raise
            print(
                f"trial {number:3d} COMPLETE val={result.best_val_loss:.6g}  {time.perf_counter() - start:6.1f}s  "
                f"params={result.n_params} code={result.code_values}  "
                + " ".join(f"{k.split('.')[-1]}={v}" for k, v in params.items()),
                flush=True,
            )
            return out

    tuner = TrackedTuner(
        hypermodel=_hypermodel(cfg, space, splits), objective="val_loss", seed=cfg.sampler_seed,
        directory=str(ensure_dir(study_dir(cfg.study))), project_name="keras_tuner", overwrite=False,
        max_consecutive_failed_trials=MAX_FAILED_IN_A_ROW, **budget,  # skipped trials count as failed here
    )  # fmt: skip
    if cfg.tuner == "hyperband":
        tuner.oracle.max_trials = cfg.trials  # Hyperband has no max_trials argument; the oracle honours it
    if cfg.enqueue_reference and not space.outside(cfg.experiment):
        _reference_first(tuner.oracle, space.point(cfg.experiment))
    return tuner


def _skip_over_budget(cfg: SearchConfig, config: Any, number: int) -> None:
    """Skip (as Optuna does) a point whose code exceeds ``max_code_values``, before any run exists.

    keras-tuner has no "skipped" state: the trial is FAILED and counts towards its ``max_trials``.
    """
    import keras_tuner

    from cae.model import build_from_config, code_sizes

    if cfg.max_code_values is None:
        return
    code = min(code_sizes(build_from_config(config.model, input_channels=config.data.input_channels)))
    if code > cfg.max_code_values:
        reason = f"code of {code} values exceeds max_code_values={cfg.max_code_values}"
        print(f"trial {number:3d} SKIPPED  ({SKIPPED}{reason})", flush=True)
        raise keras_tuner.errors.FailedTrialError(SKIPPED + reason)


def _reference_first(oracle: Any, reference: dict[str, Any]) -> None:
    """Make a new project's first sampled point the reference architecture (Optuna enqueues it).

    keras-tuner has no enqueue: its oracles draw new points through ``_random_values`` (a
    private method), so the very first draw of a fresh project is replaced.
    """
    if oracle.trials:  # a resumed project already has its first trial
        return
    draw = oracle._random_values

    def first_is_reference() -> dict[str, Any]:
        if len(oracle.trials) <= 1 and not getattr(oracle, "_cae_reference_done", False):
            oracle._cae_reference_done = True
            return dict(reference)
        return draw()

    oracle._random_values = first_is_reference


def run_tuner(cfg: SearchConfig, tracker: Tracker | None = None) -> dict[str, Any]:
    tracker = (tracker or Tracker()).check()
    space = load_space(cfg.space)
    splits = load_splits(cfg.experiment.data.source, cfg.experiment.seed, cfg.experiment.data.subset)
    parent = tracker.study_parent(cfg.study, parent_tags(cfg, splits.data_source, "keras-tuner"))
    with parent:  # FINISHED, or FAILED / KILLED with the reason, whatever fails from here on
        # keras-tuner runs trials in this process only: any child run still RUNNING was killed.
        tracker.close_orphans(parent.run_id, cfg.study, still_running=set())
        configure_threads()
        tuner = make_tuner(cfg, space, splits, tracker, parent.run_id)
        print(f"keras-tuner {cfg.tuner} study {cfg.study!r} in {tuner.project_dir}; MLflow {tracker.shown}",
              flush=True)  # fmt: skip
        try:
            tuner.search(verbose=0)
        except RuntimeError as err:  # keras-tuner stops after too many failed trials with a RuntimeError
            raise CAEError(f"keras-tuner stopped: {(str(err).strip().splitlines() or ['RuntimeError'])[-1]}") from None
        summary: dict[str, Any] = {"study": cfg.study, "trials": len(tuner.oracle.trials)}
        if best_paths(cfg.study)[0].exists():
            summary["best"] = score_best(cfg.study, parent, step=len(tuner.oracle.trials))
    return summary

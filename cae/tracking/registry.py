"""The MLflow Model Registry: a chosen Keras model logged with the keras flavor and registered.

``register_model`` logs the model into the run that trained it (a logged model with a signature
and an input example, so ``models:/<name>/latest`` loads it with ``mlflow.keras.load_model`` or
``mlflow.pyfunc.load_model``) and registers it as a new version of ``name``.

Two work-arounds for MLflow 3.17.2, both checked on it:
- ``mlflow.keras.log_model(..., input_example=...)`` fails (FileNotFoundError on
  input_example.json: the example is written before the model folder exists), so the model goes
  through ``Model.log`` with a flavor whose ``save_model`` creates the folder first.
- No fluent run is used: ``mlflow.start_run(run_id=...)`` would end the (already ended or still
  running) trial run FINISHED on exit. ``Model.log`` reads the global tracking URI, set here for
  the call only.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from cae.errors import CAEError

if TYPE_CHECKING:
    import numpy as np

    from cae.tracking.client import Tracker


class _KerasFlavor:
    """``mlflow.keras`` whose ``save_model`` creates the model folder before MLflow writes into it."""

    __name__ = "mlflow.keras"

    @staticmethod
    def save_model(path: str, validate_serving_input: bool = True, **kwargs: Any) -> Any:
        import mlflow.keras

        os.makedirs(path, exist_ok=True)
        return mlflow.keras.save_model(path=path, **kwargs)


@contextmanager
def _global_uri(uri: str) -> Iterator[None]:
    import mlflow

    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)  # None: back to the environment / default resolution
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)


def pip_requirements() -> list[str]:
    """The installed Keras and TensorFlow, stated explicitly (MLflow's inference costs ~7 s a model)."""
    out = [f"keras=={importlib.metadata.version('keras')}"]
    for dist in ("tensorflow", "tensorflow-cpu"):
        try:
            out.append(f"{dist}=={importlib.metadata.version(dist)}")
            break
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def registered_version(tracker: Tracker, name: str, run_id: str) -> int | None:
    """The newest version of ``name`` registered from run ``run_id``, if any."""
    versions = tracker.client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    return max((int(v.version) for v in versions), default=None)


def register_model(tracker: Tracker, *, run_id: str, name: str, model: Any, example: np.ndarray) -> int:
    """Log ``model`` (keras flavor) under run ``run_id`` and register it as ``name``; returns its version.

    ``example``: two or so inputs exactly as the model takes them (float32; they become the input
    example, and the signature is inferred from them and the model's outputs). Calling it again for
    the same run and name returns the existing version instead of adding one (a resumed study).
    """
    import numpy as np
    from mlflow.models import Model, infer_signature

    existing = registered_version(tracker, name, run_id)
    if existing is not None:
        return existing
    example = np.asarray(example, dtype=np.float32)
    signature = infer_signature(example, np.asarray(model.predict(example, verbose=0), dtype=np.float32))
    experiment_id = tracker.get_run(run_id).info.experiment_id
    with _global_uri(tracker.driver_uri):
        import mlflow

        # Without experiment_id the logged model would land in experiment 0 ("Default").
        logged = mlflow.initialize_logged_model(name="model", source_run_id=run_id, experiment_id=experiment_id)
        try:
            # MLflow checks the input example by predicting with Keras' default progress bar, whose
            # ANSI codes would land in the search's log: nothing of it is for the user.
            with contextlib.redirect_stdout(io.StringIO()):
                info = Model.log(
                    artifact_path=None,
                    name="model",
                    flavor=_KerasFlavor(),
                    run_id=run_id,
                    model_id=logged.model_id,
                    model=model,
                    signature=signature,
                    input_example=example,
                    pip_requirements=pip_requirements(),
                    registered_model_name=name,
                    await_registration_for=0,
                )
        except Exception as err:
            raise CAEError(
                f"could not register the model {name!r} from MLflow run {run_id}: "
                f"{(str(err).strip().splitlines() or [type(err).__name__])[0][:200]}"
            ) from None
    return int(info.registered_model_version)


def load_registered(tracker: Tracker, name: str, version: int | str = "latest") -> Any:
    """The Keras model ``models:/<name>/<version>`` of ``tracker``'s registry."""

    with _global_uri(tracker.driver_uri):
        import mlflow.keras

        return mlflow.keras.load_model(f"models:/{name}/{version}")

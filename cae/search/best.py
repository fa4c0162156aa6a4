"""A study's exported best trial: ``runs/<study>/best.json`` + ``best.keras``.

Written by whichever engine ran the trial, read by colorization, the report and ``make best``; no
search engine is imported here. Each completed trial's own model is kept in
``runs/<study>/models/trial-<n>.keras`` (in MLflow too only for a study shared across hosts);
``best.keras`` is a copy of the best one, written atomically under a lock, so readers never see a
partial or mixed export. Every read is validated: a damaged file is a one-line error saying how to regenerate it,
and a damaged ``best.keras`` is restored from an intact copy of the same trial (its own model, or
the registered one).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from cae.config import ExperimentConfig
from cae.data import TRANSFORMS, load_splits, to_unit
from cae.errors import CAEError
from cae.locks import file_lock
from cae.paths import atomic_path, ensure_dir, study_dir, write_text_atomic
from cae.schema import from_dict, to_dict
from cae.tracking import Tracker
from cae.tracking.registry import load_registered, register_model

BEST_ARTIFACTS = "best"  # a trial run's folder for the best.keras / best.json a multi-host study shares
# Keys every best.json has, with their types: what readers rely on.
REQUIRED = {
    "study": str,
    "trial_number": int,
    "engine": str,
    "best_val_loss": float,
    "params": dict,
    "config": dict,
    "n_params": int,
    "latent_values": int,
    "bottleneck_values": int,
    "code_values": int,
    "mlflow_run_id": str,
    "objective": dict,
}


def best_paths(study: str) -> tuple[Path, Path]:
    d = study_dir(study)
    return d / "best.json", d / "best.keras"


def trial_model_path(study: str, number: int) -> Path:
    """A completed trial's own model (and its record beside it, ``.json``)."""
    return study_dir(study) / "models" / f"trial-{number}.keras"


def _locked(study: str) -> Any:
    return file_lock(ensure_dir(study_dir(study)) / ".best.lock", f"study {study!r}'s best")


def trial_record(
    study: str,
    number: int,
    result: Any,
    config: Any,
    params: dict[str, Any],
    *,
    run_id: str,
    engine: str,
    data_source: str,
    uid: str | None,
    objective: tuple[str, float, str],
    enqueued: bool = False,
) -> dict[str, Any]:
    """What best.json says about a trial; ``objective`` = (name, value, direction) it is ranked by."""
    name, value, direction = objective
    return {
        "study": study,
        "trial_number": number,
        "engine": engine,
        "best_val_loss": result.best_val_loss,
        "objective": {"name": name, "value": value, "direction": direction},
        "best_epoch": result.best_epoch,
        "epochs": result.epochs_run,
        "params": params,
        "config": to_dict(config),
        **result.code_params(),
        "code_values": result.code_values,
        "mlflow_run_id": run_id,
        "data_source": data_source,
        "seconds": round(result.seconds, 2),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "study_uid": uid,
        "enqueued": enqueued,
    }


def _beats(new: dict[str, Any], old: dict[str, Any]) -> bool:
    if old.get("study_uid") != new.get("study_uid"):
        return True  # an export from an older study that had this name is replaced whatever its score
    value, before = new["objective"]["value"], old["objective"]["value"]
    return value > before if new["objective"]["direction"] == "maximize" else value < before


def export_trial(record: dict[str, Any], model: Any, *, keep_all: bool = False, run: Any = None) -> bool:
    """Keep the trial's model (``keep_all``: every completed trial's, in ``models/``) and make it
    best.json + best.keras if it beats the exported best on validation; True if it did.

    With ``run`` (a study other hosts may share), a new best is also logged to it (``best/``): the host
    that finishes the study fetches it from there.
    """
    study, number = record["study"], record["trial_number"]
    model.name = f"trial_{number}"  # lets a reader check that best.keras matches best.json
    own = trial_model_path(study, number) if keep_all else None
    if own is not None:
        with atomic_path(own) as tmp:
            model.save(tmp)
        write_text_atomic(own.with_suffix(".json"), json.dumps(record, indent=2))
    json_path, model_path = best_paths(study)
    with _locked(study):
        try:
            old = _validated(json.loads(json_path.read_text()), json_path) if json_path.exists() else None
        except (ValueError, CAEError):
            old = None  # unreadable old export: replace it
        if old is not None and not _beats(record, old):
            return False
        if own is not None:
            _link(own, model_path)
        else:
            with atomic_path(model_path) as tmp:
                model.save(tmp)
        write_text_atomic(json_path, json.dumps(record, indent=2))
    if run is not None:
        run.log_artifact(model_path, BEST_ARTIFACTS)
        run.log_artifact(json_path, BEST_ARTIFACTS)
    return True


def _link(source: Path, target: Path) -> None:
    """``target`` becomes a copy of ``source``, atomically. A copy, not a hard link: a file damaged in
    place would take its one inode's other name with it, and best.keras is restored from models/."""
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def fetch_best(study: str, number: int, run_id: str, uid: str | None, tracker: Any) -> None:
    """Make ``runs/<study>/best.*`` trial ``number``, from its MLflow run if it ran on another host.

    With workers on several hosts, each host exports only the trials it ran; the host that
    finishes the study may not hold the overall best one.
    """
    json_path, model_path = best_paths(study)
    try:
        old = json.loads(json_path.read_text())
        if old["trial_number"] == number and old.get("study_uid") == uid:
            return
    except (OSError, ValueError, KeyError, TypeError):
        pass  # none here yet: fetch it
    with tempfile.TemporaryDirectory() as tmp:
        try:
            folder = tracker.download(run_id, BEST_ARTIFACTS, Path(tmp))
            record = _validated(json.loads((folder / "best.json").read_text()), folder / "best.json")
        except Exception as err:  # an old run without best/, or the store lost it: keep this host's best
            print(
                f"note: best trial {number} ran on another host and its model is not in MLflow run "
                f"{run_id} ({type(err).__name__}); exporting this host's best instead"
            )
            return
        with _locked(study):
            with atomic_path(model_path) as tmp_model:
                shutil.copyfile(folder / "best.keras", tmp_model)
            write_text_atomic(json_path, json.dumps(record, indent=2))
    print(f"best trial {number} ran on another host: fetched best.keras from MLflow run {run_id}")


def _validated(record: Any, path: Path) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise CAEError(f"{path} is damaged (not a JSON object)")
    for key, kind in REQUIRED.items():
        ok = isinstance(record.get(key), kind) or (kind is float and isinstance(record.get(key), int))
        if not ok or isinstance(record.get(key), bool):
            raise CAEError(f"{path} is damaged (key {key!r} missing or not {kind.__name__})")
    return record


def read_best(study: str) -> dict[str, Any]:
    """The validated best.json of ``study``; one-line errors for a missing or damaged file."""
    json_path, _ = best_paths(study)
    regenerate = f"rerun the study (`make search STUDY={study}`) to regenerate it"
    if not json_path.exists():
        raise CAEError(
            f"no best trial exported for study {study!r} ({json_path} missing); run `make search STUDY={study}` first"
        )
    try:
        return _validated(json.loads(json_path.read_text()), json_path)
    except (ValueError, UnicodeDecodeError) as err:
        raise CAEError(f"{json_path} is damaged ({type(err).__name__}); {regenerate}") from None
    except CAEError as err:
        raise CAEError(f"{err}; {regenerate}") from None


def load_best_model(study: str) -> tuple[Any, dict[str, Any]]:
    """(model, record) of the study's best trial; the two files are checked to belong together. A
    damaged ``best.keras`` is restored from an intact copy of the same trial."""
    import keras

    record = read_best(study)
    path = best_paths(study)[1]
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as err:  # missing, truncated or not a Keras archive
        model = _restore(study, record, path, type(err).__name__)
    if model.name != f"trial_{record['trial_number']}":
        raise CAEError(f"{path} does not match best.json (interrupted export); rerun the search")
    return model, record


def _restore(study: str, record: dict[str, Any], path: Path, why: str) -> Any:
    """The best trial's model from an intact copy, written back as ``best.keras``: its own model under
    ``models/``, else the registered one (logged to its MLflow run). A one-line error when neither loads."""
    import keras

    number, tried = record["trial_number"], []
    own = trial_model_path(study, number)
    try:
        model = keras.models.load_model(own, compile=False)
        if model.name == f"trial_{number}":
            _link(own, path)
            print(f"note: {path} was damaged ({why}); restored from {own}")
            return model
        tried.append(f"{own} is another trial's")
    except Exception as err:  # missing or damaged too: try the registry
        tried.append(f"{own.name}: {type(err).__name__}")
    registered = record.get("registered_model")
    if registered:
        uri = f"models:/{registered['name']}/{registered['version']}"
        try:
            model = load_registered(Tracker(), registered["name"], registered["version"])
        except Exception as err:  # the registry's copy is not there either: say all
            tried.append(f"{uri}: {type(err).__name__}")
        else:
            with atomic_path(path) as tmp:
                model.save(tmp)
            print(f"note: {path} was damaged ({why}); fetched again from {uri}")
            return model
    raise CAEError(
        f"{path} cannot be loaded ({why}) and no intact copy of trial {number} was found ({'; '.join(tried)}); "
        f"rerun `make search STUDY={study}`"
    )


def update_best(study: str, number: int, **fields: Any) -> None:
    """Add ``fields`` to best.json if it still names trial ``number`` (another host may have exported a newer one)."""
    json_path = best_paths(study)[0]
    with _locked(study):
        record = json.loads(json_path.read_text())
        if record["trial_number"] == number:
            write_text_atomic(json_path, json.dumps({**record, **fields}, indent=2))


def _register(study: str, record: dict[str, Any], model: Any, splits: Any, config: Any, tracker: Any) -> int | None:
    """The best model in the MLflow Model Registry as ``study``; a failure is a warning, not a lost search.

    Reconstruction studies only: a colorization study registers the model it chooses (``<study>-colorize``,
    from its own final scoring), not its best trial by the first objective.
    """
    if config.data.input != "rgb":
        return None
    example = TRANSFORMS[config.data.input](to_unit(splits.x_test[:2]))
    try:
        return register_model(tracker, run_id=record["mlflow_run_id"], name=study, model=model, example=example)
    except CAEError as err:
        print(f"warning: {err}; run the same command again to retry")
        return None


def score_best(study: str, parent: Any, step: int) -> dict[str, Any]:
    """Score the exported best trial once on the test split; log it to the study's parent run."""
    from cae.train import evaluate  # lazy: TensorFlow; reading best.json (make best, reports) needs none

    model, record = load_best_model(study)
    config = from_dict(ExperimentConfig, record["config"], "best.json")
    splits = load_splits(config.data.source, config.seed, config.data.subset)
    test, _ = evaluate(model, splits.x_test, config.data.input)
    record["test"] = test
    version = _register(study, record, model, splits, config, parent.tracker)
    if version is not None:  # `models:/<study>/<version>` (and `/latest`) loads it
        record["registered_model"] = {"name": study, "version": version}
    update_best(study, record["trial_number"], **{k: record[k] for k in ("test", "registered_model") if k in record})
    parent.log_metrics({"best_val_loss": record["best_val_loss"], **test}, step=step)
    parent.set_tags({"best_trial_number": record["trial_number"], "best_run_id": record["mlflow_run_id"]})
    parent.log_text(json.dumps(record, indent=2), "best.json")
    print(
        f"best: trial {record['trial_number']}  {record['objective']['name']} {record['objective']['value']:.6g}  "
        f"test MSE {test['test_mse']:.6f}  PSNR {test['test_psnr']:.2f} dB  "
        f"({record['n_params']:,} params, code {record['code_values']} values)\nexported to {best_paths(study)[0]}"
        + (f"; registered as models:/{study}/{version}" if version is not None else "")
    )
    return record

"""The studies of a storage as a user looks at them (`make studies`), and forgetting one (`make delete`)."""

from __future__ import annotations

import shutil

from cae.errors import CAEError
from cae.metrics import psnr_from_mse
from cae.paths import study_dir
from cae.search.best import read_best
from cae.search.storage import open_storage, storage_url
from cae.search.study import FINISHED, optuna_module, state_counts
from cae.search_config import SearchConfig
from cae.urls import shown


def studies_table(cfg: SearchConfig) -> str:
    """One line per study of ``cfg``'s storage: its trials by state and its best (validation, and test when
    exported on this host)."""
    optuna = optuna_module()
    storage = open_storage(cfg)
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
    if not summaries:
        return f"no studies in {shown(storage_url(cfg))} yet: `make search` starts one"
    lines = [
        f"studies in {shown(storage_url(cfg))}:",
        "",
        "| study | finished | other | best trial | test PSNR | vs PCA |",
        "|---|---|---|---|---|---|",
    ]
    for summary in sorted(summaries, key=lambda s: s.datetime_start or 0):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        states = state_counts(study)
        finished = sum(states[s] for s in FINISHED)
        other = ", ".join(f"{n} {s}" for s, n in sorted(states.items()) if s not in FINISHED) or "–"
        best, test, margin = "–", "–", "–"
        try:
            record = read_best(summary.study_name)
            best = f"{record['trial_number']} (val {psnr_from_mse(record['best_val_loss']):.2f} dB)"
            if "test" in record:
                test = f"{record['test']['test_psnr']:.2f} dB"
            if "baselines" in record:
                margin = f"{record['test']['test_psnr'] - record['baselines']['pca_test_psnr']:+.2f} dB"
        except CAEError:
            pass  # no exported best on this host (yet)
        lines.append(f"| {summary.study_name} | {finished} | {other} | {best} | {test} | {margin} |")
    return "\n".join(lines)


def delete(cfg: SearchConfig, force: bool = False) -> str:
    """Delete the study ``cfg.study``: its trials, its MLflow experiment (to MLflow's trash), its registered
    model and ``runs/<study>/``; refused while a trial of it runs, unless ``force``."""
    from cae.tracking import Tracker

    optuna = optuna_module()
    storage = open_storage(cfg)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    running = []
    if cfg.study in names:
        study = optuna.load_study(study_name=cfg.study, storage=storage)
        running = [t.number for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING"]
    if running and not force:
        raise CAEError(
            f"study {cfg.study!r} has {len(running)} trial(s) running ({', '.join(map(str, running[:5]))}); stop its "
            "search first, or delete it anyway with FORCE=1 (--force)"
        )
    tracker = Tracker().check()
    deleted = []
    if cfg.study in names:
        optuna.delete_study(study_name=cfg.study, storage=storage)
        deleted.append("Optuna study")
    if tracker.retire_experiment(cfg.study):
        deleted.append("MLflow experiment")
    if tracker.delete_registered_model(cfg.study):
        deleted.append("registered model")
    if study_dir(cfg.study).is_dir():
        shutil.rmtree(study_dir(cfg.study), ignore_errors=True)
        deleted.append(f"folder {study_dir(cfg.study)}")
    return f"study {cfg.study!r}: deleted {', '.join(deleted)}" if deleted else f"no study {cfg.study!r} found"

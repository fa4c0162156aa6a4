"""The studies of a storage as a user looks at them (`make studies`, `make best`), and forgetting one
(`make delete`)."""

from __future__ import annotations

import shutil
from typing import Any

from cae.errors import CAEError
from cae.metrics import psnr_from_mse
from cae.paths import study_dir
from cae.search.best import best_paths, read_best
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


def summary_lines(record: dict[str, Any]) -> list[str]:
    """`make best`: the study's best in a few lines (the whole record with JSON=1)."""
    study, number = record["study"], record["trial_number"]
    how = "a point handed to the study (enqueued)" if record.get("enqueued") else "a point the search chose"
    lines = [
        f"study {study}: best trial {number}, {how}; {record.get('epochs', '?')} epochs, "
        f"{record['n_params']:,} parameters, code {record['code_values']} values",
        f"  validation MSE {record['best_val_loss']:.6g}",
    ]
    test, held = record.get("test"), record.get("baselines")
    if test:
        line = f"  test PSNR {test['test_psnr']:.2f} dB"
        if held:
            others = {"PCA": held["pca_test_psnr"], "thumbnail": held["thumbnail_test_psnr"]}
            if held.get("reference_test_psnr") is not None:
                others["reference CAE"] = held["reference_test_psnr"]
            line += "; " + ", ".join(f"{n} {v:.2f} ({test['test_psnr'] - v:+.2f})" for n, v in others.items())
        lines.append(line)
    lines.append(f"  model: {best_paths(study)[1]}")
    registered = record.get("registered_model")
    if registered:
        lines.append(f"  registry: models:/{registered['name']}/{registered['version']}")
    lines.append("  the whole record: make best JSON=1")
    return lines


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

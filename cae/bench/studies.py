"""One search of the benchmark, run through the real engines in stores of the benchmark's own.

Everything a benchmark search creates lives under ``runs/bench/``: the Optuna storage
(``optuna.db``), the MLflow store (``mlflow.db``, artifacts) and each study's folder. A search is
read back from MLflow as a *timeline*: every trial's start and end (seconds since the first trial
started), its state and its best validation MSE, which is all the report needs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cae.bench.plan import STRATEGIES, Plan
from cae.environ import scoped_env
from cae.paths import ensure_dir, project_root, runs_dir
from cae.schema import with_overrides
from cae.search_config import SearchConfig, load_search
from cae.sources import default_cache_dir
from cae.tracking import Tracker

BASE = "experiments/search.yaml"  # the default study: space, budget rules, sampler and pruner settings


@dataclass(frozen=True)
class BenchEnv:
    root: Path  # runs/bench
    storage: str  # its Optuna storage URL
    tracker: Tracker  # its MLflow store


@contextmanager
def bench_env() -> Iterator[BenchEnv]:
    """Point ``runs/``, the default MLflow store and the Optuna storage at ``runs/bench/`` for a while.

    The decoded-data cache stays where it was (no second copy of CIFAR-10). Subprocesses (the
    2-worker search) inherit the same environment.
    """
    root = ensure_dir(runs_dir() / "bench")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with scoped_env(
        {"CAE_DATA_CACHE": str(default_cache_dir()), "CAE_RUNS_DIR": str(root), "MLFLOW_TRACKING_URI": uri}
    ):
        yield BenchEnv(root, f"sqlite:///{root / 'optuna.db'}", Tracker(uri).check())


def study_name(plan: Plan, strategy: str, seed: int, attempt: int, workers: int = 1) -> str:
    slug = strategy.replace("+", "-") + (f"-w{workers}" if workers > 1 else "")
    return f"bench-{plan.mode}-{slug}-s{seed}-a{attempt}"


def search_config(
    plan: Plan, env: BenchEnv, source: str | None, strategy: str, seed: int, study: str, workers: int = 1
) -> SearchConfig:
    """The default study (``experiments/search.yaml``) on the proxy task, with one strategy's engine."""
    base = load_search(project_root() / BASE)
    return with_overrides(
        base,
        {
            "study": study,
            "storage": env.storage,
            "trials": plan.trials,
            "workers": workers,
            # No enqueued reference: time-to-target measures the search alone (conventions).
            "enqueue_reference": False,
            "sampler.seed": seed,
            # The data split stays the same (experiment.seed) for every sampler seed.
            "experiment.data.source": source,
            "experiment.data.subset": plan.subset,
            "experiment.train.epochs": plan.epochs,
            **STRATEGIES[strategy].overrides,
        },
    )


def timeline(tracker: Tracker, study: str) -> list[dict[str, Any]]:
    """Every trial of ``study`` in start order: start/end seconds since the first start, state, value.

    ``value`` is the trial's best validation MSE for COMPLETE trials only: a pruned trial's partial
    value is never what a search returns as its best. ``train_seconds`` is the time in its epochs.
    """
    parent = tracker.find_study_parent(study)
    runs = sorted(tracker.child_runs(parent, study), key=lambda r: r.info.start_time) if parent else []
    out: list[dict[str, Any]] = []
    for r in runs:
        m, state = r.data.metrics, r.data.tags.get("trial_state", "?")
        complete = state == "COMPLETE"
        epochs = m.get("epochs_run")
        out.append(
            {
                "start": (r.info.start_time - runs[0].info.start_time) / 1000,
                "end": ((r.info.end_time or r.info.start_time) - runs[0].info.start_time) / 1000,
                "state": state,
                "value": m.get("best_val_loss") if complete else None,
                "epochs": int(epochs) if epochs is not None else None,
                "train_seconds": m["seconds_per_epoch"] * epochs if complete and "seconds_per_epoch" in m else None,
            }
        )
    return out
